"""A redelivery that reaches the instance that finished the event (responder/containment/recall.py): SCC's word as
that instance holds it stands in for the read, the cluster is read as always, and anything the memory does not
settle is asked of SCC at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from responder.aftercare.release import Releaser, ReleaseRequest
from responder.config import Settings
from responder.containment.keys import DENY_ALL_POLICY
from responder.containment.recall import Recall
from responder.containment.verification import Verification, Vouch
from responder.intake.findings import Finding, to_finding
from responder.intake.notification import NotificationMessage
from responder.intake.triage import Target, triage
from responder.policy.rules import Policy, PolicyEngine
from responder.ports import SccFinding
from tests.notifications import notification
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import FINDING, NAME, NS, POD, make
from tests.unit.test_redelivery import CHECK_CALLS, CUT, deliver, ends, holds, kube, scc

__all__ = ["kube"]  # the fixture


def message() -> tuple[Finding, Target]:
    finding = to_finding(NotificationMessage.model_validate(FINDING))
    target = triage(finding, ("Reverse Shell",)).target
    assert target is not None
    return finding, target


def test_the_instance_that_finished_the_event_asks_scc_nothing_on_a_converged_redelivery(kube: FakeKube) -> None:
    findings = scc()
    responder = make(kube, findings=findings, **CUT)
    first = deliver(responder)
    assert ends(first) == ("act", "done", "NOTICE")
    mark = next(w for w in first.record.writebacks if w.action == "mark")
    assert mark.details["marks"]["rsr_outcome"] == "done"  # the record shows what was written, and recall keeps it
    kube.calls.clear()
    findings.calls.clear()
    writes = list(kube.writes)

    again = deliver(responder, attempt=2)

    assert (again.record.code, *ends(again)) == ("duplicate", "ignore", "done", "INFO")
    assert findings.calls == []  # SCC's word as this instance holds it
    assert sorted(kube.calls) == sorted(CHECK_CALLS)  # the cluster is read as on every redelivery
    assert kube.writes == writes
    assert "as SCC told this instance" in (again.record.verification.reason if again.record.verification else "")


def test_a_remembered_record_that_no_longer_matches_the_cluster_asks_scc_and_converges_again(kube: FakeKube) -> None:
    findings = scc()
    responder = make(kube, findings=findings, **CUT)
    deliver(responder)
    kube.policies.pop((NS, DENY_ALL_POLICY))  # the isolation decayed since
    findings.calls.clear()

    again = deliver(responder, attempt=2)

    assert again.record.code != "duplicate"
    assert findings.calls[0] == "get_finding"  # the memory did not settle it: SCC's word now
    assert ends(again)[:2] == ("act", "done") and holds(kube)


def test_a_release_is_seen_through_the_cluster_and_decided_by_scc(kube: FakeKube) -> None:
    findings = scc()
    responder = make(kube, findings=findings, **CUT)
    deliver(responder)
    engine = PolicyEngine(Policy(), Settings())
    releaser = Releaser(kube, protected=engine.protected, findings=findings, clock=lambda: datetime.now(UTC))
    released = releaser.release(ReleaseRequest(target=f"{NS}/{POD}", apply=True, reason="false positive", by="bob"))
    assert not released.refused and not released.failed
    findings.calls.clear()
    writes = list(kube.writes)

    again = deliver(responder, attempt=2)

    assert (again.record.code, again.record.outcome) == ("released", "done")
    assert findings.calls == ["get_finding"] and kube.writes == writes  # not isolated again


def test_a_forged_message_reusing_the_name_for_another_pod_is_refuted_by_scc_itself(kube: FakeKube) -> None:
    findings = scc()
    responder = make(kube, findings=findings, **CUT)
    deliver(responder)
    kube.add_web_deployment(NS, "other-pod")
    forged = notification(namespace=NS, pod="other-pod", container="api")  # the same finding's name
    assert forged["finding"]["name"] == NAME
    findings.calls.clear()

    outcome = deliver(responder, forged, attempt=2)

    assert findings.calls and findings.calls[0] == "get_finding"  # a refutation is never a memory
    assert outcome.record.code == "suspected_forgery"
    assert "quarantine" not in str(kube.pods[(NS, "other-pod")].labels)


def test_after_its_time_a_remembered_record_is_not_used() -> None:
    now = [0.0]
    recall = Recall(ttl_s=600, clock=lambda: now[0])
    finding, target = message()
    record = scc().findings[NAME]
    recall.remember(NAME, Verification(Vouch.VERIFIED, "ok", record=record), {"rsr_outcome": "done"})
    remembered = recall.answer(finding, target)
    assert remembered is not None and remembered.recalled
    assert remembered.record is not None and remembered.record.marks["rsr_outcome"] == "done"
    recall.remember(NAME, remembered)  # reuse does not make it younger
    now[0] = 601.0
    assert recall.answer(finding, target) is None
    assert recall.seen(NAME)  # the name stays: the redelivery is still checked before any write


@pytest.mark.parametrize("vouch", [Vouch.UNREACHABLE, Vouch.DISABLED, Vouch.REFUTED])
def test_only_scc_s_own_vouching_is_remembered(vouch: Vouch) -> None:
    recall = Recall()
    record = SccFinding(name=NAME)
    recall.remember(NAME, Verification(vouch, "x", record=record))
    finding, target = message()
    assert recall.answer(finding, target) is None and recall.seen(NAME)


def test_the_memory_is_bounded() -> None:
    recall = Recall(size=3)
    for i in range(5):
        recall.remember(f"organizations/1/sources/2/findings/f{i}")
    assert not recall.seen("organizations/1/sources/2/findings/f0")
    assert recall.seen("organizations/1/sources/2/findings/f4")
