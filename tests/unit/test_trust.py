"""Trust, tried as a forger would: nothing irreversible before SCC vouches, only vouched fields steer, a release lasts.

Fakes for the cluster and SCC (tests/unit/fakes.py); the same cases run on a real apiserver and the SCC wire fake in
tests/integration/test_trust.py. Every assertion is about the pod, the policies, the calls made, or the record.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from responder.aftercare.facts import RELEASED_ANNOTATION, policy_problems
from responder.config import Settings
from responder.containment.budget import ENTRIES_ANNOTATION, LEASE_NAME
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.errors import Forbidden, TransientError
from responder.policy.rules import PolicyEngine, parse_policy
from responder.ports import LabelSelector, LabelSelectorRequirement, SccFinding
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support.common import acts, deliver
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube

NS = "shop"
LABELS = {"app": "web", "pod-template-hash": "5d9c"}
DETACH_AND_DELETE = """
defaults: {mode: enforce, budget: {max_actions: 100}}
rules:
  - name: all
    actions: [{action: isolate, detach: true}, {action: label}, {action: capture}, {action: delete}]
"""
LOW_DELETES = """
defaults: {mode: enforce, budget: {max_actions: 100}}
rules:
  - name: low-is-cheap
    match: {severities: [LOW]}
    actions: [{action: isolate}, {action: delete}]
  - name: the-rest
    actions: [{action: isolate}]
"""


ISOLATE_ONLY = "rules: [{name: r, actions: [{action: isolate, live_session: report}]}]"


class FailingFindings(FakeFindings):
    """SCC whose lookups end in ``error`` (a 403, a 5xx, a timeout, a bug)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def get_finding(self, name: str) -> SccFinding | None:
        raise self.error


def make(kube: FakeKube, findings: FakeFindings, policy: str = DETACH_AND_DELETE) -> Responder:
    settings = Settings(mode="enforce")
    deps = Dependencies(
        settings=settings,
        policy=PolicyEngine(parse_policy(policy), settings),
        connector=FakeConnector(kube),
        findings_api=findings,
    )
    return Responder(deps)


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_workload(NS, "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
    k.add_workload(NS, "Deployment", "web")
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    k.add_pod(NS, "web-5d9c-aaaaa", LABELS)
    return k


# ------------------------------------------------------------------------------------ only what is reversible first


@pytest.mark.parametrize("bad", ["organizations/1/sources/2/findings/a.b", "projects/p/sources/2/findings/x/../y"])
def test_a_name_that_is_not_a_finding_name_is_rejected_at_intake_before_any_call(kube: FakeKube, bad: str) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name=bad)
    kube.calls.clear()
    outcome = deliver(make(kube, FakeFindings()), doc)
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "bad_name")
    assert kube.calls == [] and kube.writes == []


@pytest.mark.parametrize(
    "error",
    [
        Forbidden("403 PERMISSION_DENIED securitycenter.findings.list"),
        TransientError("503 UNAVAILABLE"),
        TransientError("deadline exceeded"),
        RuntimeError("a bug in the adapter"),
    ],
    ids=["403", "5xx", "timeout", "crash"],
)
def test_a_lookup_that_neither_vouches_nor_refutes_keeps_the_isolation_holds_the_rest_and_redelivers(
    kube: FakeKube, error: BaseException
) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="lookupfails")
    outcome = deliver(make(kube, FailingFindings(error)), doc)
    assert outcome.retry and outcome.record.outcome == "retry"
    assert outcome.record.verification is not None and outcome.record.verification.status == "unreachable"
    pod = kube.pods[(NS, "web-5d9c-aaaaa")]
    assert pod.labels == {**LABELS, QUARANTINE_LABEL: "true"}  # isolated (fail-safe), not detached
    assert acts(outcome)["isolate"].status.value == "succeeded"
    for waiting in ("detach", "capture", "delete"):
        assert acts(outcome)[waiting].status.value == "skipped" and "not verified" in acts(outcome)[waiting].reason
    assert kube.execs == [] and "read_log" not in kube.calls
    assert not any(w.startswith("delete pod") for w in kube.writes)


def test_a_refuted_message_leaves_the_pod_exactly_as_it_was_and_never_ran_anything_in_it(kube: FakeKube) -> None:
    kube.pods[(NS, "web-5d9c-aaaaa")] = kube.pods[(NS, "web-5d9c-aaaaa")].model_copy(
        update={"annotations": {"team": "payments"}}
    )
    before = kube.pods[(NS, "web-5d9c-aaaaa")]
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="forged")
    outcome = deliver(make(kube, FakeFindings()), doc)  # SCC does not know it
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "suspected_forgery")
    after = kube.pods[(NS, "web-5d9c-aaaaa")]
    assert (after.uid, after.labels, after.annotations) == (before.uid, before.labels, before.annotations)
    assert acts(outcome)["rollback"].status.value == "succeeded"
    assert acts(outcome)["detach"].status.value == "skipped"
    assert kube.execs == [] and "read_log" not in kube.calls


def test_a_vouched_finding_is_detached_captured_and_deleted(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="genuine")
    findings = FakeFindings()
    findings.add_from(doc)
    outcome = deliver(make(kube, findings), doc)
    assert [(a.action, a.status.value) for a in outcome.record.actions][:6] == [
        ("isolate", "succeeded"),
        ("identity", "succeeded"),  # its token's writes refused right after the pod is quarantined
        ("label", "skipped"),  # the isolate's pod patch already wrote the label and record
        ("detach", "succeeded"),
        ("capture", "succeeded"),
        ("delete", "succeeded"),
    ]
    assert kube.execs and not outcome.retry


# ------------------------------------------------------------------------------------------ only vouched fields steer


def test_without_event_time_scc_s_is_used_and_a_pod_created_after_it_is_left_alone(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="notime", eventTime=None)
    findings = FakeFindings()
    event = datetime.now(UTC) - timedelta(hours=1)
    findings.add_from(doc, event_time=event)
    pod = kube.pods[(NS, "web-5d9c-aaaaa")]
    kube.pods[(NS, "web-5d9c-aaaaa")] = pod.model_copy(update={"created": event + timedelta(minutes=30)})
    outcome = deliver(make(kube, findings), doc)
    assert any("taken from SCC's record" in w for w in outcome.record.warnings)
    containment = list(outcome.record.actions)
    assert containment and all(a.status.value == "skipped" and "replacement" in a.reason for a in containment)
    assert [w for w in kube.writes if "pod" in w.split()] == []  # at most the inert deny-all, which selects no one


def test_without_event_time_and_without_an_answer_from_scc_nothing_is_done(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="notime2", eventTime=None)
    outcome = deliver(make(kube, FailingFindings(TransientError("503"))), doc)
    assert (outcome.record.code, outcome.record.outcome) == ("unverified", "retry")
    assert kube.writes == []


def test_a_severity_lowered_in_the_message_is_refuted_and_matches_no_cheaper_rule(kube: FakeKube) -> None:
    genuine = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="lowered")
    findings = FakeFindings()
    findings.add_from(genuine)  # SCC: CRITICAL
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="lowered", severity="LOW")
    outcome = deliver(make(kube, findings, LOW_DELETES), doc)
    assert outcome.record.code == "suspected_forgery"
    assert any(m.startswith("severity") for m in outcome.record.verification.mismatches)  # type: ignore[union-attr]
    assert acts(outcome)["delete"].status.value == "skipped"
    assert (NS, "web-5d9c-aaaaa") in kube.pods


def test_an_event_time_later_than_scc_s_is_refuted(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="later")
    findings = FakeFindings()
    findings.add_from(doc, event_time=datetime.now(UTC) - timedelta(days=2))
    outcome = deliver(make(kube, findings), doc)
    assert outcome.record.code == "suspected_forgery"
    assert any(m.startswith("eventTime") for m in outcome.record.verification.mismatches)  # type: ignore[union-attr]


def test_a_shared_canonical_name_is_not_a_shared_budget_slot(kube: FakeKube) -> None:
    findings = FakeFindings()
    responder = make(kube, findings)
    for suffix, pod in (("first", "web-5d9c-bbbbb"), ("second", "web-5d9c-ccccc")):
        kube.add_pod(NS, pod, LABELS)
        doc = notification(namespace=NS, pod=pod, name_suffix=suffix)
        doc["finding"]["canonicalName"] = "projects/1/sources/2/findings/shared"
        findings.add_from(doc)
        assert acts(deliver(responder, doc))["delete"].status.value == "succeeded"
    lease = next(v for (_, name), v in kube.leases.items() if name == LEASE_NAME)
    keys = [key for _, key in json.loads(lease.annotations[ENTRIES_ANNOTATION])]
    assert len(keys) == 2 and all(k.endswith(("/first", "/second")) for k in keys)


# ---------------------------------------------------------------------------------------------- a release lasts


def test_a_redelivery_for_a_pod_released_after_the_event_is_ignored_unless_the_finding_moved_on(
    kube: FakeKube,
) -> None:
    """The release lives in SCC's marks (``release`` writes them): a redelivery of the original message is not acted
    on; a finding SCC moved past the release (the shell came back) is."""
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="released")
    released_at = datetime.now(UTC) + timedelta(seconds=1)
    findings = FakeFindings()
    findings.add_from(doc, marks={"rsr_status": "released", "rsr_time": released_at.isoformat(timespec="seconds")})
    outcome = deliver(make(kube, findings), doc, attempt=5)
    assert (outcome.record.verdict.value, outcome.record.code, outcome.record.outcome) == (
        "ignore",
        "released",
        "done",
    )
    assert QUARANTINE_LABEL not in kube.pods[(NS, "web-5d9c-aaaaa")].labels
    # The shell came back: SCC moved the finding's event time past the release, and the notification says so.
    later = (released_at + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    again = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="released", eventTime=later)
    findings.add_from(again, marks=findings.findings[doc["finding"]["name"]].marks)
    outcome = deliver(make(kube, findings), again)
    assert outcome.record.verdict.value == "act" and acts(outcome)["isolate"].status.value == "succeeded"


@pytest.mark.parametrize("stamp", ["2999-01-01T00:00:00+00:00", "now"])
def test_a_release_annotation_planted_on_the_pod_holds_nothing_off(kube: FakeKube, stamp: str) -> None:
    """Anyone with pods: patch (possibly the workload itself) can write the pod's annotations: a release stamp there,
    in the future or a plausible one, never makes the responder leave a vouched shell alone."""
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="planted")
    when = datetime.now(UTC).isoformat(timespec="seconds") if stamp == "now" else stamp
    pod = kube.pods[(NS, "web-5d9c-aaaaa")]
    kube.pods[(NS, "web-5d9c-aaaaa")] = pod.model_copy(update={"annotations": {RELEASED_ANNOTATION: when}})
    findings = FakeFindings()
    findings.add_from(doc)
    for attempt in (2, None):  # a redelivery and a first delivery alike
        outcome = deliver(make(kube, findings, ISOLATE_ONLY), doc, attempt=attempt)
        assert (outcome.record.verdict.value, outcome.record.outcome) == ("act", "done"), outcome.record.reason
        assert kube.pods[(NS, "web-5d9c-aaaaa")].labels[QUARANTINE_LABEL] == "true"
        kube.pods[(NS, "web-5d9c-aaaaa")] = pod.model_copy(update={"annotations": {RELEASED_ANNOTATION: when}})


# ------------------------------------------------------------------------------------------ isolation by content

Q = QUARANTINE_LABEL
PLANTED = {
    "on-the-label": LabelSelector(match_labels={Q: "true"}),
    "label-exists": LabelSelector(match_expressions=(LabelSelectorRequirement(key=Q, operator="Exists"),)),
    "label-in": LabelSelector(match_expressions=(LabelSelectorRequirement(key=Q, operator="In", values=("true",)),)),
    "app-gone": LabelSelector(match_expressions=(LabelSelectorRequirement(key="app", operator="DoesNotExist"),)),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_a_policy_planted_on_the_quarantine_label_is_neutralised_and_judged_alike_everywhere(
    kube: FakeKube, planted: str
) -> None:
    kube.add_policy(NS, planted, PLANTED[planted])
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix=f"planted{planted}")
    findings = FakeFindings()
    findings.add_from(doc)
    responder = make(kube, findings, DETACH_AND_DELETE.replace(", {action: delete}", ""))
    outcome = deliver(responder, doc)
    assert acts(outcome)["isolate"].status.value == "succeeded"
    pod = kube.pods[(NS, "web-5d9c-aaaaa")]
    policies = [p for (ns, _), p in kube.policies.items() if ns == NS]
    assert policy_problems(pod, policies) == []
    policy = kube.policies[(NS, planted)]
    assert not policy.pod_selector.matches(pod.labels) and not policy.pod_selector.matches({Q: "true"})
    # Planted again after the isolation: status sees it, and a redelivery is not taken for a duplicate.
    kube.add_policy(NS, f"{planted}-again", PLANTED[planted])
    policies = [p for (ns, _), p in kube.policies.items() if ns == NS]
    assert [p for p in policy_problems(pod, policies) if f"{planted}-again" in p]
    outcome = deliver(responder, doc, attempt=2)
    assert outcome.record.code != "duplicate"
    assert not kube.policies[(NS, f"{planted}-again")].pod_selector.matches(kube.pods[(NS, "web-5d9c-aaaaa")].labels)


def test_a_policy_that_allows_nothing_is_left_as_it_is(kube: FakeKube) -> None:
    kube.add_policy(NS, "deny-web", LabelSelector(match_labels={"app": "web"}), rules=False)
    doc = notification(namespace=NS, pod="web-5d9c-aaaaa", name_suffix="denyonly")
    findings = FakeFindings()
    findings.add_from(doc)
    deliver(make(kube, findings, DETACH_AND_DELETE.replace(", {action: delete}", "")), doc)
    assert kube.policies[(NS, "deny-web")].pod_selector == LabelSelector(match_labels={"app": "web"})
    assert DENY_ALL_POLICY in {name for _, name in kube.policies}
