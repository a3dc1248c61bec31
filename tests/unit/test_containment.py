"""Containment semantics on an in-memory cluster: what exists afterwards, not which calls were made."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from responder.config import Settings
from responder.containment import budget
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.errors import BudgetUnavailable
from responder.intake.envelope import Delivery
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine, parse_policy
from responder.ports import ClusterInfo, LabelSelector, LabelSelectorRequirement, NamespaceView
from responder.report.outcome import Outcome
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube

NS, POD = "shop", "web-5d9c-abcde"
FINDING = notification(namespace=NS, pod=POD, container="api")
NAME = FINDING["finding"]["name"]


def make(
    kube: FakeKube,
    *,
    mode: str = "enforce",
    action: str | None = "isolate",
    policy: Policy | None = None,
    findings: FakeFindings | None = None,
    info: ClusterInfo | None = None,
    vouch: dict[str, Any] | None = None,
    **settings: Any,
) -> Responder:
    """A responder on ``kube``; SCC knows the finding of ``vouch`` (default: FINDING) unless ``findings`` is given."""
    s = Settings(mode=mode, action=action, **settings)  # type: ignore[arg-type]
    if findings is None:
        findings = FakeFindings()
        findings.add_from(vouch or FINDING)
    deps = Dependencies(
        settings=s,
        policy=PolicyEngine(policy or Policy(), s),
        connector=FakeConnector(kube, info),
        findings_api=findings,
    )
    return Responder(deps)


def run(responder: Responder, doc: dict[str, Any] | None = None) -> Outcome:
    return responder.respond(Delivery(payload=json.dumps(doc or FINDING).encode(), shape="test"))


def containment(outcome: Outcome) -> list[Any]:
    """The cluster actions (write-backs to SCC and Pub/Sub are recorded apart from them)."""
    return list(outcome.record.actions)


def statuses(outcome: Outcome) -> dict[str, str]:
    """Every cluster action's and write-back's status, by name."""
    return {a.action: a.status.value for a in [*outcome.record.actions, *outcome.record.writebacks]}


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_pod(NS, POD, {"app": "web", "pod-template-hash": "5d9c"})
    k.add_pod(NS, "db-0", {"app": "db"}, controller=("StatefulSet", "db"))
    k.add_workload(NS, "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
    k.add_workload(NS, "Deployment", "web")
    k.add_policy(NS, "allow-all")  # empty selector: every pod
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    k.add_policy(NS, "allow-db", LabelSelector(match_labels={"app": "db"}))
    return k


def test_isolate_denies_both_directions_and_excludes_from_allowing_policies(kube: FakeKube) -> None:
    outcome = run(make(kube))
    assert statuses(outcome) == {
        "label": "skipped",
        "isolate": "succeeded",
        "identity": "succeeded",
        "capture": "succeeded",
        "mark": "succeeded",
    }
    deny = kube.policies[(NS, DENY_ALL_POLICY)]
    assert deny.policy_types == ("Ingress", "Egress")
    assert deny.pod_selector.match_labels == {QUARANTINE_LABEL: "true"}
    exclusion = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))
    assert exclusion in kube.policies[(NS, "allow-all")].pod_selector.match_expressions
    assert exclusion in kube.policies[(NS, "allow-web")].pod_selector.match_expressions
    assert kube.policies[(NS, "allow-db")].pod_selector.match_expressions == ()  # never selected the pod
    pod = kube.pods[(NS, POD)]
    assert pod.labels[QUARANTINE_LABEL] == "true"
    assert pod.annotations["responder.rsr.dev/finding"] == NAME
    # The quarantined pod is now selected by the deny-all policy only.
    selecting = [p.name for p in kube.policies.values() if p.pod_selector.matches(pod.labels)]
    assert selecting == [DENY_ALL_POLICY]
    # Other web pods are still selected by the allowing policies.
    assert kube.policies[(NS, "allow-web")].pod_selector.matches({"app": "web"})


def test_isolate_leaves_a_policy_that_allows_nothing_alone(kube: FakeKube) -> None:
    """A default-deny selecting the pod cannot reopen it; excluding it would only take the pod out of a deny (the
    admission guard refuses that write)."""
    kube.add_policy(NS, "default-deny", policy_types=("Ingress", "Egress"), rules=False)
    kube.add_policy(NS, "egress-dns", policy_types=("Egress",), rules=False)
    kube.policies[(NS, "egress-dns")].spec["egress"] = [{"ports": [{"protocol": "UDP", "port": 53}]}]
    scc = FakeFindings()
    scc.add_from(FINDING)
    outcome = run(make(kube, findings=scc))
    assert statuses(outcome)["isolate"] == "succeeded"
    assert kube.policies[(NS, "default-deny")].pod_selector.match_expressions == ()
    assert "patch networkpolicy default-deny" not in kube.writes
    exclusion = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))
    assert exclusion in kube.policies[(NS, "egress-dns")].pod_selector.match_expressions  # egress rules allow
    # A redelivery finds the isolation intact: the default-deny without the exclusion is not a gap.
    again = run(make(kube, findings=scc))
    assert again.record.code == "duplicate", (again.record.code, statuses(again))


def test_detach_removes_workload_labels_and_keeps_them_in_an_annotation(kube: FakeKube) -> None:
    policy = parse_policy("rules: [{name: r, actions: [{action: isolate, detach: true}]}]")
    run(make(kube, action=None, policy=policy))
    pod = kube.pods[(NS, POD)]
    assert pod.labels == {QUARANTINE_LABEL: "true"}
    assert json.loads(pod.annotations["responder.rsr.dev/original-labels"]) == {
        "app": "web",
        "pod-template-hash": "5d9c",
    }


def test_dry_run_plans_the_same_and_writes_nothing(kube: FakeKube) -> None:
    outcome = run(make(kube, mode="dry-run", action="delete"))
    assert [a.action for a in outcome.record.actions] == ["isolate", "identity", "label", "capture", "delete"]
    assert kube.writes == []
    isolate = next(a for a in outcome.record.actions if a.action == "isolate")
    assert isolate.status.value == "skipped" and isolate.reason.startswith("dry-run: would")
    assert any("allow-web" in c for c in isolate.changes)
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.reason.startswith("dry-run: would delete pod")


def test_ten_concurrent_deliveries_leave_one_deny_all_one_exclusion_one_deletion(kube: FakeKube) -> None:
    responder = make(kube, action="delete")
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda _: run(responder), range(10)))
    assert all(not o.retry for o in outcomes)
    assert sum(1 for p in kube.policies if p[1] == DENY_ALL_POLICY) == 1
    assert len(kube.deleted) == 1
    assert (NS, POD) not in kube.pods
    exprs = kube.policies[(NS, "allow-web")].pod_selector.match_expressions
    assert len(exprs) == 1  # excluded once, not ten times


def test_hostnetwork_pod_isolation_is_reported_ineffective(kube: FakeKube) -> None:
    kube.add_pod(NS, "hostnet-1", {"app": "agent"}, host_network=True)
    doc = notification(namespace=NS, pod="hostnet-1", container="api")
    outcome = run(make(kube, vouch=doc, live_session="report"), doc)
    isolate = next(a for a in outcome.record.actions if a.action == "isolate")
    assert isolate.status.value == "failed"
    assert "hostNetwork" in isolate.reason
    assert isolate.details["established_connections"] == "no enforcement"
    # `live_session: report` means "do not escalate, page instead": an uncontained vouched shell is never done.
    assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
    assert outcome.record.reason.startswith("NOT CONTAINED")
    assert kube.pods[(NS, "hostnet-1")].labels[QUARANTINE_LABEL] == "true"  # still applied: defence in depth


def test_cluster_without_network_policy_enforcement_escalates_when_policy_says_so(kube: FakeKube) -> None:
    info = ClusterInfo(name="c", location="us-east1", network_policy_enabled=False)
    policy = Policy(defaults=Defaults(live_session="escalate"))
    outcome = run(make(kube, info=info, policy=policy, netpol_enforcement="auto"))
    assert statuses(outcome)["isolate"] == "failed"
    assert statuses(outcome)["delete"] == "succeeded"
    assert (NS, POD) not in kube.pods


@pytest.mark.parametrize(
    ("pod", "controller", "reason"),
    [
        ("lonely", None, "standalone pod"),
        ("db-0", ("StatefulSet", "db"), "StatefulSet pod"),
        ("agent-x", ("DaemonSet", "agent"), "DaemonSet pod"),
    ],
)
def test_delete_guards_skip_with_a_reason(kube: FakeKube, pod: str, controller: Any, reason: str) -> None:
    if (NS, pod) not in kube.pods:
        kube.add_pod(NS, pod, {"app": pod}, controller=controller)
    doc = notification(namespace=NS, pod=pod, container="api")
    outcome = run(make(kube, action="delete", vouch=doc), doc)
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.status.value == "skipped" and reason in delete.reason
    assert (NS, pod) in kube.pods


def test_min_ready_replicas_guard(kube: FakeKube) -> None:
    kube.add_workload(NS, "ReplicaSet", "web-5d9c", ready=1)
    policy = parse_policy("rules: [{name: r, actions: [{action: delete, min_ready_replicas: 1}]}]")
    outcome = run(make(kube, action=None, policy=policy))
    # A rule with only [delete] still captures evidence first (capture_before_destructive defaults to true).
    assert [a.action for a in containment(outcome)] == ["capture", "delete"]
    assert "min_ready_replicas" in containment(outcome)[1].reason
    assert (NS, POD) in kube.pods


def test_replaced_pod_is_never_touched(kube: FakeKube) -> None:
    responder = make(kube, action="delete")
    old = kube.pods[(NS, POD)]
    # After the responder read the pod, and before its first write to it, a same-named replacement took its place.
    original_patch = kube.patch_pod_metadata

    def replace_then_patch(*args: Any, **kwargs: Any) -> Any:
        with kube.lock:
            if kube.pods[(NS, POD)].uid == old.uid:
                kube.pods[(NS, POD)] = old.model_copy(update={"uid": "new-uid"})
        return original_patch(*args, **kwargs)

    kube.patch_pod_metadata = replace_then_patch  # type: ignore[method-assign]
    outcome = run(responder)
    assert kube.pods[(NS, POD)].uid == "new-uid"
    assert QUARANTINE_LABEL not in kube.pods[(NS, POD)].labels
    assert kube.deleted == []
    results = {a.action: a for a in containment(outcome)}
    assert "replaced" in results["isolate"].reason
    assert "replaced" in results["delete"].reason


def test_pod_created_after_the_event_is_a_replacement_and_is_left_alone(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod=POD, container="api", eventTime="2026-01-01T00:00:00Z")
    created_after = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    kube.pods[(NS, POD)] = kube.pods[(NS, POD)].model_copy(update={"created": created_after})
    outcome = run(make(kube, action="delete", vouch=doc), doc)
    assert all(a.status.value == "skipped" for a in containment(outcome))
    assert "created after the finding's event" in containment(outcome)[0].reason
    assert (NS, POD) in kube.pods
    assert QUARANTINE_LABEL not in kube.pods[(NS, POD)].labels


def test_forged_finding_gets_no_destructive_action_and_isolation_is_undone(kube: FakeKube) -> None:
    before = kube.pods[(NS, POD)]
    outcome = run(make(kube, action="delete", findings=FakeFindings()))  # SCC knows nothing about it
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.status.value == "skipped" and "forgery" in delete.reason
    assert (NS, POD) in kube.pods
    assert statuses(outcome)["isolate"] == "succeeded"  # isolation does not wait for SCC ...
    assert statuses(outcome)["rollback"] == "succeeded"  # ... and is undone once SCC refutes the message
    after = kube.pods[(NS, POD)]
    assert after.labels == before.labels and after.annotations == before.annotations
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "suspected_forgery")
    assert outcome.record.severity == "ERROR" and not outcome.retry


def test_inactive_in_scc_gets_no_destructive_action(kube: FakeKube) -> None:
    findings = FakeFindings()
    findings.add(NAME, state="INACTIVE")
    outcome = run(make(kube, action="delete", findings=findings))
    assert "INACTIVE" in next(a for a in outcome.record.actions if a.action == "delete").reason
    assert (NS, POD) in kube.pods


def test_transient_failure_requests_redelivery_and_the_retry_converges(kube: FakeKube) -> None:
    kube.fail_next["set_network_policy_selector"] = 1
    responder = make(kube)
    first = run(responder)
    assert first.retry and first.record.outcome == "retry"
    second = run(responder)
    assert not second.retry
    assert LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",)) in (
        kube.policies[(NS, "allow-web")].pod_selector.match_expressions
    )


def test_pod_already_gone_is_skipped_not_failed(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod="ghost-1", container="api")
    outcome = run(make(kube, vouch=doc), doc)
    assert all(a.status.value == "skipped" and "not found (404)" in a.reason for a in containment(outcome))
    assert not outcome.retry


def test_protected_namespace_and_exempt_namespace_are_never_touched_and_page(kube: FakeKube) -> None:
    kube.add_pod("kube-system", "dns-1", {"k8s-app": "dns"})
    kube.add_pod("vip", "exempt-1", {"app": "x"})
    kube.namespaces["vip"] = NamespaceView(name="vip", labels={"responder.rsr.dev/exempt": "true"})
    for ns, pod in (("kube-system", "dns-1"), ("vip", "exempt-1")):
        doc = notification(namespace=ns, pod=pod, container="api")
        # CTD reports the pod's labels as they were at detection.
        labels = kube.pods[(ns, pod)].labels
        doc["finding"]["kubernetes"]["pods"][0]["labels"] = [{"name": k, "value": v} for k, v in labels.items()]
        outcome = run(make(kube, action="delete", vouch=doc), doc)
        assert containment(outcome) == []
        assert outcome.record.skipped
        assert outcome.record.verdict.value == "ignore"  # nothing done or attempted: not counted as "act"
        # SCC vouches for a shell that the policy leaves alone: an attacker is connected, and a person is paged.
        assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
    # At most the inert deny-all went out ahead (the exemption is the namespace's, read alongside the pod).
    assert not any(w.startswith(("patch pod", "delete pod", "patch networkpolicy")) for w in kube.writes)


def test_a_pod_cannot_exempt_itself(kube: FakeKube) -> None:
    """The exemption label on the pod (which the workload's own identity may be able to write) counts for nothing."""
    kube.add_pod(NS, "self-exempt", {"app": "x", "responder.rsr.dev/exempt": "true"})
    doc = notification(namespace=NS, pod="self-exempt", container="api")
    outcome = run(make(kube, vouch=doc), doc)
    assert outcome.record.code != "exempt" and outcome.record.outcome == "done"
    assert kube.pods[(NS, "self-exempt")].labels[QUARANTINE_LABEL] == "true"


def test_exemption_of_the_namespace_holds_even_when_the_finding_does_not_show_it(kube: FakeKube) -> None:
    # The finding's labels show no exemption: the inert deny-all policy may be created ahead, but the pod itself is
    # never touched and no allowing policy changes.
    kube.add_pod(NS, "exempt-2", {"app": "x"})
    kube.namespaces[NS] = NamespaceView(name=NS, labels={"responder.rsr.dev/exempt": "true"})
    before = {name: p.pod_selector for name, p in kube.policies.items()}
    doc = notification(namespace=NS, pod="exempt-2", container="api")
    outcome = run(make(kube, action="delete", vouch=doc), doc)
    assert containment(outcome) == []
    pod = kube.pods[(NS, "exempt-2")]
    assert QUARANTINE_LABEL not in pod.labels
    assert not any(w.startswith(("patch pod", "delete pod", "patch networkpolicy")) for w in kube.writes)
    assert {name: p.pod_selector for name, p in kube.policies.items() if name in before} == before


def test_blast_radius_budget_is_shared_and_per_finding_idempotent() -> None:
    kube = FakeKube()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    taken = [budget.consume(kube, "responder-system", f"f{i}", 3, 3600, now).allowed for i in range(5)]
    assert taken == [True, True, True, False, False]
    assert budget.consume(kube, "responder-system", "f1", 3, 3600, now).allowed  # same finding again: no new slot
    later = now + timedelta(seconds=3601)
    assert budget.consume(kube, "responder-system", "f9", 3, 3600, later).allowed


def test_the_budget_counter_only_grows(kube: FakeKube) -> None:
    """Entries past the window stop counting but stay, byte for byte: the admission guard lets the responder's
    identity only append one entry, so a hijacked identity cannot reset the count."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    budget.consume(kube, "responder-system", "f1", 1, 3600, now)
    first = kube.leases[("responder-system", budget.LEASE_NAME)].annotations[budget.ENTRIES_ANNOTATION]
    later = now + timedelta(seconds=3601)
    decision = budget.consume(kube, "responder-system", "f2", 1, 3600, later)
    assert decision.allowed and decision.used == 1  # f1 no longer counts
    second = kube.leases[("responder-system", budget.LEASE_NAME)].annotations[budget.ENTRIES_ANNOTATION]
    assert second.startswith(first[:-1] + ", ") and json.loads(second) == [
        [now.isoformat(), "f1"],
        [later.isoformat(), "f2"],
    ]


def test_a_full_budget_counter_refuses_destructive_actions(kube: FakeKube) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    old = (now - timedelta(days=30)).isoformat()
    entries = [[old, f"organizations/1/sources/2/findings/{i:032x}"] for i in range(2000)]
    kube.create_lease("responder-system", budget.LEASE_NAME, {budget.ENTRIES_ANNOTATION: json.dumps(entries)})
    with pytest.raises(BudgetUnavailable, match="full"):
        budget.consume(kube, "responder-system", "f-new", 5, 3600, now)


def test_over_budget_destructive_actions_are_skipped_loudly(kube: FakeKube) -> None:
    policy = Policy(defaults=Defaults(budget=Budget(max_actions=0, window_s=3600)))
    outcome = run(make(kube, action="delete", policy=policy))
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.status.value == "skipped" and "OVER" in delete.reason
    assert (NS, POD) in kube.pods


def test_write_back_marks_and_the_echo_is_ignored(kube: FakeKube) -> None:
    findings = FakeFindings()
    findings.add_from(FINDING)
    responder = make(kube, action="delete", findings=findings, set_inactive=True)
    first = run(responder)
    assert statuses(first)["mark"] == "succeeded"
    assert statuses(first)["set_inactive"] == "succeeded"
    # Recorded apart from what was done to the workload: a count of cluster actions never counts a mark.
    assert [a.action for a in first.record.writebacks] == ["mark", "set_inactive"]
    assert {a.action for a in first.record.actions} == {"isolate", "identity", "label", "capture", "delete"}
    marks = findings.findings[NAME].marks
    assert marks["rsr_status"] == "deleted"
    assert "delete:succeeded" in marks["rsr_actions"]
    assert findings.findings[NAME].state == "INACTIVE"
    # SCC re-sends the notification because of our marks update: it carries our marks and must change nothing.
    echo = json.loads(json.dumps(FINDING))
    echo["finding"]["securityMarks"]["marks"] = dict(marks)
    writes_before = list(kube.writes)
    second = run(responder, echo)
    assert (second.record.verdict.value, second.record.code) == ("ignore", "own_writeback")
    assert kube.writes == writes_before


def test_dry_run_writes_nothing_to_scc_either(kube: FakeKube) -> None:
    findings = FakeFindings()
    findings.add_from(FINDING)
    run(make(kube, mode="dry-run", action="delete", findings=findings, set_inactive=True))
    assert findings.marks_updates == []
    assert findings.state_changes == []


def test_a_damaged_budget_counter_refuses_destructive_actions(kube: FakeKube) -> None:
    # Resetting it would let whoever can write the Lease lift the limit: the budget fails closed.
    kube.create_lease("responder-system", budget.LEASE_NAME, {budget.ENTRIES_ANNOTATION: '[["not-a-time", "f1"]]'})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(BudgetUnavailable, match="damaged"):
        budget.consume(kube, "responder-system", "f2", 1, 3600, now)
    outcome = run(make(kube, action="delete"))
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.status.value == "failed" and "damaged" in delete.reason
    assert (NS, POD) in kube.pods and outcome.retry
    assert statuses(outcome)["isolate"] == "succeeded"  # what was done before is kept and recorded


def test_event_time_without_offset_is_utc_and_still_guards_replacements(kube: FakeKube) -> None:
    doc = notification(namespace=NS, pod=POD, container="api", eventTime="2026-01-01T00:00:00")
    kube.pods[(NS, POD)] = kube.pods[(NS, POD)].model_copy(update={"created": datetime(2026, 1, 1, 0, 1, tzinfo=UTC)})
    outcome = run(make(kube, action="delete"), doc)
    assert not outcome.retry
    assert "created after the finding's event" in containment(outcome)[0].reason


def test_dry_run_and_action_none_never_exec_into_the_container(kube: FakeKube) -> None:
    # exec starts a process inside the compromised container: a side effect the attacker can see.
    dry = run(make(kube, mode="dry-run", action="delete"))
    assert "dry-run" in " ".join(next(a for a in dry.record.actions if a.action == "capture").details["notes"])
    run(make(kube, action="none"))
    assert kube.execs == []
    run(make(kube, action="isolate"))
    assert kube.execs == [(NS, POD)]  # enforce with containment: the process tree is taken


def test_a_delete_refused_by_its_guards_spends_no_budget(kube: FakeKube) -> None:
    kube.add_pod(NS, "lonely-1", {"app": "lonely"}, controller=None)
    doc = notification(namespace=NS, pod="lonely-1", container="api")
    outcome = run(make(kube, action="delete", vouch=doc), doc)
    assert "standalone pod" in next(a for a in outcome.record.actions if a.action == "delete").reason
    assert (("responder-system", budget.LEASE_NAME)) not in kube.leases  # no slot taken


def test_escalation_of_an_ineffective_isolation_captures_evidence_first(kube: FakeKube) -> None:
    kube.add_pod(NS, "hostnet-2", {"app": "agent"}, host_network=True)
    doc = notification(namespace=NS, pod="hostnet-2", container="api")
    policy = parse_policy("defaults: {live_session: escalate}\nrules: [{name: r, actions: [{action: isolate}]}]")
    outcome = run(make(kube, action=None, policy=policy, vouch=doc), doc)
    assert [a.action for a in containment(outcome)] == ["isolate", "identity", "capture", "delete"]
    assert statuses(outcome)["capture"] == "succeeded" and statuses(outcome)["delete"] == "succeeded"
    assert kube.execs == [(NS, "hostnet-2")]  # the process tree was taken before the pod was deleted


def test_exec_output_is_capped(kube: FakeKube) -> None:
    kube.ps_text = "x" * (2 * 1024 * 1024)
    policy = parse_policy("rules: [{name: r, actions: [{action: isolate}, {action: capture, exec_limit_bytes: 4096}]}]")
    outcome = run(make(kube, action=None, policy=policy))
    assert outcome.evidence is not None and outcome.evidence.process_tree is not None
    assert len(outcome.evidence.process_tree) < 4096 + 100
    assert "truncated at 4096 bytes" in outcome.evidence.process_tree


class _SccDown(FakeFindings):
    def get_finding(self, name: str) -> Any:
        from responder.errors import TransientError

        raise TransientError("SCC list_findings: HTTP 503")


def test_scc_unreachable_keeps_the_isolation_says_so_and_asks_for_redelivery(kube: FakeKube) -> None:
    outcome = run(make(kube, action="delete", findings=_SccDown()))
    assert statuses(outcome)["isolate"] == "succeeded"  # fail safe: the pod stays cut off
    assert QUARANTINE_LABEL in kube.pods[(NS, POD)].labels
    delete = next(a for a in outcome.record.actions if a.action == "delete")
    assert delete.status.value == "skipped" and delete.reason.startswith("not verified")
    assert (NS, POD) in kube.pods
    assert any("isolation is kept" in w for w in outcome.record.warnings)
    assert outcome.retry and outcome.record.verification is not None
    assert outcome.record.verification.status == "unreachable"
    assert "mark" not in statuses(outcome) or statuses(outcome)["mark"] == "skipped"


def test_enforcing_without_a_usable_cluster_connection_is_a_failure_not_a_skip(tmp_path: Any) -> None:
    from responder.adapters.kube_connect import KubeconfigConnector

    for connector in (None, KubeconfigConnector(tmp_path / "missing.kubeconfig")):  # not configured / mistyped
        for mode, status, retry in (("enforce", "failed", True), ("dry-run", "skipped", False)):
            s = Settings(mode=mode, action="isolate")  # type: ignore[arg-type]
            deps = Dependencies(settings=s, policy=PolicyEngine(Policy(), s), connector=connector)
            outcome = run(Responder(deps))
            assert {a.status.value for a in containment(outcome)} == {status}, outcome.record.actions
            assert outcome.retry is retry
