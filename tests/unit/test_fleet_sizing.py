"""The fleet bench's sizing arithmetic (bench/sizing.py): instances from rate, wall and CPU; SCC's quota."""

from __future__ import annotations

import math

import pytest

from bench.sizing import CPU_TARGET, SCC_READS_PER_MIN, percentile, quota_rate, size


def test_concurrency_one_is_bound_by_requests_in_flight() -> None:
    # 1,000 a minute for 0.6 s each: 10 in flight; at concurrency 1, 10 instances, whatever the CPU.
    s = size(1000, wall_s=0.6, cpu_s=0.06, scc_reads=2, scc_writes=1, concurrency=1)
    assert s.by_concurrency == 10
    assert s.by_cpu == math.ceil(1000 / 60 * 0.06 / CPU_TARGET)
    assert s.instances == 10


def test_high_concurrency_is_bound_by_cpu() -> None:
    s = size(1000, wall_s=0.6, cpu_s=0.06, scc_reads=2, scc_writes=1, concurrency=80)
    assert s.by_concurrency == 1
    assert s.by_cpu == 2  # 1 CPU-second per second at a 60 % target
    assert s.instances == 2


def test_scc_quota_share_takes_the_tighter_of_reads_and_writes() -> None:
    s = size(400, wall_s=0.5, cpu_s=0.05, scc_reads=2.5, scc_writes=1.0, concurrency=1)
    assert s.scc_reads_per_min == 1000
    assert s.scc_writes_per_min == 400
    assert s.scc_quota_share == 1.0 and s.quota_holds
    assert not size(401, 0.5, 0.05, 2.5, 1.0, 1).quota_holds
    assert quota_rate(2.5, 1.0) == SCC_READS_PER_MIN / 2.5
    assert quota_rate(0, 0) == math.inf


def test_no_findings_no_instances_and_bad_settings_refused() -> None:
    assert size(0, 1.0, 1.0, 1, 1, 1).instances == 0
    with pytest.raises(ValueError):
        size(10, 1.0, 1.0, 1, 1, 0)


def test_percentile_is_a_measured_value() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
