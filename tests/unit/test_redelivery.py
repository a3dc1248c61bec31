"""What happens the second time: every delivery converges on the end state its verified plan requires.

Pub/Sub delivers at least once, so a redelivery is the ordinary case. The rule these tests hold the responder to:
**acknowledged means contained** (isolated with the live session cut, or deleted) **or rightly left alone**; anything
else is retried, or ends ``not_contained`` at ERROR, which pages. Progress that can suppress work is read from SCC's
own record (its security marks), never from the pod. Each case delivers the same message two or three times, as
Pub/Sub would (with ``deliveryAttempt``), with SCC down, refusing or answering in between, and asserts the end state
of the pod, the policies and the marks, and the outcome of every attempt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from responder.containment.keys import DENY_ALL_POLICY, FINDING_ANNOTATION, PRIOR_FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.progress import isolation_holds
from responder.containment.shape import is_deny_all
from responder.containment.verification import Verification, Vouch, vouched, vouched_target
from responder.errors import Forbidden, TransientError
from responder.intake.envelope import Delivery
from responder.intake.triage import triage
from responder.ports import LabelSelector, PodView
from responder.report.outcome import Outcome
from responder.service import Responder
from tests.notifications import notification
from tests.unit.fakes import FakeFindings, FakeKube, FakeLogs, FakePublisher
from tests.unit.test_cluster_tier import NPA, cnp, static_deny
from tests.unit.test_containment import FINDING, NAME, NS, POD, make

# What a converged redelivery may cost: the pod read and the namespace's policies, and one SCC read.
# The pod, its namespace's policies, and the quarantined identities (issue 31: a lost entry is restored).
# The convergence check's reads; served_group_versions is API discovery, which the adapter caches per connection (one
# `/apis` read per cluster every five minutes), and nothing is listed when no cluster-scoped policy kind is served.
CHECK_CALLS = {"get_pod", "list_network_policies", "get_config_map", "served_group_versions"}
CUT = {"netpol_enforcement": "established"}  # Dataplane V2: isolation cuts the live session
NEW_ONLY = {"netpol_enforcement": "new-only"}  # Calico: it does not


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_web_deployment(NS, POD)
    k.add_policy(NS, "allow-all")
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    k.add_policy(NS, "allow-db", LabelSelector(match_labels={"app": "db"}))
    return k


def scc(doc: dict[str, Any] | None = None) -> FakeFindings:
    """SCC holding the genuine finding of ``doc``."""
    findings = FakeFindings()
    findings.add_from(doc or FINDING)
    return findings


def deliver(responder: Responder, doc: dict[str, Any] | None = None, attempt: int | None = None) -> Outcome:
    delivery = Delivery(payload=json.dumps(doc or FINDING).encode(), shape="test", delivery_attempt=attempt)
    return responder.respond(delivery)


def ends(outcome: Outcome) -> tuple[str, str, str]:
    record = outcome.record
    return record.verdict.value, record.outcome, record.severity


def steps(outcome: Outcome) -> dict[str, str]:
    return {a.action: a.status.value for a in [*outcome.record.actions, *outcome.record.writebacks]}


def quarantined(kube: FakeKube, pod: str = POD) -> bool:
    return kube.pods[(NS, pod)].labels.get(QUARANTINE_LABEL) == "true"


def holds(kube: FakeKube, pod: str = POD) -> bool:
    """The pod's isolation holds in the cluster, judged by content (the same judgement `status` makes)."""
    view = kube.pods[(NS, pod)]
    name = view.annotations.get(FINDING_ANNOTATION)
    return isolation_holds(name, view, [p for (ns, _), p in kube.policies.items() if ns == NS]) is not None


# ------------------------------------------------------------------------------------- a converged redelivery
def test_a_converged_redelivery_costs_one_scc_read_three_kube_reads_and_no_write(kube: FakeKube) -> None:
    findings = scc()
    first = deliver(make(kube, findings=findings, **CUT))
    assert ends(first) == ("act", "done", "NOTICE")
    marks = findings.findings[NAME].marks
    assert (marks["rsr_outcome"], marks["rsr_status"], marks["rsr_pod_uid"]) == (
        "done",
        "isolated",
        kube.pods[(NS, POD)].uid,
    )
    other = make(kube, findings=findings, **CUT)  # another instance: nothing remembered
    logs = FakeLogs()
    other.investigator.logs = logs
    kube.calls.clear()
    findings.calls.clear()
    writes, execs = list(kube.writes), list(kube.execs)

    again = deliver(other, attempt=2)

    assert (again.record.code, *ends(again)) == ("duplicate", "ignore", "done", "INFO")
    assert "SCC's marks record this occurrence as done" in again.record.reason
    assert sorted(kube.calls) == sorted(CHECK_CALLS) and findings.calls == ["get_finding"]
    assert kube.writes == writes and kube.execs == execs and logs.filters == []


def test_a_redelivery_without_an_attempt_count_is_recognised_from_the_pod_s_record(kube: FakeKube) -> None:
    findings = scc()
    deliver(make(kube, findings=findings, **CUT))
    kube.calls.clear()
    findings.calls.clear()
    writes = list(kube.writes)
    again = deliver(make(kube, findings=findings, **CUT))  # a second subscription, a seek: attempt unknown
    assert again.record.code == "duplicate"
    assert findings.calls == ["get_finding"]
    assert set(kube.calls) <= CHECK_CALLS | {"create_network_policy", "get_namespace"}  # round one, inert
    assert kube.writes == writes


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
def test_a_redelivery_whose_isolation_decayed_converges_again(kube: FakeKube, decay: Any, what: str) -> None:
    findings = scc()
    deliver(make(kube, findings=findings, **CUT))
    decay(kube)
    again = deliver(make(kube, findings=findings, **CUT), attempt=2)
    assert again.record.code != "duplicate", what
    assert ends(again)[:2] == ("act", "done")
    assert holds(kube), what  # isolation holds again, judged on the cluster
    assert steps(again)["capture"] == "skipped"  # the first delivery's capture is not repeated
    assert "earlier delivery" in next(a.reason for a in again.record.actions if a.action == "capture")


def test_a_cluster_wide_allow_added_since_makes_a_redelivery_escalate(kube: FakeKube) -> None:
    findings = scc()
    kube.custom_objects[NPA] = [static_deny(5)]
    assert ends(deliver(make(kube, findings=findings, **CUT))) == ("act", "done", "NOTICE") and holds(kube)
    kube.custom_objects[NPA].append(cnp("allow-proxy", 1))  # an Admin Accept ahead of the static deny
    again = deliver(make(kube, findings=findings, **CUT), attempt=2)
    assert again.record.code != "duplicate"
    isolate = next(a for a in again.record.actions if a.action == "isolate")
    assert isolate.details["reopened"] and "allow-proxy" in isolate.reason
    assert steps(again)["delete"] == "succeeded" and (NS, POD) not in kube.pods  # the live-session rule: escalate
    assert ends(again)[:2] == ("act", "done")


def test_dry_run_is_never_a_duplicate_and_a_vouched_shell_it_leaves_alone_pages(kube: FakeKube) -> None:
    findings = scc()
    for attempt in (None, 2):
        outcome = deliver(make(kube, findings=findings, mode="dry-run", **CUT), attempt=attempt)
        assert outcome.record.code != "duplicate"
        assert ends(outcome) == ("act", "not_contained", "ERROR")
        assert outcome.record.reason.startswith("NOT CONTAINED") and "dry-run" in outcome.record.reason
    assert kube.writes == [] and kube.execs == []


# ------------------------------------------------------------------------------------- forged messages
def test_a_forged_message_isolated_while_scc_was_down_is_rolled_back_once_scc_answers(kube: FakeKube) -> None:
    findings = FakeFindings()  # SCC does not know the name: every delivery of this message is a forgery
    findings.raise_on["get_finding"] = TransientError("SCC list_findings: HTTP 503")
    responder = make(kube, findings=findings, **CUT)
    first = deliver(responder, attempt=1)
    assert ends(first) == ("act", "retry", "ERROR") and quarantined(kube)  # fail safe, and redelivered
    second = deliver(responder, attempt=2)
    assert (second.record.code, second.record.outcome) != ("duplicate", "done")
    assert second.record.outcome == "retry" and quarantined(kube)
    del findings.raise_on["get_finding"]
    third = deliver(responder, attempt=3)
    assert (third.record.code, *ends(third)[:2]) == ("suspected_forgery", "reject", "done")
    assert steps(third)["rollback"] == "succeeded"
    pod = kube.pods[(NS, POD)]
    assert QUARANTINE_LABEL not in pod.labels and FINDING_ANNOTATION not in pod.annotations
    assert kube.execs == [] and findings.marks_updates == []


def test_a_forged_message_scc_refuses_to_answer_for_is_never_acknowledged(kube: FakeKube) -> None:
    """A name under an organisation the responder cannot read: a permanent 403 on SCC. Every attempt retries, so
    the message ends in the dead letter (which pages), never acknowledged with the forged isolation standing."""
    findings = FakeFindings()
    findings.raise_on["get_finding"] = Forbidden("SCC list_findings: HTTP 403")
    responder = make(kube, findings=findings, **CUT)
    for attempt in (1, 2, 3):
        outcome = deliver(responder, attempt=attempt)
        assert outcome.record.outcome == "retry", (attempt, outcome.record.code)
        assert outcome.record.code != "duplicate"


def test_a_rollback_that_fails_is_retried_until_it_lands(kube: FakeKube) -> None:
    findings = FakeFindings()
    findings.raise_on["get_finding"] = TransientError("503")
    responder = make(kube, findings=findings, **CUT)
    deliver(responder, attempt=1)
    del findings.raise_on["get_finding"]
    kube.fail_next["patch_pod_metadata"] = 1
    second = deliver(responder, attempt=2)
    assert (second.record.code, second.record.outcome) == ("suspected_forgery", "retry")
    assert steps(second)["rollback"] == "failed" and quarantined(kube)
    third = deliver(responder, attempt=3)
    assert (third.record.outcome, steps(third)["rollback"]) == ("done", "succeeded")
    assert not quarantined(kube)


def test_a_forged_rollback_racing_a_genuine_isolation_leaves_the_genuine_quarantine(kube: FakeKube) -> None:
    """The forged message's rollback reads the pod, then a genuine finding's isolation lands, then the rollback's
    patch goes out: its resourceVersion precondition fails, the fresh read shows the genuine record, nothing is
    undone. The interleaving is forced with a hook, not left to timing."""
    forged_scc = FakeFindings()
    forged_scc.raise_on["get_finding"] = TransientError("503")
    forger = make(kube, findings=forged_scc, **CUT)
    deliver(forger, attempt=1)  # the forged isolation, kept while SCC could not answer
    del forged_scc.raise_on["get_finding"]
    genuine = notification(namespace=NS, pod=POD, container="api", name_suffix="fedcba9876543210")
    genuine_responder = make(kube, findings=scc(genuine), **CUT)
    original = kube.patch_pod_metadata
    raced: list[bool] = []

    def racing(
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        if resource_version and not raced:  # the rollback's patch: the genuine isolation lands first
            raced.append(True)
            kube.patch_pod_metadata = original  # type: ignore[method-assign]
            assert ends(deliver(genuine_responder, genuine))[:2] == ("act", "done")
        return original(namespace, name, uid, labels, annotations, resource_version)

    kube.patch_pod_metadata = racing  # type: ignore[method-assign]
    outcome = deliver(forger, attempt=2)
    assert raced and outcome.record.code == "suspected_forgery" and outcome.record.outcome == "done"
    assert steps(outcome)["rollback"] == "skipped"
    pod = kube.pods[(NS, POD)]
    assert quarantined(kube) and pod.annotations[FINDING_ANNOTATION] == genuine["finding"]["name"]
    assert holds(kube)


def test_a_refuted_message_on_a_pod_quarantined_for_another_finding_hands_the_quarantine_back(
    kube: FakeKube,
) -> None:
    genuine = notification(namespace=NS, pod=POD, container="api", name_suffix="fedcba9876543210")
    deliver(make(kube, findings=scc(genuine), **CUT), genuine)
    forged_scc = FakeFindings()
    forged_scc.raise_on["get_finding"] = TransientError("503")
    forger = make(kube, findings=forged_scc, **CUT)
    deliver(forger, attempt=1)
    assert kube.pods[(NS, POD)].annotations[PRIOR_FINDING_ANNOTATION] == genuine["finding"]["name"]
    del forged_scc.raise_on["get_finding"]
    outcome = deliver(forger, attempt=2)
    assert steps(outcome)["rollback"] == "succeeded"
    pod = kube.pods[(NS, POD)]
    assert quarantined(kube) and pod.annotations[FINDING_ANNOTATION] == genuine["finding"]["name"]
    assert PRIOR_FINDING_ANNOTATION not in pod.annotations and holds(kube)


# ------------------------------------------------------------------------------------- genuine findings
def test_a_genuine_finding_with_scc_down_on_the_first_attempt_finishes_on_the_next(kube: FakeKube) -> None:
    findings = scc()
    findings.raise_on["get_finding"] = TransientError("503")
    responder = make(kube, findings=findings, **CUT)
    first = deliver(responder, attempt=1)
    assert first.record.outcome == "retry" and steps(first)["capture"] == "skipped" and kube.execs == []
    del findings.raise_on["get_finding"]
    second = deliver(responder, attempt=2)
    assert (second.record.code, *ends(second)[:2]) == ("reverse_shell", "act", "done")
    assert steps(second)["capture"] == "succeeded" and kube.execs == [(NS, POD)]
    assert findings.findings[NAME].marks["rsr_outcome"] == "done"
    third = deliver(responder, attempt=3)
    assert third.record.code == "duplicate" and kube.execs == [(NS, POD)]


def test_an_escalated_delete_that_failed_once_runs_on_the_redelivery(kube: FakeKube) -> None:
    findings = scc()
    responder = make(kube, findings=findings, **NEW_ONLY)
    kube.fail_next["delete_pod"] = 1
    first = deliver(responder, attempt=1)
    assert first.record.outcome == "retry" and steps(first)["delete"] == "failed" and (NS, POD) in kube.pods
    assert findings.findings[NAME].marks["rsr_outcome"] == "retry"
    second = deliver(responder, attempt=2)
    assert second.record.code != "duplicate" and ends(second)[:2] == ("act", "done")
    assert steps(second)["delete"] == "succeeded" and (NS, POD) not in kube.pods
    assert steps(second)["capture"] == "skipped"  # captured by the first attempt, not repeated
    third = deliver(responder, attempt=3)
    assert third.record.code == "duplicate"


@pytest.mark.parametrize("why", ["forbidden", "bare pod", "statefulset", "hostNetwork bare pod"])
def test_an_escalation_that_cannot_run_ends_not_contained_every_time(kube: FakeKube, why: str) -> None:
    pod, doc = POD, FINDING
    if why == "forbidden":
        kube.raise_on["delete_pod"] = Forbidden("pods delete: 403 (the admission guard)")
    else:
        pod = "lone-1"
        controller = ("StatefulSet", "db") if why == "statefulset" else None
        kube.add_pod(NS, pod, {"app": "x"}, controller=controller, host_network=why.startswith("hostNetwork"))
        doc = notification(namespace=NS, pod=pod, container="api")
    findings = scc(doc)
    for attempt in (1, 2):
        outcome = deliver(make(kube, findings=findings, **NEW_ONLY), doc, attempt=attempt)
        assert outcome.record.code != "duplicate"
        assert ends(outcome) == ("act", "not_contained", "ERROR"), (why, steps(outcome))
        assert outcome.record.reason.startswith("NOT CONTAINED"), outcome.record.reason
        assert (NS, pod) in kube.pods
    assert findings.findings[doc["finding"]["name"]].marks["rsr_outcome"] == "not_contained"


def test_a_flood_that_exhausts_the_budget_pages_for_every_shell_left_connected(kube: FakeKube) -> None:
    """Burning the budget with throwaway shells is a cheap way in: every shell the budget leaves connected pages."""
    docs = []
    for i in range(4):
        kube.add_pod(NS, f"web-5d9c-f{i}", {"app": "web"})
        docs.append(notification(namespace=NS, pod=f"web-5d9c-f{i}", container="api", name_suffix=f"{i:016x}"))
    findings = FakeFindings()
    for doc in docs:
        findings.add_from(doc)
    outcomes = [deliver(make(kube, findings=findings, budget_max=1, **NEW_ONLY), doc) for doc in docs]
    assert [o.record.outcome for o in outcomes] == ["done", "not_contained", "not_contained", "not_contained"]
    assert all(o.record.severity == "ERROR" for o in outcomes[1:])
    assert all("budget" in o.record.reason for o in outcomes[1:])


def test_live_session_report_pages_instead_of_escalating(kube: FakeKube) -> None:
    publisher = FakePublisher()
    responder = make(kube, findings=scc(), live_session="report", report_topic="projects/p/topics/t", **NEW_ONLY)
    responder.deps.publisher = publisher
    outcome = deliver(responder)
    assert ends(outcome) == ("act", "not_contained", "ERROR") and quarantined(kube) and "delete" not in steps(outcome)
    report = json.loads(publisher.messages[0][1])
    assert report["response"]["todo"][0].startswith("Not contained")


def test_a_report_that_cannot_reach_the_owners_of_a_live_shell_is_retried(kube: FakeKube) -> None:
    class DownPublisher(FakePublisher):
        def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
            raise TransientError("pubsub publish: 503")

    responder = make(kube, findings=scc(), live_session="report", report_topic="projects/p/topics/t", **NEW_ONLY)
    responder.deps.publisher = DownPublisher()
    outcome = deliver(responder)
    assert outcome.record.outcome == "retry" and steps(outcome)["notify"] == "failed"


def test_marks_that_cannot_be_written_make_the_delivery_a_retry(kube: FakeKube) -> None:
    findings = scc()
    findings.raise_on["update_marks"] = Forbidden("securitymarks update: 403")
    outcome = deliver(make(kube, findings=findings, **CUT))
    assert outcome.record.outcome == "retry" and steps(outcome)["mark"] == "failed"
    assert holds(kube)  # the pod stays contained meanwhile


# ------------------------------------------------------------------------------------- concurrent writers
def test_a_release_racing_a_new_isolation_is_redone_not_claimed(kube: FakeKube) -> None:
    """A release of another pod deletes the deny-all and lifts the exclusions between this isolation's policy check
    and its label patch (forced with a hook): the isolation reads the policies again, redoes what was undone, and
    the pod is isolated as its record says."""
    original = kube.patch_pod_metadata
    released: list[bool] = []

    def release_first(*args: Any, **kwargs: Any) -> PodView:
        if not released:  # what `release` writes once no quarantined pod is left in the namespace
            released.append(True)
            kube.delete_network_policy(NS, DENY_ALL_POLICY, None)
            for (_, name), policy in list(kube.policies.items()):
                plain = policy.pod_selector.model_copy(update={"match_expressions": ()})
                kube.set_network_policy_selector(NS, name, plain, None)
        return original(*args, **kwargs)

    kube.patch_pod_metadata = release_first  # type: ignore[method-assign]
    outcome = deliver(make(kube, findings=scc(), **CUT))
    assert released and ends(outcome)[:2] == ("act", "done")
    assert is_deny_all(kube.policies[(NS, DENY_ALL_POLICY)]) and holds(kube)
    assert any("again" in change for a in outcome.record.actions for change in a.changes)


# ------------------------------------------------------------------------------------- only vouched fields steer
def _verified(doc: dict[str, Any]) -> Verification:
    findings = scc(doc)
    record = next(iter(findings.findings.values()))
    return Verification(Vouch.VERIFIED, "ok", record=record)


def test_a_node_pool_scc_does_not_vouch_for_is_a_forgery_and_deletes_nothing(kube: FakeKube) -> None:
    """With every vouched field unchanged, a message that names another node pool must not pick another rule."""
    from responder.policy.rules import parse_policy

    genuine = notification(namespace=NS, pod=POD, container="api")
    genuine["finding"]["kubernetes"]["nodePools"] = [{"name": "general"}]
    forged = json.loads(json.dumps(genuine))
    forged["finding"]["kubernetes"]["nodePools"] = [{"name": "disposable"}]
    policy = parse_policy(
        "rules: [{name: pool, match: {node_pools: [disposable]}, actions: [{action: capture}, {action: delete}]}]"
    )
    outcome = deliver(make(kube, findings=scc(genuine), action=None, policy=policy, **CUT), forged)
    assert (outcome.record.code, outcome.record.verdict.value) == ("suspected_forgery", "reject")
    assert "node pool" in outcome.record.reason and (NS, POD) in kube.pods and kube.execs == []


def test_the_container_and_the_connection_come_from_scc_s_record() -> None:
    genuine = notification(namespace=NS, pod=POD, container="api")
    genuine["finding"]["sourceProperties"]["Reverse_Shell_Stdin_Redirection_Dst_Ip"] = "198.51.100.7"
    message = json.loads(json.dumps(genuine))
    message["finding"]["sourceProperties"]["Container_Name"] = "sidecar"
    message["finding"]["sourceProperties"]["Reverse_Shell_Stdin_Redirection_Dst_Ip"] = "203.0.113.9"
    from responder.intake.findings import to_finding
    from responder.intake.notification import parse_notification

    finding = to_finding(parse_notification(json.dumps(message).encode()))
    target = triage(finding, now=datetime.now(UTC)).target
    assert target is not None and target.container == "sidecar"
    steered = vouched(finding, _verified(genuine))
    assert steered.container == "api" and vouched_target(target, steered).container == "api"
    assert steered.remote is not None and steered.remote.ip == "198.51.100.7"
    assert steered.security_marks == {}  # never the message's marks


def test_a_guard_refusal_is_recorded_with_the_guard_s_own_message_and_pages(kube: FakeKube) -> None:
    """The apiserver's preamble would push the admission policy's message past the record's cap: the record leads with
    the policy's name and its message (the live 1.35 apiserver proves the same in tests/integration/test_guard_live.py)."""
    message = "the responder never writes in a protected namespace (kube-system, ...)"
    text = (
        "create networkpolicy in shop: 403 networkpolicies.networking.k8s.io 'rsr-quarantine-deny-all' is forbidden: "
        "ValidatingAdmissionPolicy 'reverse-shell-responder-guard' with binding 'reverse-shell-responder-guard' "
        f"denied request: {message}"
    )
    kube.raise_on["create_network_policy"] = Forbidden(text)
    outcome = deliver(make(kube, findings=scc(), **CUT))
    isolate = next(a for a in outcome.record.actions if a.action == "isolate")
    assert isolate.reason.endswith(f"refused by admission policy reverse-shell-responder-guard: {message}")
    assert ends(outcome) == ("act", "not_contained", "ERROR")
