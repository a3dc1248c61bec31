"""A cold instance keeps the interpreter for its first containment: what containment does not need (the investigation,
evidence capture, the SDK loads behind them) starts once the isolating writes are done. A warm one holds them only
until those writes are acknowledged, so that they go out behind the writes, not ahead of or alongside them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from responder.ports import LogEntry
from responder.service import Dependencies, Responder
from responder.startup import ImportGate
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube, FakeLogs
from tests.unit.test_containment import FINDING, NS, POD, run

ORDER: list[str] = []


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_pod(NS, POD, {"app": "web"})
    k.add_policy(NS, "allow-all")
    return k


_LOCK = threading.Lock()


def _note(what: str) -> None:
    with _LOCK:
        ORDER.append(what)


class OrderedLogs(FakeLogs):
    def search(self, project: str, filter_: str, limit: int) -> list[LogEntry]:
        _note("log search")
        return super().search(project, filter_, limit)


def responder(kube: FakeKube, gate: ImportGate | None) -> Responder:
    from responder.config import Settings
    from responder.policy.rules import Policy, PolicyEngine

    settings = Settings(mode="enforce", action="isolate")
    findings = FakeFindings()
    findings.add_from(FINDING)
    patch = kube.patch_pod_metadata

    def noted_patch(*args: Any, **kwargs: Any) -> Any:
        result = patch(*args, **kwargs)
        _note("pod patched")
        return result

    kube.patch_pod_metadata = noted_patch  # type: ignore[method-assign]
    deps = Dependencies(
        settings=settings,
        policy=PolicyEngine(Policy(), settings),
        connector=FakeConnector(kube),
        findings_api=findings,
        logs=OrderedLogs(),
        gate=gate,
    )
    return Responder(deps)


def test_a_cold_instance_investigates_after_its_isolating_writes(kube: FakeKube) -> None:
    ORDER.clear()
    gate = ImportGate(closed=True, max_wait_s=30)  # a path that forgot to open it would stall this test, not pass
    outcome = run(responder(kube, gate))
    assert gate.is_open
    assert outcome.record.verdict.value == "act" and not outcome.retry
    assert {a.action: a.status.value for a in outcome.record.actions}["isolate"] == "succeeded"
    assert outcome.record.enrichment["logs.container"] == "ok"
    assert ORDER.index("pod patched") < ORDER.index("log search")
    assert kube.pods[(NS, POD)].labels["responder.rsr.dev/quarantine"] == "true"


def test_a_warm_instance_investigates_once_its_isolating_writes_are_acknowledged(kube: FakeKube) -> None:
    ORDER.clear()
    kube.sleep_on["patch_pod_metadata"] = 0.5  # the label write is slow to be acknowledged
    outcome = run(responder(kube, ImportGate()))
    assert {a.action: a.status.value for a in outcome.record.actions}["isolate"] == "succeeded"
    calls = kube.calls
    # The namespace is read in round one too (its exemption label decides the plan); the investigation reuses nothing
    # of it, so its own reads are the node, the owner chain and the logs.
    investigation = [i for i, c in enumerate(calls) if c in ("get_node", "get_workload", "read_log")]
    assert investigation and min(investigation) > max(calls.index("get_pod"), calls.index("list_network_policies"))
    # Held until the writes were acknowledged, not merely sent: nothing competes with the patch at the apiserver.
    assert ORDER.index("pod patched") < ORDER.index("log search")


def test_a_warm_instance_holds_nothing(kube: FakeKube) -> None:
    warm = ImportGate()  # adapters built by hand (tests, operator commands): never closed
    assert warm.is_open
    outcome = run(responder(kube, warm))
    assert outcome.record.enrichment["logs.container"] == "ok"
    assert warm.is_open


def test_a_gate_nobody_opens_costs_its_bound_not_a_deadlock() -> None:
    gate = ImportGate(closed=True, max_wait_s=0.05)
    gate.wait()  # returns after the bound
    assert not gate.is_open
    gate.open()
    gate.wait()
    assert gate.is_open


def test_work_queued_behind_the_writes_starts_when_they_are_out_and_never_parks_a_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from responder.containment.scheduling import WritesOut

    out = WritesOut()
    ran: list[str] = []
    with ThreadPoolExecutor(1) as pool:  # one thread: a parked waiter would block everything behind it
        queued = out.later(pool, lambda: ran.append("queued") or "done")
        other = pool.submit(lambda: ran.append("other") or "other")
        assert other.result(timeout=5) == "other" and ran == ["other"]  # nothing of it ran, nothing was parked
        out.open()
        assert queued.result(timeout=5) == "done"
        assert out.later(pool, lambda: "at once").result(timeout=5) == "at once"
        failing = WritesOut()
        boom = failing.later(pool, lambda: 1 / 0)
        failing.open()
        with pytest.raises(ZeroDivisionError):
            boom.result(timeout=5)
    late = WritesOut()
    after_shutdown = late.later(pool, lambda: "never")
    late.open()  # the pool is gone: the future says so instead of hanging
    with pytest.raises(RuntimeError):
        after_shutdown.result(timeout=5)
