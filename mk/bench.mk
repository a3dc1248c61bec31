# `make bench`: cold start, memory, time to containment under latency (vs a naive baseline), throughput.
# Writes bench/results.json and prints a table; how each figure is measured is documented in bench/run.py.
bench: $(STAMP) kube-build ## measure import time, memory, containment at 50 ms latency, throughput (bench/results.json)
	$(BIN)/python -m bench.run
