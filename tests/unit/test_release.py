"""status and release on an in-memory cluster, quarantined by the real responder: what exists afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from responder import cli
from responder.aftercare import commands
from responder.aftercare.facts import RELEASED_ANNOTATION
from responder.aftercare.release import Releaser, ReleaseRequest
from responder.aftercare.status import collect_status, render_table
from responder.config import Settings
from responder.containment import shape
from responder.containment.keys import DENY_ALL_POLICY, FINDING_ANNOTATION, MANAGED_BY, QUARANTINE_LABEL
from responder.containment.shape import CURRENT, DenyAllShape, is_deny_all
from responder.intake.envelope import Delivery
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine, parse_policy
from responder.ports import LabelSelector
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support.common import acts
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube
from tests.unit.test_cluster_tier import NPA, cnp, static_deny

NS = "shop"
WEB, API, OTHER = "web-5d9c-aaaaa", "api-7f6b-bbbbb", "web-5d9c-ccccc"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DETACH = parse_policy(
    "defaults: {mode: enforce, verify_finding: false, budget: {max_actions: 100}}\n"
    "rules: [{name: iso, actions: [{action: isolate, detach: true}]}]"
)


def quarantine(kube: FakeKube, pod: str, suffix: str, policy: Policy | None = None) -> str:
    """Contain ``pod`` with the real responder (isolate, enforce); returns the finding name."""
    settings = Settings(mode="enforce", action=None if policy else "isolate")
    engine = PolicyEngine(policy or Policy(defaults=Defaults(verify_finding=False, budget=Budget())), settings)
    responder = Responder(Dependencies(settings=settings, policy=engine, connector=FakeConnector(kube)))
    doc = notification(namespace=NS, pod=pod, container="api", name_suffix=suffix)
    outcome = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    assert {a.action: a.status.value for a in outcome.record.actions}["isolate"] == "succeeded"
    name: str = doc["finding"]["name"]
    return name


def specs(kube: FakeKube, namespace: str = NS) -> dict[str, dict[str, Any]]:
    return {p.name: p.spec for p in kube.list_network_policies(namespace)}


def releaser(kube: FakeKube, findings: FakeFindings | None = None, **kw: Any) -> Releaser:
    engine = PolicyEngine(Policy(), Settings())
    return Releaser(kube, protected=engine.protected, findings=findings, clock=lambda: NOW, **kw)


def release(r: Releaser, pod: str, **kw: Any) -> Any:
    return r.release(ReleaseRequest(target=f"{NS}/{pod}", apply=kw.pop("apply", True), **kw))


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_pod(NS, WEB, {"app": "web", "pod-template-hash": "5d9c"})
    k.add_pod(NS, API, {"app": "api"}, controller=("ReplicaSet", "api-7f6b"))
    k.add_pod(NS, OTHER, {"app": "web", "pod-template-hash": "5d9c"})
    k.add_workload(NS, "ReplicaSet", "web-5d9c")
    k.add_workload(NS, "ReplicaSet", "api-7f6b")
    k.add_policy(NS, "allow-all")
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    k.add_policy(NS, "allow-db", LabelSelector(match_labels={"app": "db"}))
    return k


@pytest.fixture
def incident(kube: FakeKube) -> dict[str, Any]:
    """Two pods quarantined in one namespace (one detached); the policies before, and the finding names."""
    before = specs(kube)
    web = quarantine(kube, WEB, "aaaa")
    api = quarantine(kube, API, "bbbb", DETACH)
    return {"before": before, "web": web, "api": api}


# ------------------------------------------------------------------------------------------------------ status


def test_status_lists_each_quarantined_pod_with_its_isolation(kube: FakeKube, incident: dict[str, Any]) -> None:
    entries = {e.pod: e for e in collect_status(kube)}
    assert set(entries) == {WEB, API}
    web, api = entries[WEB], entries[API]
    assert web.finding == incident["web"] and api.finding == incident["api"]
    assert web.quarantined_at and web.actions[0] == "isolate"
    assert (web.detached, api.detached) == (False, True)
    assert api.original_labels == {"app": "api"}
    assert web.policy_intact and api.policy_intact, (web.policy_problems, api.policy_problems)
    assert collect_status(kube, "elsewhere") == []


def test_status_does_not_count_a_policy_that_allows_nothing_as_a_gap(kube: FakeKube, incident: dict[str, Any]) -> None:
    kube.add_policy(NS, "default-deny", policy_types=("Ingress", "Egress"), rules=False)  # selects every pod
    assert all(e.policy_intact for e in collect_status(kube)), [e.policy_problems for e in collect_status(kube)]


def test_status_notices_isolation_that_decayed(kube: FakeKube, incident: dict[str, Any]) -> None:
    kube.add_policy(NS, "allow-web-late", LabelSelector(match_labels={"app": "web"}))  # added after the incident
    web = next(e for e in collect_status(kube) if e.pod == WEB)
    assert not web.policy_intact
    assert web.policy_problems == ["NetworkPolicy allow-web-late selects the pod and does not exclude quarantined pods"]
    deny = next(p for p in kube.list_network_policies(NS) if p.name == DENY_ALL_POLICY)
    kube.replace_network_policy(NS, DENY_ALL_POLICY, {"podSelector": {}}, deny.labels, deny.resource_version)
    assert "is not the deny-all" in collect_status(kube)[0].policy_problems[0]
    kube.delete_network_policy(NS, DENY_ALL_POLICY, None)
    assert collect_status(kube)[0].policy_problems[0] == f"no NetworkPolicy {DENY_ALL_POLICY} in the namespace"


def test_status_judges_the_tier_above_the_namespace_as_it_is_now(kube: FakeKube, incident: dict[str, Any]) -> None:
    assert {e.above_namespace for e in collect_status(kube)} == {"none served"}
    kube.custom_objects[NPA] = [static_deny(1)]
    assert {e.above_namespace for e in collect_status(kube)} == {"held"}
    kube.custom_objects[NPA].append(cnp("late-guardrail", 0))  # an Admin Accept on app=web, added afterwards
    entries = {e.pod: e for e in collect_status(kube)}
    assert (entries[WEB].above_namespace, entries[API].above_namespace) == ("REOPENED", "held")
    assert "late-guardrail: reopens the quarantined pod" in entries[WEB].above_problems[0]
    table = render_table(collect_status(kube))
    assert "ABOVE NS" in table and "REOPENED" in table and "! above the namespace: ClusterNetworkPolicy" in table


# ----------------------------------------------------------------------------------------------------- release


def test_dry_run_plans_every_step_and_writes_nothing(kube: FakeKube, incident: dict[str, Any]) -> None:
    writes = list(kube.writes)
    outcome = release(releaser(kube, FakeFindings()), WEB, apply=False)
    assert kube.writes == writes
    steps = acts(outcome)
    assert all(a.dry_run and a.status.value == "skipped" for a in outcome.record.actions)
    assert steps["release"].reason.startswith("dry-run: would remove")
    # The other quarantined pod keeps the namespace's isolation, in the plan as in the real run.
    assert "other quarantined pod(s) remain" in steps["policies"].reason
    assert outcome.record.mode == "dry-run" and outcome.record.code == "release"


def test_release_one_then_the_other_returns_the_namespace_to_its_state_before(
    kube: FakeKube, incident: dict[str, Any]
) -> None:
    findings = FakeFindings()
    findings.add(incident["web"], pods=((NS, WEB),))
    findings.add(incident["api"], pods=((NS, API),))
    first = release(releaser(kube, findings), WEB, reason="false positive", by="alice")
    assert not first.refused and not first.failed
    assert acts(first)["release"].status.value == "succeeded"
    web = kube.get_pod(NS, WEB)
    assert QUARANTINE_LABEL not in web.labels and web.labels["app"] == "web"
    assert [k for k in web.annotations if k.startswith("responder.rsr.dev/")] == [RELEASED_ANNOTATION]
    # API is still quarantined: the deny-all and every exclusion stay, and its isolation is intact.
    assert DENY_ALL_POLICY in specs(kube)
    assert collect_status(kube)[0].policy_intact
    assert "remain" in acts(first)["policies"].reason
    assert findings.marks_updates == [
        (
            incident["web"],
            {
                "rsr_status": "released",
                "rsr_time": NOW.isoformat(),
                "rsr_released_by": "alice",
                "rsr_release_reason": "false positive",
            },
        )
    ]

    second = release(releaser(kube, findings), API)
    assert acts(second)["policies"].status.value == "succeeded"
    assert specs(kube) == incident["before"]  # spec by spec, the deny-all gone
    api = kube.get_pod(NS, API)
    assert api.labels == {}  # detached: its labels are not given back (its ReplicaSet replaced it)
    assert "not restored" in acts(second)["release"].reason
    assert collect_status(kube) == []


def test_release_twice_changes_nothing_and_says_so(kube: FakeKube, incident: dict[str, Any]) -> None:
    findings = FakeFindings()
    findings.add(incident["web"], pods=((NS, WEB),))
    findings.add(incident["api"], pods=((NS, API),))
    release(releaser(kube, findings), WEB)
    release(releaser(kube, findings), API)
    assert len(findings.marks_updates) == 2
    writes, marks = list(kube.writes), list(findings.marks_updates)
    again = release(releaser(kube, findings), API)
    assert kube.writes == writes and findings.marks_updates == marks
    assert not again.refused and not again.failed
    assert "already released: no change" in again.record.reason
    assert all(a.status.value == "skipped" and not a.changes for a in again.record.actions)


def test_a_same_named_replacement_is_refused(kube: FakeKube, incident: dict[str, Any]) -> None:
    del kube.pods[(NS, WEB)]
    kube.add_pod(NS, WEB, {"app": "web"})  # new UID, never quarantined
    writes = list(kube.writes)
    outcome = release(releaser(kube), WEB)
    assert outcome.refused
    assert outcome.record.verdict.value == "reject" and outcome.record.code == "release_refused"
    assert "not quarantined" in outcome.record.reason
    assert kube.writes == writes


@pytest.mark.parametrize(
    ("target", "why"),
    [("kube-system/coredns-1", "protected"), ("Shop/x", "namespace"), ("shop", "NAMESPACE/POD"), ("shop/a_b", "pod")],
)
def test_protected_namespaces_and_bad_identifiers_are_refused(kube: FakeKube, target: str, why: str) -> None:
    outcome = releaser(kube).release(ReleaseRequest(target=target, apply=True))
    assert outcome.refused and why in outcome.record.reason
    assert kube.calls == []  # nothing reached the API


def test_the_uid_read_first_is_the_precondition_of_the_pod_write(kube: FakeKube, incident: dict[str, Any]) -> None:
    original = kube.patch_pod_metadata

    def swap(namespace: str, name: str, uid: str, labels: Any, annotations: Any, resource_version: Any = None) -> Any:
        del kube.pods[(namespace, name)]
        kube.add_pod(namespace, name, {"app": "web"})
        return original(namespace, name, uid, labels, annotations, resource_version)

    kube.patch_pod_metadata = swap  # type: ignore[method-assign]
    outcome = release(releaser(kube), WEB)
    assert "replaced" in acts(outcome)["release"].reason
    assert QUARANTINE_LABEL not in kube.get_pod(NS, WEB).labels  # the replacement, untouched
    assert RELEASED_ANNOTATION not in kube.get_pod(NS, WEB).annotations


def test_delete_uses_the_uid_and_then_cleans_the_namespace(kube: FakeKube, incident: dict[str, Any]) -> None:
    release(releaser(kube), WEB)
    uid = kube.get_pod(NS, API).uid
    outcome = release(releaser(kube), API, delete=True)
    assert kube.deleted[-1] == (NS, API, uid)
    assert acts(outcome)["delete"].status.value == "succeeded"
    assert specs(kube) == incident["before"]


def test_a_failed_pod_write_leaves_the_namespace_isolated(kube: FakeKube, incident: dict[str, Any]) -> None:
    from responder.errors import Forbidden

    release(releaser(kube), WEB)
    kube.raise_on["patch_pod_metadata"] = Forbidden("403")
    outcome = release(releaser(kube), API)
    assert outcome.failed and "policies" not in acts(outcome)
    assert DENY_ALL_POLICY in specs(kube)


def test_a_pod_quarantined_during_the_cleanup_is_isolated_again(kube: FakeKube, incident: dict[str, Any]) -> None:
    release(releaser(kube), WEB)
    original = kube.delete_network_policy

    def race(namespace: str, name: str, resource_version: str | None) -> None:
        original(namespace, name, resource_version)
        if (namespace, OTHER) in kube.pods and QUARANTINE_LABEL not in kube.pods[(namespace, OTHER)].labels:
            pod = kube.pods[(namespace, OTHER)]  # the responder labels another pod at this very moment
            kube.patch_pod_metadata(namespace, OTHER, pod.uid, {QUARANTINE_LABEL: "true"}, {FINDING_ANNOTATION: "x"})

    kube.delete_network_policy = race  # type: ignore[method-assign]
    outcome = release(releaser(kube), API)
    assert acts(outcome)["reisolate"].status.value == "succeeded"
    [other] = collect_status(kube)
    assert other.pod == OTHER and other.policy_intact, other.policy_problems


def test_without_google_apis_the_mark_step_says_they_are_off(kube: FakeKube, incident: dict[str, Any]) -> None:
    outcome = release(releaser(kube, None), WEB)
    assert "Google APIs are off" in acts(outcome)["mark"].reason


def test_a_new_finding_s_quarantine_landing_during_the_release_is_not_lifted(
    kube: FakeKube, incident: dict[str, Any]
) -> None:
    """The release patch carries the pod's resourceVersion: a new finding's quarantine written between the release's
    read and its patch (forced with a hook) makes the release fail, and the new quarantine stands."""
    original = kube.patch_pod_metadata
    newer = "organizations/987654321012/sources/11223311223344556600/findings/bbbb"

    def new_finding_first(ns: str, name: str, uid: str, labels: Any, annotations: Any, resource_version: Any) -> Any:
        kube.patch_pod_metadata = original  # type: ignore[method-assign]
        original(ns, name, uid, {QUARANTINE_LABEL: "true"}, {FINDING_ANNOTATION: newer})
        return original(ns, name, uid, labels, annotations, resource_version)

    kube.patch_pod_metadata = new_finding_first  # type: ignore[method-assign]
    outcome = release(releaser(kube), WEB)
    assert acts(outcome)["release"].status.value == "failed" and outcome.failed
    pod = kube.get_pod(NS, WEB)
    assert pod.labels[QUARANTINE_LABEL] == "true" and pod.annotations[FINDING_ANNOTATION] == newer


# ------------------------------------------------------------------------------- older deny-alls and squatters

# A deny-all an older responder wrote. Every version so far wrote the same one (shape.SHAPES holds only v1), so these
# tests add an older entry to the table, as the next change of the shape will: one under another name, and one under
# today's name whose content differs (its label's value).
OLDER_ELSEWHERE = DenyAllShape(
    version=0,
    written_by="an older responder (test)",
    name="rsr-deny-all",
    selects=dict(CURRENT.selects),
    policy_types=CURRENT.policy_types,
    labels=dict(CURRENT.labels),
)
OLDER_HERE = DenyAllShape(
    version=0,
    written_by="an older responder (test)",
    name=CURRENT.name,
    selects=dict(CURRENT.selects),
    policy_types=CURRENT.policy_types,
    labels={"app.kubernetes.io/managed-by": "rsr"},
)
OLDER = [pytest.param(OLDER_ELSEWHERE, id="another name"), pytest.param(OLDER_HERE, id="today's name")]


def upgraded_from(kube: FakeKube, older: DenyAllShape) -> None:
    """The namespace as the older version left it: its deny-all in place of today's (the exclusions are the same)."""
    kube.delete_network_policy(NS, DENY_ALL_POLICY, None)
    kube.create_network_policy(NS, older.body())


@pytest.mark.parametrize("older", OLDER)
def test_release_deletes_an_older_version_s_deny_all(
    kube: FakeKube, incident: dict[str, Any], monkeypatch: pytest.MonkeyPatch, older: DenyAllShape
) -> None:
    monkeypatch.setattr(shape, "SHAPES", (CURRENT, older))
    upgraded_from(kube, older)
    entries = collect_status(kube)
    assert entries and not any(e.policy_intact for e in entries)  # not today's deny-all: isolation would rewrite it
    assert all(any("older responder's" in p for p in e.policy_problems) for e in entries), entries
    release(releaser(kube), WEB)
    assert older.name in specs(kube)  # API is still quarantined: its (older) deny-all stays
    second = release(releaser(kube), API)
    assert f"deleted NetworkPolicy {NS}/{older.name} (shape v0, an older responder's deny-all)" in (
        acts(second)["policies"].changes
    )
    assert specs(kube) == incident["before"]


@pytest.mark.parametrize("older", OLDER)
def test_a_shape_missing_from_the_table_is_left_behind_as_a_squatter(
    kube: FakeKube, incident: dict[str, Any], older: DenyAllShape
) -> None:
    """The bug the table prevents: a release after an upgrade that forgot an older shape leaves its deny-all."""
    upgraded_from(kube, older)
    release(releaser(kube), WEB)
    release(releaser(kube), API)
    assert older.name in specs(kube) and set(specs(kube)) - {older.name} == set(incident["before"])


@pytest.mark.parametrize(
    ("spec", "labels"),
    [
        pytest.param({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}, MANAGED_BY, id="allows ingress"),
        pytest.param({"podSelector": {"matchLabels": {"selects": "nothing"}}}, MANAGED_BY, id="selects nothing"),
        pytest.param(CURRENT.spec(), {"team.example/owner": "x"}, id="today's content without the label"),
    ],
)
def test_a_squatter_under_the_name_is_never_trusted_as_the_deny_all(
    kube: FakeKube,
    incident: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    spec: dict[str, Any],
    labels: dict[str, str],
) -> None:
    """Whatever the table knows, a policy under the deny-all's name that matches none of its shapes is not the
    responder's: status says so and release leaves it where it is."""
    monkeypatch.setattr(shape, "SHAPES", (CURRENT, OLDER_HERE))
    deny = next(p for p in kube.list_network_policies(NS) if p.name == DENY_ALL_POLICY)
    kube.replace_network_policy(NS, DENY_ALL_POLICY, spec, labels, deny.resource_version)
    squatter = specs(kube)[DENY_ALL_POLICY]
    assert all("is not the deny-all" in e.policy_problems[0] for e in collect_status(kube))
    release(releaser(kube), WEB)
    outcome = release(releaser(kube), API)
    assert not any("deleted NetworkPolicy" in c for c in acts(outcome)["policies"].changes)
    assert specs(kube)[DENY_ALL_POLICY] == squatter


def test_isolation_replaces_an_older_deny_all_under_today_s_name(
    kube: FakeKube, incident: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shape, "SHAPES", (CURRENT, OLDER_HERE))
    upgraded_from(kube, OLDER_HERE)
    settings = Settings(mode="enforce", action="isolate")
    engine = PolicyEngine(Policy(defaults=Defaults(verify_finding=False, budget=Budget())), settings)
    responder = Responder(Dependencies(settings=settings, policy=engine, connector=FakeConnector(kube)))
    doc = notification(namespace=NS, pod=OTHER, container="api", name_suffix="cccc")
    outcome = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    isolate = {a.action: a for a in outcome.record.actions}["isolate"]
    assert isolate.status.value == "succeeded"
    assert any("of shape v0 (an older responder's)" in c for c in isolate.changes), isolate.changes
    assert is_deny_all(next(p for p in kube.list_network_policies(NS) if p.name == DENY_ALL_POLICY))
    assert all(e.policy_intact for e in collect_status(kube)), [e.policy_problems for e in collect_status(kube)]


# --------------------------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_one_record(
    kube: FakeKube, incident: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands, "connect", lambda settings, cluster: kube)
    assert cli.main(["release", f"{NS}/{WEB}", "--json"]) == 0  # plan
    # Without Google APIs the release cannot be recorded in SCC's marks, where it lasts: a failure unless the
    # operator says this cluster has no SCC.
    assert cli.main(["release", f"{NS}/{WEB}", "--yes", "--json"]) == 1
    assert cli.main(["release", f"{NS}/{WEB}", "--yes", "--json", "--without-marks"]) == 0
    assert cli.main(["release", "kube-system/x", "--yes", "--json"]) == 2
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mode"] for r in records[:2]] == ["dry-run", "enforce"]
    assert records[3]["code"] == "release_refused"
    assert cli.main(["status", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert {"namespace", "pod", "finding", "quarantined_at", "detached", "policy_intact"} <= set(entry)
    assert entry["pod"] == API


def test_cli_needs_a_kubeconfig_or_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 1
    assert "RESPONDER_KUBECONFIG" in capsys.readouterr().err
