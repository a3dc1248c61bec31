"""identity: revoke (issue 31): the bindings that give only the quarantined pod's service account its rights are
deleted, recorded whole first, and recreated by ``release``; shared ones, defaults and protected namespaces' are kept.

What exists afterwards on the in-memory cluster: which RoleBindings and ClusterRoleBindings are left, what
``responder-system/rsr-revoked-bindings`` records, and what the record says. The admission guard's clauses for these
writes are in tests/fixtures/admission/other.yaml; the stolen token's reads refused on the live node in
tests/node/test_identity_live.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from responder.aftercare.release import ReleaseRequest
from responder.aftercare.status import collect_status, render_table
from responder.containment.revoke import RBAC, STORE
from responder.policy.rules import parse_policy
from responder.ports import PodView
from responder.report.builder import build_report
from tests.notifications import notification
from tests.support.common import acts, deliver
from tests.unit.fakes import FakeFindings, FakeKube
from tests.unit.test_containment import make
from tests.unit.test_policy import plan_for
from tests.unit.test_release import releaser

NS, POD, OWN, SA = "shop", "batch-runner", "responder-system", "runner"
FINDING = notification(namespace=NS, pod=POD, container="api", name_suffix="revoke")


def binding(
    kind: str, name: str, subjects: list[dict[str, Any]], namespace: str | None = None, **labels: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": "7"}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    role = {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, "roleRef": role, "subjects": subjects}


ME = {"kind": "ServiceAccount", "name": SA, "namespace": NS}


def seed(kube: FakeKube) -> None:
    kube.custom_objects[(RBAC, "v1", "rolebindings")] = [
        binding("RoleBinding", "runner-edit", [ME], NS),
        binding("RoleBinding", "runner-implied-ns", [{"kind": "ServiceAccount", "name": SA}], NS),
        binding("RoleBinding", "team-edit", [ME, {"kind": "User", "name": "alice@example.com"}], NS),
        binding("RoleBinding", "runner-in-kube-system", [ME], "kube-system"),
        binding("RoleBinding", "other-account", [{"kind": "ServiceAccount", "name": "web", "namespace": NS}], NS),
        binding("RoleBinding", "runner-as-user", [{"kind": "User", "name": f"system:serviceaccount:{NS}:{SA}"}], NS),
    ]
    kube.custom_objects[(RBAC, "v1", "clusterrolebindings")] = [
        binding("ClusterRoleBinding", "runner-view", [ME]),
        binding("ClusterRoleBinding", "runner-default", [ME], **{"kubernetes.io/bootstrapping": "rbac-defaults"}),
    ]


def names(kube: FakeKube, plural: str) -> set[str]:
    return {o["metadata"]["name"] for o in kube.custom_objects.get((RBAC, "v1", plural), [])}


def store(kube: FakeKube) -> dict[str, str]:
    held = kube.config_maps.get((OWN, STORE))
    return dict(held.data) if held else {}


def bare_pod(kube: FakeKube, account: str = SA) -> PodView:
    """A pod no controller manages, running as ``account``: nothing the responder can read says it is shared."""
    made = kube.add_pod(NS, POD, {"app": "runner"}, controller=None)
    kube.pods[(NS, POD)] = made.model_copy(update={"service_account": account})
    return kube.pods[(NS, POD)]


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    seed(k)
    return k


def test_the_bindings_naming_only_the_account_are_recorded_then_deleted_and_the_rest_kept(kube: FakeKube) -> None:
    pod = bare_pod(kube)
    outcome = deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING)
    assert outcome.record.outcome == "done"
    assert names(kube, "rolebindings") == {"team-edit", "runner-in-kube-system", "other-account", "runner-as-user"}
    assert names(kube, "clusterrolebindings") == {"runner-default"}
    kept = {json.loads(v)["metadata"]["name"]: json.loads(v) for v in store(kube).values()}
    assert set(kept) == {"runner-edit", "runner-implied-ns", "runner-view"}
    assert all(k.startswith(f"{pod.uid}.") for k in store(kube))
    assert kept["runner-edit"]["subjects"] == [ME] and kept["runner-edit"]["roleRef"]["name"] == "edit"
    assert "uid" not in kept["runner-edit"]["metadata"]  # recreated as new objects, never as the deleted version
    step = acts(outcome)["revoke"]
    assert (
        step.status.value == "succeeded" and "revoked 3 binding(s) of system:serviceaccount:shop:runner" in step.reason
    )
    reasons = " ".join(step.details["kept"])
    assert "team-edit" in reasons and "other subjects" in reasons
    assert "runner-default" in reasons and "default bindings" in reasons
    assert "runner-in-kube-system" in reasons and "protected namespace" in reasons
    assert "runner-as-user" in reasons and "as a User" in reasons
    steps = [a.action for a in outcome.record.actions]
    assert steps.index("revoke") > steps.index("identity")


def test_the_record_is_written_before_anything_is_deleted(kube: FakeKube) -> None:
    bare_pod(kube)
    kube.fail_next["patch_config_map_data"] = 0
    kube.raise_on["create_config_map"] = RuntimeError("boom")  # the record cannot be written: nothing is deleted
    kube.config_maps.clear()
    deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING)
    assert "runner-edit" in names(kube, "rolebindings") and "runner-view" in names(kube, "clusterrolebindings")


def test_an_account_a_controller_s_pods_share_is_not_revoked_unless_the_rule_says_so(kube: FakeKube) -> None:
    kube.add_web_deployment(NS, POD, "batch-runner-2")
    kube.pods[(NS, POD)] = kube.pods[(NS, POD)].model_copy(update={"service_account": SA})
    outcome = deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING)
    step = acts(outcome)["revoke"]
    assert step.status.value == "skipped" and step.reason.startswith("NOT REVOKED: system:serviceaccount:shop:runner")
    assert "ReplicaSet web-5d9c" in step.reason and outcome.record.outcome == "done"
    assert "runner-edit" in names(kube, "rolebindings") and store(kube) == {}

    policy = parse_policy(
        "version: 1\nrules:\n  - name: all\n    actions:\n      - {action: isolate}\n      - {action: revoke, shared: true}\n"
    )
    again = deliver(make(kube, vouch=FINDING, action=None, policy=policy), FINDING, attempt=2)
    assert acts(again)["revoke"].status.value == "succeeded"
    assert "runner-edit" not in names(kube, "rolebindings")


def test_the_namespace_s_default_account_is_shared(kube: FakeKube) -> None:
    bare_pod(kube, account="default")
    step = acts(deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING))["revoke"]
    assert step.status.value == "skipped" and "default service account" in step.reason


def test_nothing_is_revoked_before_scc_vouches(kube: FakeKube) -> None:
    bare_pod(kube)
    forged = notification(namespace=NS, pod=POD, container="api", name_suffix="forged-revoke")
    outcome = deliver(make(kube, findings=FakeFindings(), identity="revoke"), forged)
    assert outcome.record.code == "suspected_forgery"
    assert "runner-edit" in names(kube, "rolebindings") and store(kube) == {}


def test_a_redelivery_revokes_nothing_more_and_a_binding_changed_meanwhile_is_retried(kube: FakeKube) -> None:
    bare_pod(kube)
    responder = make(kube, vouch=FINDING, identity="revoke")
    delete = kube.delete_object
    changed: list[str] = []

    def changed_meanwhile(*args: Any) -> None:
        if args[2] == "clusterrolebindings" and not changed:  # someone edits it between the list and the delete
            changed.append(args[4])
            kube.custom_objects[(RBAC, "v1", "clusterrolebindings")][0]["metadata"]["resourceVersion"] = "8"
        delete(*args)

    kube.delete_object = changed_meanwhile  # type: ignore[method-assign]
    first = deliver(responder, FINDING)
    assert first.record.outcome == "retry" and "runner-view" in names(kube, "clusterrolebindings")
    second = deliver(responder, FINDING, attempt=2)
    assert second.record.outcome == "done" and "runner-view" not in names(kube, "clusterrolebindings")
    third = acts(deliver(responder, FINDING, attempt=3))
    assert "revoke" not in third or "already revoked" in third["revoke"].reason
    assert len(store(kube)) == 3


def test_release_recreates_what_was_revoked_and_a_dry_run_only_says_so(kube: FakeKube) -> None:
    bare_pod(kube)
    before = {o["metadata"]["name"]: o for o in kube.custom_objects[(RBAC, "v1", "rolebindings")]}
    deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING)
    planned = releaser(kube).release(ReleaseRequest(target=f"{NS}/{POD}", without_marks=True))
    assert "dry-run: would recreate RoleBinding shop/runner-edit" in acts(planned)["revoke"].reason
    assert "runner-edit" not in names(kube, "rolebindings")
    assert "REVOKED" in render_table(collect_status(kube)) and collect_status(kube)[0].revoked_bindings == 3
    done = releaser(kube).release(ReleaseRequest(target=f"{NS}/{POD}", apply=True, without_marks=True))
    assert acts(done)["revoke"].status.value == "succeeded"
    assert {"runner-edit", "runner-implied-ns"} <= names(kube, "rolebindings")
    assert "runner-view" in names(kube, "clusterrolebindings") and store(kube) == {}
    again = {o["metadata"]["name"]: o for o in kube.custom_objects[(RBAC, "v1", "rolebindings")]}
    for name in ("runner-edit", "runner-implied-ns"):
        assert again[name]["subjects"] == before[name]["subjects"]
        assert again[name]["roleRef"] == before[name]["roleRef"]


def test_release_never_recreates_a_record_that_names_another_subject(kube: FakeKube) -> None:
    pod = bare_pod(kube)
    deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING)
    planted = binding("ClusterRoleBinding", "loot", [{"kind": "ServiceAccount", "name": "attacker", "namespace": NS}])
    planted["roleRef"]["name"] = "cluster-admin"
    kube.config_maps[(OWN, STORE)] = kube.config_maps[(OWN, STORE)].model_copy(
        update={"data": {**store(kube), f"{pod.uid}.0000000000000000": json.dumps(planted)}}
    )
    done = releaser(kube).release(ReleaseRequest(target=f"{NS}/{POD}", apply=True, without_marks=True))
    step = acts(done)["revoke"]
    assert step.status.value == "failed" and "loot not recreated" in step.reason
    assert "loot" not in names(kube, "clusterrolebindings") and list(store(kube)) == [f"{pod.uid}.0000000000000000"]


def test_identity_revoke_puts_the_step_ahead_of_anything_that_ends_the_pod() -> None:
    text = "version: 1\ndefaults: {identity: revoke}\nrules:\n  - {name: dev, actions: [{action: isolate}, {action: delete}]}\n"
    order = [s.action for s in plan_for(text, NS).steps]
    assert order.index("revoke") < order.index("delete") and order.count("revoke") == 1
    assert "revoke" not in [s.action for s in plan_for(text, NS, identity="report").steps]  # RESPONDER_IDENTITY
    unquarantined = text.replace("{action: isolate}, ", "")  # nothing quarantines the pod: nothing to revoke for
    assert "revoke" not in [s.action for s in plan_for(unquarantined, NS).steps]


def test_a_dry_run_plans_it_and_touches_nothing(kube: FakeKube) -> None:
    bare_pod(kube)
    outcome = deliver(make(kube, mode="dry-run", vouch=FINDING, identity="revoke"), FINDING)
    step = acts(outcome)["revoke"]
    assert step.reason.startswith("dry-run: would delete the RoleBindings and ClusterRoleBindings whose sole subject")
    assert "runner-edit" in names(kube, "rolebindings") and store(kube) == {}


def test_the_report_says_which_reads_are_refused_now(kube: FakeKube) -> None:
    bare_pod(kube)
    report = build_report(deliver(make(kube, vouch=FINDING, identity="revoke"), FINDING))
    [step] = [s for s in (report.response.todo if report.response else ()) if "service-account token" in s]
    assert "reads and writes through the 3 binding(s) naming only it are refused too" in step
    assert "not those through bindings it shares or its groups" in step


def test_a_delete_says_when_the_stolen_token_stops_working(kube: FakeKube) -> None:
    bare_pod(kube)
    policy = parse_policy(
        "version: 1\nrules:\n  - name: all\n    actions:\n"
        "      - {action: isolate}\n      - {action: delete, allow_standalone: true, grace_period_s: 5}\n"
    )
    step = acts(deliver(make(kube, vouch=FINDING, action=None, policy=policy), FINDING))["delete"]
    assert step.status.value == "succeeded"
    assert "token stops authenticating once the pod object is gone (grace 5s)" in step.reason
