"""Sizing a fleet's deployment from measured figures: pure arithmetic, unit-tested (tests/unit/test_fleet_sizing.py).

The inputs are what ``python -m bench.run fleet`` measures per finding (the function's CPU seconds, its wall time
from receipt to record, SCC reads and writes); the constants are documented limits, named where they are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# SCC API quota, per project per minute (reads and writes counted apart), shared by every caller using that project:
# https://cloud.google.com/security-command-center/quotas ("Reads per minute 1,000, Writes per minute 1,000").
SCC_READS_PER_MIN = 1000
SCC_WRITES_PER_MIN = 1000
# Cloud Run (gen2 functions) adds instances to keep their CPU near this share (its documented autoscaling target).
CPU_TARGET = 0.6


@dataclass(frozen=True)
class Sizing:
    """Instances one rate of findings needs, and what it asks of SCC's quota."""

    findings_per_min: float
    by_concurrency: int  # in-flight requests / max_instance_request_concurrency (Little's law)
    by_cpu: int  # CPU seconds per second / (vCPUs per instance x CPU_TARGET)
    instances: int  # the larger of the two
    scc_reads_per_min: float
    scc_writes_per_min: float
    scc_quota_share: float  # the larger of reads/quota and writes/quota: above 1.0 the quota does not hold

    @property
    def quota_holds(self) -> bool:
        return self.scc_quota_share <= 1.0


def size(
    findings_per_min: float,
    wall_s: float,
    cpu_s: float,
    scc_reads: float,
    scc_writes: float,
    concurrency: int,
    vcpus: float = 1.0,
) -> Sizing:
    """Per finding: ``wall_s`` (receipt to record, the time a request holds its slot), ``cpu_s`` (the function's CPU
    seconds, every delivery of the finding included), ``scc_reads`` and ``scc_writes`` (SCC calls, likewise).

    An instance holds at most ``concurrency`` requests at once, so the fleet needs rate x wall / concurrency
    instances for the requests in flight (Little's law); and it needs rate x CPU / (vCPUs x CPU_TARGET) for the
    CPU. Either can bind: with concurrency 1 the requests do, with a high concurrency the CPU does.
    """
    if concurrency < 1 or vcpus <= 0:
        raise ValueError("concurrency must be >= 1 and vcpus > 0")
    per_s = findings_per_min / 60.0
    by_concurrency = math.ceil(round(per_s * wall_s / concurrency, 9))
    by_cpu = math.ceil(round(per_s * cpu_s / (vcpus * CPU_TARGET), 9))
    reads, writes = findings_per_min * scc_reads, findings_per_min * scc_writes
    share = max(reads / SCC_READS_PER_MIN, writes / SCC_WRITES_PER_MIN)
    return Sizing(
        findings_per_min,
        by_concurrency,
        by_cpu,
        max(by_concurrency, by_cpu, 1 if findings_per_min > 0 else 0),
        round(reads, 1),
        round(writes, 1),
        round(share, 3),
    )


def quota_rate(scc_reads: float, scc_writes: float) -> float:
    """The highest findings per minute one project's SCC quota carries at these calls per finding."""
    limits = [q / c for q, c in ((SCC_READS_PER_MIN, scc_reads), (SCC_WRITES_PER_MIN, scc_writes)) if c > 0]
    return round(min(limits), 1) if limits else math.inf


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100), nearest rank: a value that was measured, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
