"""The investigation: concurrent branches, the log searches and their filters, and failures that are never fatal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from responder.errors import TransientError
from responder.investigation import logfilters
from responder.investigation.investigator import Investigator
from responder.ports import LogEntry
from tests.unit.fakes import FakeLogs, UnavailableLogs
from tests.unit.sample_world import (
    INSTANCE_ID,
    ReportKube,
    cluster_info,
    connection,
    entry,
    sample_finding,
    sample_target,
)

FINDING = sample_finding()
TARGET = sample_target()
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=8)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)  # a deliberately slow fake may still be sleeping


def investigator(pool: ThreadPoolExecutor, logs: object, timeout_s: float = 5.0, **kw: object) -> Investigator:
    return Investigator(logs, timeout_s, pool, clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def logs_with_entries() -> FakeLogs:
    return FakeLogs(
        {
            "container": [entry(20, "older"), entry(25, "newest"), entry(22, "middle")],
            "audit": [entry(24, "io.k8s.core.v1.pods.exec.create core/v1/namespaces/storefront/pods/x/exec")],
            "serial_console": [entry(10, "kernel: oom")],
        }
    )


def test_all_branches_ok(pool: ThreadPoolExecutor) -> None:
    kube, logs = ReportKube(TARGET), logs_with_entries()
    inv = investigator(pool, logs).investigate(FINDING, TARGET, connection(kube, cluster_info()))

    assert {k: b.status for k, b in inv.branches.items()} == {
        "pod": "ok",
        "node": "ok",
        "namespace": "ok",
        "service_account": "ok",
        "rights": "ok",
        "cluster": "ok",
        "logs.container": "ok",
        "logs.audit": "ok",
        "logs.serial_console": "ok",
        "logs.identity_writes": "ok",
    }
    assert inv.pod is not None and inv.service_account is not None
    assert [w.kind for w in inv.owner_chain] == ["ReplicaSet", "Deployment"]
    assert (inv.instance_id, inv.node_pool, inv.zone) == (INSTANCE_ID, "default-pool", "us-east1-b")
    assert inv.namespace is not None
    assert inv.namespace.labels == {"team": "payments"}
    assert inv.cluster is not None
    assert inv.cluster.network_policy_enforced

    window = logfilters.log_window(FINDING.event_time, 30)
    assert inv.log_window == window
    container, audit, serial, writes = inv.logs
    assert container.filter == logfilters.container_filter(TARGET, window)
    assert writes.filter is not None
    assert f'principalEmail="system:serviceaccount:{TARGET.namespace}:cart-api"' in writes.filter
    assert audit.filter == logfilters.audit_filter(TARGET, window)
    assert serial.filter == logfilters.serial_console_filter(INSTANCE_ID, window)
    assert [e.text for e in container.entries] == ["newest", "middle", "older"]  # newest first
    assert serial.entries[0].text == "kernel: oom"
    # What Logging was asked: the cluster's project, the filters verbatim, the bound.
    assert sorted(logs.filters) == sorted(
        [("example-retail-prod", s.filter, 50) for s in inv.logs if s.filter is not None]
    )


def test_logs_search_concurrently_and_serial_console_waits_for_the_node(pool: ThreadPoolExecutor) -> None:
    kube, logs = ReportKube(TARGET), logs_with_entries()
    kube.sleep_on["get_node"] = 0.4
    started = time.monotonic()
    inv = investigator(pool, logs).investigate(FINDING, TARGET, connection(kube, cluster_info()))
    assert inv.branches["logs.serial_console"].status == "ok"
    kinds = [logs.kind_of(f) for _, f, _ in logs.filters]
    # The pod and audit searches did not wait for the slow node; the serial console could not, and did.
    assert kinds[-1] == "serial_console"
    assert set(kinds[:2]) == {"container", "audit"}
    assert time.monotonic() - started < 2.0


def test_logging_not_configured_keeps_every_filter(pool: ThreadPoolExecutor) -> None:
    kube = ReportKube(TARGET)
    inv = investigator(pool, None).investigate(FINDING, TARGET, connection(kube, cluster_info()))
    for search in inv.logs:
        branch = inv.branches[search.branch]
        assert branch.status == "unavailable"
        assert "not configured" in (branch.detail or "")
        assert search.filter is not None  # the report can still show it
        assert search.entries == ()
    assert inv.log("serial_console") is not None
    assert INSTANCE_ID in (inv.log("serial_console").filter or "")  # type: ignore[union-attr]


def test_no_cluster_access_still_searches_logs_but_not_the_serial_console(pool: ThreadPoolExecutor) -> None:
    logs = logs_with_entries()
    inv = investigator(pool, logs).investigate(FINDING, TARGET, None, "no cluster credentials configured")
    assert inv.branches["logs.container"].status == "ok"
    assert inv.branches["logs.audit"].status == "ok"
    serial = inv.branches["logs.serial_console"]
    assert serial.status == "unavailable"
    assert "instance ID unknown" in (serial.detail or "")
    for name in ("pod", "node", "namespace", "cluster"):
        assert inv.branches[name].status == "unavailable"
        assert inv.branches[name].detail == "no cluster credentials configured"
    assert inv.log("serial_console") is not None
    assert inv.log("serial_console").filter is None  # type: ignore[union-attr]


def test_a_failing_branch_is_recorded_and_the_others_still_report(pool: ThreadPoolExecutor) -> None:
    kube, logs = ReportKube(TARGET), logs_with_entries()
    kube.raise_on["get_namespace"] = RuntimeError("boom")
    logs.raise_on["search:audit"] = TransientError("503 from Logging")
    inv = investigator(pool, logs).investigate(FINDING, TARGET, connection(kube, cluster_info()))
    assert inv.branches["namespace"].status == "failed"
    assert inv.branches["namespace"].detail == "RuntimeError: boom"
    assert inv.branches["logs.audit"].status == "failed"
    assert "503" in (inv.branches["logs.audit"].detail or "")
    assert inv.log("audit").filter is not None  # type: ignore[union-attr]
    assert inv.namespace is None
    for name in ("pod", "node", "cluster", "logs.container", "logs.serial_console"):
        assert inv.branches[name].status == "ok", name
    assert inv.pod is not None


def test_a_slow_branch_times_out_without_holding_the_others(pool: ThreadPoolExecutor) -> None:
    kube, logs = ReportKube(TARGET), logs_with_entries()
    kube.sleep_on["get_pod"] = 1.5
    logs.sleep_on["search:container"] = 1.5
    started = time.monotonic()
    inv = investigator(pool, logs, timeout_s=0.5).investigate(FINDING, TARGET, connection(kube, cluster_info()))
    elapsed = time.monotonic() - started
    assert elapsed < 1.2
    assert inv.branches["pod"].status == "timeout"
    assert inv.branches["pod"].detail == "no answer within 0.5s"
    assert inv.branches["logs.container"].status == "timeout"
    assert inv.log("container").filter is not None  # type: ignore[union-attr]
    for name in ("node", "namespace", "logs.audit", "logs.serial_console"):
        assert inv.branches[name].status == "ok", name
    assert "pod" in inv.summary()
    assert inv.summary()["pod"].startswith("timeout: ")


def test_a_slow_node_leaves_the_serial_console_unknown(pool: ThreadPoolExecutor) -> None:
    kube, logs = ReportKube(TARGET), logs_with_entries()
    kube.sleep_on["get_node"] = 1.5
    inv = investigator(pool, logs, timeout_s=0.3).investigate(FINDING, TARGET, connection(kube, cluster_info()))
    assert inv.branches["node"].status == "timeout"
    serial = inv.branches["logs.serial_console"]
    assert serial.status == "unavailable"
    assert serial.detail == "instance ID unknown: node branch timeout"


def test_node_without_instance_id_annotation(pool: ThreadPoolExecutor) -> None:
    kube = ReportKube(TARGET, instance_id=None)
    inv = investigator(pool, logs_with_entries()).investigate(FINDING, TARGET, connection(kube))
    assert inv.branches["node"].status == "ok"
    assert inv.branches["logs.serial_console"].status == "unavailable"
    assert "no container.googleapis.com/instance_id annotation" in (inv.branches["logs.serial_console"].detail or "")
    assert inv.branches["cluster"].detail == "not a GKE connection (kubeconfig)"


def test_a_malformed_instance_id_never_reaches_a_filter(pool: ThreadPoolExecutor) -> None:
    kube = ReportKube(TARGET, instance_id='1" OR "2')
    logs = logs_with_entries()
    inv = investigator(pool, logs).investigate(FINDING, TARGET, connection(kube))
    assert inv.branches["logs.serial_console"].status == "failed"
    assert "filter not built" in (inv.branches["logs.serial_console"].detail or "")
    assert inv.log("serial_console").filter is None  # type: ignore[union-attr]
    assert all(logs.kind_of(f) != "serial_console" for _, f, _ in logs.filters)


def test_missing_node_name_in_finding(pool: ThreadPoolExecutor) -> None:
    target = sample_target()
    target = type(target)(target.cluster, target.namespace, target.pod, target.container, None)
    inv = investigator(pool, logs_with_entries()).investigate(FINDING, target, connection(ReportKube(TARGET)))
    assert inv.branches["node"].detail == "the finding names no node"
    assert inv.branches["logs.serial_console"].detail == "instance ID unknown: the finding names no node"


def test_entries_are_bounded_and_newest_first(pool: ThreadPoolExecutor) -> None:
    many = [entry(i % 60, f"line {i}") for i in range(120)]
    many.append(LogEntry(timestamp=None, text="undated"))
    logs = FakeLogs({"container": many})
    inv = investigator(pool, logs, max_entries=5).investigate(FINDING, TARGET, None)
    container = inv.log("container")
    assert container is not None
    assert len(container.entries) == 5
    stamps = [e.timestamp for e in container.entries]
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
    assert all(limit == 5 for _, _, limit in logs.filters)


def test_default_limit_is_fifty(pool: ThreadPoolExecutor) -> None:
    logs = FakeLogs({"container": [entry(i % 60, "x") for i in range(200)]})
    inv = investigator(pool, logs).investigate(FINDING, TARGET, None)
    assert len(inv.log("container").entries) == 50  # type: ignore[union-attr]


def test_logging_adapter_unavailable(pool: ThreadPoolExecutor) -> None:
    inv = investigator(pool, UnavailableLogs()).investigate(FINDING, TARGET, None)
    assert inv.branches["logs.container"].status == "unavailable"
    assert inv.branches["logs.container"].detail == "Cloud Logging: no credentials"


def test_window_without_event_time_is_anchored_on_the_clock(pool: ThreadPoolExecutor) -> None:
    finding = FINDING.model_copy(update={"event_time": None})
    inv = investigator(pool, None, log_window_min=10).investigate(finding, TARGET, None)
    assert inv.log_window is not None
    assert inv.log_window.anchor == "now"
    assert (inv.log_window.start, inv.log_window.end) == (NOW - timedelta(minutes=10), NOW)
    assert 'timestamp<="2026-03-20T12:00:00Z"' in (inv.log("container").filter or "")  # type: ignore[union-attr]
