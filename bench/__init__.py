"""Benchmarks (`make bench`) and the loopback tools they share with the reliability tests.

``bench.latency_proxy`` puts latency and connection faults in front of the real kube-apiserver; ``bench.run`` measures
cold start, memory, time to containment, throughput; ``bench.probe`` is what runs in the fresh processes it measures.
"""
