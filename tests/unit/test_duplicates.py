"""Redeliveries of a finding whose containment still holds: one record, nothing repeated; anything less is handled in
full. The cluster is judged by content (the deny-all, the exclusions, the pod's record), never by a name alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from responder.containment.base import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.intake.envelope import Delivery
from responder.ports import LabelSelector
from responder.report.outcome import Outcome
from responder.service import Responder
from tests.notifications import notification
from tests.unit.fakes import FakeKube, FakeLogs
from tests.unit.test_containment import FINDING, NAME, NS, POD, make

# Calls a redelivery may make: the pod read and the namespace's policies, nothing else.
CHECK_CALLS = {"get_pod", "list_network_policies"}


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_pod(NS, POD, {"app": "web", "pod-template-hash": "5d9c"})
    k.add_workload(NS, "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
    k.add_workload(NS, "Deployment", "web")
    k.add_policy(NS, "allow-all")
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    k.add_policy(NS, "allow-db", LabelSelector(match_labels={"app": "db"}))
    return k


def deliver(responder: Responder, doc: dict[str, Any] | None = None, attempt: int | None = None) -> Outcome:
    delivery = Delivery(payload=json.dumps(doc or FINDING).encode(), shape="test", delivery_attempt=attempt)
    return responder.respond(delivery)


def with_logs(responder: Responder) -> FakeLogs:
    logs = FakeLogs()
    responder.investigator.logs = logs
    return logs


def test_a_redelivery_to_the_same_instance_is_one_record_and_two_reads(kube: FakeKube) -> None:
    responder = make(kube)
    first = deliver(responder)
    assert first.record.verdict.value == "act" and not first.retry
    findings = responder.deps.findings_api
    assert findings is not None
    marks_before = len(findings.marks_updates)  # type: ignore[attr-defined]
    kube.calls.clear()
    writes_before, execs_before = list(kube.writes), list(kube.execs)

    again = deliver(responder)

    record = again.record
    assert (record.verdict.value, record.code, record.outcome) == ("ignore", "duplicate", "done")
    assert "this finding's record" in record.reason and "deny-all" in record.reason and "by content" in record.reason
    assert "2 allowing policies" in record.reason
    assert record.actions == [] and again.investigation is None and again.evidence is None
    assert set(kube.calls) <= CHECK_CALLS  # no capture, no owner chain, no node read, no write
    assert kube.writes == writes_before and kube.execs == execs_before
    assert len(findings.marks_updates) == marks_before  # type: ignore[attr-defined]


def test_a_redelivery_to_another_instance_is_recognised_after_the_pod_read(kube: FakeKube) -> None:
    deliver(make(kube))  # handled by one instance
    other = make(kube)  # another instance: it has never seen the finding, and Pub/Sub gave no attempt count
    logs = with_logs(other)
    kube.calls.clear()
    writes_before, execs_before = list(kube.writes), list(kube.execs)

    again = deliver(other)
    other.coordinators.shutdown(wait=True)  # anything it had started would have run by now
    other.workers.shutdown(wait=True)

    assert (again.record.verdict.value, again.record.code) == ("ignore", "duplicate")
    assert again.investigation is None and again.evidence is None
    # Round one of isolation went out (the deny-all create found the policy in place: no change), and nothing else:
    # no investigation (node, namespace, owner chain), no capture, no log search.
    assert set(kube.calls) <= CHECK_CALLS | {"create_network_policy"}, kube.calls
    assert logs.filters == []
    assert kube.writes == writes_before and kube.execs == execs_before


def test_a_pubsub_redelivery_attempt_is_checked_before_anything_starts(kube: FakeKube) -> None:
    deliver(make(kube))
    other = make(kube)
    logs = with_logs(other)
    kube.calls.clear()

    again = deliver(other, attempt=2)

    assert again.record.code == "duplicate"
    assert set(kube.calls) <= CHECK_CALLS and logs.filters == []


@pytest.mark.parametrize(
    ("decay", "what"),
    [
        (lambda k: k.policies.pop((NS, DENY_ALL_POLICY)), "deny-all deleted"),
        (
            lambda k: k.policies.__setitem__(
                (NS, DENY_ALL_POLICY),
                k.policies[(NS, DENY_ALL_POLICY)].model_copy(update={"spec": {"podSelector": {}}}),
            ),
            "deny-all emptied (an impostor under its name)",
        ),
        (lambda k: k.add_policy(NS, "allow-late", LabelSelector(match_labels={"app": "web"})), "a new allowing policy"),
        (
            lambda k: k.pods.__setitem__(
                (NS, POD), k.pods[(NS, POD)].model_copy(update={"labels": {"app": "web", "pod-template-hash": "5d9c"}})
            ),
            "quarantine label removed",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_duplicate_whose_isolation_decayed_is_handled_in_full(kube: FakeKube, decay: Any, what: str) -> None:
    responder = make(kube)
    deliver(responder)
    decay(kube)

    again = deliver(responder)

    assert again.record.code != "duplicate", what
    assert again.record.verdict.value == "act"
    assert {a.action: a.status.value for a in again.record.actions}["isolate"] in ("succeeded", "skipped")
    pod = kube.pods[(NS, POD)]
    assert pod.labels[QUARANTINE_LABEL] == "true"
    selecting = [p.name for p in kube.policies.values() if p.pod_selector.matches(pod.labels)]
    assert selecting == [DENY_ALL_POLICY], what  # isolation holds again, judged on the cluster


def test_another_finding_on_a_quarantined_pod_is_not_a_duplicate(kube: FakeKube) -> None:
    responder = make(kube)
    deliver(responder)
    second = notification(namespace=NS, pod=POD, container="api", name_suffix="fedcba9876543210")
    responder.deps.findings_api.add_from(second)  # type: ignore[union-attr]

    outcome = deliver(responder, second)

    assert outcome.record.code != "duplicate"
    assert kube.pods[(NS, POD)].annotations["responder.rsr.dev/finding"] == second["finding"]["name"]


def test_a_redelivery_whose_plan_deletes_is_never_short_cut(kube: FakeKube) -> None:
    responder = make(kube, action="isolate")
    deliver(responder)
    deleting = make(kube, action="delete")  # the operator asks for more than isolation now
    deleting._remember(NAME)

    outcome = deliver(deleting)

    assert outcome.record.code != "duplicate"
    assert {a.action: a.status.value for a in outcome.record.actions}["delete"] == "succeeded"


def test_dry_run_is_never_a_duplicate(kube: FakeKube) -> None:
    deliver(make(kube))
    dry = make(kube, mode="dry-run")
    dry._remember(NAME)
    assert deliver(dry).record.code != "duplicate"
