# `make bench`: cold start, memory, time to containment under latency (vs a naive baseline), throughput, redeliveries,
# and the worm at fleet scale (50 clusters, the real push path, rates stepped down until one is sustained).
# Writes bench/results.json and prints a table; how each figure is measured is documented in bench/run.py.
# BEFORE=DIR (a worktree of an earlier commit, e.g. `git worktree add ../before <commit>`): the redelivery figures for
# that commit's responder too, measured side by side with this one's in the same run (suffixed _before).
bench: $(STAMP) kube-build ## measure import time, memory, containment at 50 ms latency, throughput, redeliveries, the fleet's worm (bench/results.json)
	$(BIN)/python -m bench.run $(if $(BEFORE),--before $(BEFORE))

bench-redelivery: $(STAMP) ## the redelivery and SCC-call figures alone (control plane only: no node needed); BEFORE=DIR as for bench
	$(BIN)/python -m bench.run redelivery $(if $(BEFORE),--before $(BEFORE))

bench-fleet: $(STAMP) ## the worm at fleet scale alone (control plane only): RATES=1000,600,400 SECONDS=60 to choose
	$(BIN)/python -m bench.run fleet $(if $(RATES),--rates $(RATES)) $(if $(SECONDS),--seconds $(SECONDS))
