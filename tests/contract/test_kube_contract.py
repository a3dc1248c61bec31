"""The KubePort contract: each case runs on FakeKube and on KubeAdapter against the local apiserver (conftest.py).

What the responder relies on, stated once for both: 404 is NotFound, an existing name or a stale precondition is
Conflict, a pod replaced under its name reads as Conflict (never as success on the newcomer), a merge patch's None
removes a key, and a selector update leaves the rest of a policy alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from responder.errors import Conflict, NotFound, PermanentError, PodReplaced, Unavailable
from responder.ports import LabelSelector, LabelSelectorRequirement, OwnerRef
from tests.contract.conftest import FAKE, LOG_LINE, Side
from tests.support.common import unique

QUARANTINE = "responder.rsr.dev/quarantine"
NOT_QUARANTINED = LabelSelectorRequirement(key=QUARANTINE, operator="NotIn", values=("true",))


def allow_web_body(name: str, **metadata: Any) -> dict[str, Any]:
    """An allowing policy with rules in both directions, labels and annotations: every part a write must keep."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {"team": "shop"}, "annotations": {"owner": "shop-sre"}, **metadata},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "lb"}}}]}],
            "egress": [{"to": [{"namespaceSelector": {}}]}],
        },
    }


# ----------------------------------------------------------------------------------------------- missing objects


def test_reads_of_missing_objects_are_not_found(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    with pytest.raises(NotFound):
        kube.get_pod(ns, "ghost")
    with pytest.raises(NotFound):
        kube.get_workload(ns, OwnerRef(api_version="apps/v1", kind="ReplicaSet", name="ghost-5d9c", uid="u"))
    with pytest.raises(NotFound):
        kube.get_node(unique("ghost-node"))
    with pytest.raises(NotFound):
        kube.get_lease(ns, "ghost")
    with pytest.raises(NotFound):
        kube.get_namespace(unique("ghost-ns"))
    assert kube.list_network_policies(ns) == []


def test_writes_to_missing_objects_are_not_found(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    with pytest.raises(NotFound):
        kube.patch_pod_metadata(ns, "ghost", "uid-1", {QUARANTINE: "true"}, {})
    with pytest.raises(NotFound):
        kube.delete_pod(ns, "ghost", "uid-1", 0)
    with pytest.raises(NotFound):
        kube.set_network_policy_selector(ns, "ghost", LabelSelector(), None)
    with pytest.raises(NotFound):
        kube.replace_network_policy(ns, "ghost", {"podSelector": {}}, {}, None)
    with pytest.raises(NotFound):
        kube.delete_network_policy(ns, "ghost", None)


def test_logs_and_exec_of_a_missing_pod_are_not_found(side: Side) -> None:
    with pytest.raises(NotFound):
        side.kube.read_log(side.namespace, "ghost", "api", 10, 1024)
    with pytest.raises(NotFound):
        side.kube.exec(side.namespace, "ghost", "api", ["ps", "axjf"], 5, 1024)


def test_exec_in_a_pod_that_never_ran_is_unavailable(side: Side) -> None:
    side.add_pod("web-1", {"app": "web"})
    with pytest.raises(Unavailable):  # the apiserver answers 400: the pod has no node, no container to reach
        side.kube.exec(side.namespace, "web-1", "api", ["ps", "axjf"], 5, 1024)


def test_logs_and_exec_bound_to_a_uid_refuse_a_same_named_replacement(side: Side) -> None:
    """The apiserver resolves exec and logs by name: bound to the UID the responder acted on, a read that reached
    a same-named replacement is refused, and so is a failure (its reason would be the replacement's)."""
    old = side.add_pod("web-1", {"app": "web"})
    new = side.replace_pod("web-1")
    with pytest.raises(PodReplaced) as logs:
        side.kube.read_log(side.namespace, "web-1", "api", 10, 1024, expected_uid=old.uid)
    assert (logs.value.expected_uid, logs.value.actual_uid) == (old.uid, new.uid)
    assert str(logs.value) == f"pod {side.namespace}/web-1 is now uid {new.uid}, not uid {old.uid}"
    with pytest.raises(PodReplaced) as exec_:  # the replacement never ran: the exec failed, and that is not said
        side.kube.exec(side.namespace, "web-1", "api", ["ps", "axjf"], 5, 1024, expected_uid=old.uid)
    assert exec_.value.actual_uid == new.uid


def test_a_failed_exec_bound_to_the_pods_own_uid_keeps_its_reason(side: Side) -> None:
    pod = side.add_pod("web-1", {"app": "web"})
    with pytest.raises(Unavailable):  # the pod never ran (400), and it is the pod the responder acted on
        side.kube.exec(side.namespace, "web-1", "api", ["ps", "axjf"], 5, 1024, expected_uid=pod.uid)
    with pytest.raises(NotFound):  # a pod that is gone is gone, bound or not
        side.kube.exec(side.namespace, "ghost", "api", ["ps", "axjf"], 5, 1024, expected_uid=pod.uid)


def test_creates_in_a_missing_namespace_are_not_found(side: Side) -> None:
    """The budget reads this 404 as "the budget namespace does not exist" and refuses destructive actions."""
    if side.name == FAKE:
        pytest.skip(
            "FakeKube's limit: a create makes its namespace exist (unit tests never seed the budget namespace), "
            "so this 404 is checked on the real apiserver only"
        )
    ghost = unique("ghost-ns")
    with pytest.raises(NotFound):
        side.kube.create_network_policy(ghost, allow_web_body("allow-web"))
    with pytest.raises(NotFound):
        side.kube.create_lease(ghost, "budget", {"rsr/entries": "1"})


def test_an_owner_kind_that_is_not_followed_is_not_found(side: Side) -> None:
    ref = OwnerRef(api_version="example.com/v1", kind="Rollout", name="web", uid="u", controller=True)
    with pytest.raises(NotFound):
        side.kube.get_workload(side.namespace, ref)


# ------------------------------------------------------------------------------------------------------------ pods


def test_patch_sets_changes_and_removes_labels_and_annotations(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    pod = side.add_pod("web-1", {"app": "web", "tier": "front"}, {"note": "keep", "old": "x"})

    patched = kube.patch_pod_metadata(
        ns,
        "web-1",
        pod.uid,
        {QUARANTINE: "true", "tier": None, "never-there": None},  # None removes; removing an absent key is fine
        {"responder.rsr.dev/finding": "organizations/1/sources/2/findings/f00d", "old": None},
    )

    assert patched.labels == {"app": "web", QUARANTINE: "true"}
    assert patched.annotations == {
        "note": "keep",
        "responder.rsr.dev/finding": "organizations/1/sources/2/findings/f00d",
    }
    assert patched.uid == pod.uid
    assert patched.resource_version != pod.resource_version
    again = kube.get_pod(ns, "web-1")
    assert (again.labels, again.annotations, again.resource_version) == (
        patched.labels,
        patched.annotations,
        patched.resource_version,
    )


def test_a_patch_that_changes_nothing_keeps_the_resource_version(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    pod = side.add_pod("web-1", {"app": "web", QUARANTINE: "true"})

    same = kube.patch_pod_metadata(ns, "web-1", pod.uid, {QUARANTINE: "true", "gone": None}, {})

    assert same.labels == pod.labels
    assert same.resource_version == pod.resource_version  # no write happened: nothing for a watch to see


def test_patch_with_a_stale_uid_is_conflict_and_leaves_the_replacement_alone(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    old = side.add_pod("web-1", {"app": "web"})
    new = side.replace_pod("web-1")
    assert new.uid != old.uid

    with pytest.raises(Conflict):  # the apiserver answers 422 (metadata.uid is immutable); the adapter says replaced
        kube.patch_pod_metadata(ns, "web-1", old.uid, {QUARANTINE: "true"}, {"responder.rsr.dev/finding": "f"})

    now = kube.get_pod(ns, "web-1")
    assert (now.uid, now.labels, now.annotations) == (new.uid, {"app": "web"}, {})


def test_a_patch_the_apiserver_finds_invalid_is_a_permanent_error_not_replaced(side: Side) -> None:
    """Only a 422 about metadata.uid means "replaced": any other invalid patch is a permanent error."""
    if side.name == FAKE:
        pytest.skip("FakeKube's limit: it does not validate label syntax (the responder writes constant labels)")
    pod = side.add_pod("web-1", {"app": "web"})
    with pytest.raises(PermanentError):  # Conflict is no PermanentError: this is not read as "replaced"
        side.kube.patch_pod_metadata(side.namespace, "web-1", pod.uid, {QUARANTINE: "not a label value!"}, {})
    assert side.kube.get_pod(side.namespace, "web-1").labels == {"app": "web"}


def test_delete_with_a_stale_uid_is_conflict_and_the_replacement_stays(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    old = side.add_pod("web-1", {"app": "web"})
    new = side.replace_pod("web-1")

    with pytest.raises(Conflict):
        kube.delete_pod(ns, "web-1", old.uid, 0)

    assert kube.get_pod(ns, "web-1").uid == new.uid
    kube.delete_pod(ns, "web-1", new.uid, 0)
    with pytest.raises(NotFound):  # an unscheduled pod (and every fake one) goes at once, grace period or not
        kube.get_pod(ns, "web-1")


def test_list_pods_by_equality_selector(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    run = unique("run")  # on a reused cluster other tests' pods exist too: select this test's alone
    other_ns = side.add_namespace({}, {})
    side.add_pod("web-1", {"run": run, "app": "web", QUARANTINE: "true"})
    side.add_pod("web-2", {"run": run, "app": "web"})
    side.add_pod("db-1", {"run": run, "app": "db", QUARANTINE: "true"})
    _add_pod_in(side, other_ns, "web-9", {"run": run, "app": "web", QUARANTINE: "true"})

    def names(namespace: str | None, selector: str) -> list[tuple[str, str]]:
        return sorted((p.namespace, p.name) for p in kube.list_pods(namespace, selector))

    assert names(ns, f"run={run},{QUARANTINE}=true") == [(ns, "db-1"), (ns, "web-1")]
    assert names(ns, f"run={run},app=web,{QUARANTINE}=true") == [(ns, "web-1")]
    assert names(None, f"run={run},app=web,{QUARANTINE}=true") == sorted([(ns, "web-1"), (other_ns, "web-9")])
    assert names(ns, f"run={run},app=cache") == []


SET_BASED = [
    ("app in (web,db)", ["db-1", "web-1", "web-2"]),
    ("app notin (web)", ["db-1"]),
    (f"!{QUARANTINE}", ["web-2"]),
    ("app!=web", ["db-1"]),
    (QUARANTINE, ["db-1", "web-1"]),
]


@pytest.mark.parametrize(("selector", "expected"), SET_BASED, ids=[s for s, _ in SET_BASED])
def test_list_pods_by_set_based_selector(side: Side, selector: str, expected: list[str]) -> None:
    """The operator commands only select with ``k=v`` terms, and FakeKube implements only those: on the fake the
    case checks that anything else is refused loudly, never answered wrongly."""
    run = unique("run")
    side.add_pod("web-1", {"run": run, "app": "web", QUARANTINE: "true"})
    side.add_pod("web-2", {"run": run, "app": "web"})
    side.add_pod("db-1", {"run": run, "app": "db", QUARANTINE: "true"})
    query = f"run={run},{selector}"
    if side.name == FAKE:
        with pytest.raises(ValueError, match="equality"):
            side.kube.list_pods(side.namespace, query)
        return
    assert sorted(p.name for p in side.kube.list_pods(side.namespace, query)) == expected


def _add_pod_in(side: Side, namespace: str, name: str, labels: dict[str, str]) -> None:
    """A pod in another namespace: the side's own helper, pointed elsewhere for one call."""
    home = side.namespace
    side.namespace = namespace
    try:
        side.add_pod(name, labels)
    finally:
        side.namespace = home


# ----------------------------------------------------------------------------------------------- network policies


def test_create_returns_what_is_stored_and_a_second_create_is_conflict(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))

    assert made.resource_version
    assert made.labels == {"team": "shop"}
    assert made.annotations == {"owner": "shop-sre"}
    assert made.pod_selector == LabelSelector(match_labels={"app": "web"})
    assert made.policy_types == ("Ingress", "Egress")
    assert made.spec == allow_web_body("allow-web")["spec"]
    assert kube.list_network_policies(ns) == [made]

    with pytest.raises(Conflict):
        kube.create_network_policy(ns, allow_web_body("allow-web", labels={"team": "intruder"}))
    assert kube.list_network_policies(ns) == [made]


def test_create_without_policy_types_gets_the_apiservers_default(side: Side) -> None:
    """The apiserver fills in policyTypes: Ingress always, Egress too when there are egress rules."""
    kube, ns = side.kube, side.namespace
    ingress_only: dict[str, Any] = {"podSelector": {}, "ingress": [{}]}
    both: dict[str, Any] = {"podSelector": {}, "ingress": [{}], "egress": [{}]}
    a = kube.create_network_policy(ns, {"metadata": {"name": "a"}, "spec": ingress_only})
    b = kube.create_network_policy(ns, {"metadata": {"name": "b"}, "spec": both})
    assert (a.policy_types, a.spec["policyTypes"]) == (("Ingress",), ["Ingress"])
    assert (b.policy_types, b.spec["policyTypes"]) == (("Ingress", "Egress"), ["Ingress", "Egress"])
    assert [p.name for p in kube.list_network_policies(ns)] == ["a", "b"]


def test_selector_update_keeps_the_rest_of_the_policy(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    selector = LabelSelector(match_labels={"app": "web"}, match_expressions=(NOT_QUARANTINED,))

    updated = kube.set_network_policy_selector(ns, "allow-web", selector, made.resource_version)

    assert updated.pod_selector == selector
    assert updated.resource_version != made.resource_version
    assert updated.spec == {
        **made.spec,
        "podSelector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": QUARANTINE, "operator": "NotIn", "values": ["true"]}],
        },
    }
    assert (updated.labels, updated.annotations, updated.policy_types) == (
        made.labels,
        made.annotations,
        made.policy_types,
    )
    assert kube.list_network_policies(ns) == [updated]


def test_selector_update_can_take_terms_away(side: Side) -> None:
    """Release takes the NotIn term out again; an ``Exists`` term has no values."""
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    exists = LabelSelectorRequirement(key="tier", operator="Exists")
    step = kube.set_network_policy_selector(
        ns, "allow-web", LabelSelector(match_labels={"app": "web"}, match_expressions=(NOT_QUARANTINED, exists)), None
    )
    assert step.spec["podSelector"]["matchExpressions"][1] == {"key": "tier", "operator": "Exists"}

    back = kube.set_network_policy_selector(
        ns, "allow-web", LabelSelector(match_labels={"app": "web"}), step.resource_version
    )

    assert back.pod_selector == LabelSelector(match_labels={"app": "web"})
    assert back.spec == made.spec


def test_a_selector_update_that_changes_nothing_keeps_the_resource_version(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))

    same = kube.set_network_policy_selector(ns, "allow-web", made.pod_selector, made.resource_version)

    assert same == made


def test_selector_update_replaces_match_labels(side: Side) -> None:
    """``set_network_policy_selector`` replaces spec.podSelector (KubePort): keys left out of matchLabels go.

    (KubeAdapter once sent a JSON merge patch, which merges maps and kept a key left out; it sends a JSON patch.)"""
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    narrower = kube.set_network_policy_selector(
        ns, "allow-web", LabelSelector(match_labels={"app": "web", "tier": "front"}), made.resource_version
    )

    wider = kube.set_network_policy_selector(
        ns, "allow-web", LabelSelector(match_labels={"app": "web"}), narrower.resource_version
    )

    assert wider.pod_selector == LabelSelector(match_labels={"app": "web"})
    assert kube.list_network_policies(ns)[0].pod_selector == LabelSelector(match_labels={"app": "web"})


def test_selector_update_on_a_moved_policy_is_conflict(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    moved = kube.set_network_policy_selector(ns, "allow-web", LabelSelector(match_labels={"app": "api"}), None)
    selector = LabelSelector(match_labels={"app": "web"}, match_expressions=(NOT_QUARANTINED,))

    with pytest.raises(Conflict):
        kube.set_network_policy_selector(ns, "allow-web", selector, made.resource_version)

    assert kube.list_network_policies(ns)[0].pod_selector == moved.pod_selector
    assert kube.set_network_policy_selector(ns, "allow-web", selector, None).pod_selector == selector


def test_replace_swaps_spec_and_labels_and_keeps_annotations(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    spec = {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"], "ingress": [{}]}

    replaced = kube.replace_network_policy(ns, "allow-web", spec, {"owner": "rsr"}, made.resource_version)

    assert replaced.spec == spec  # egress rules and Egress gone: the whole spec is the new one
    assert replaced.labels == {"owner": "rsr"}  # "team" gone
    assert replaced.annotations == {"owner": "shop-sre"}
    assert replaced.resource_version != made.resource_version
    assert kube.list_network_policies(ns) == [replaced]

    with pytest.raises(Conflict):
        kube.replace_network_policy(ns, "allow-web", made.spec, made.labels, made.resource_version)
    assert kube.list_network_policies(ns) == [replaced]


def test_delete_policy_only_at_the_judged_version(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_network_policy(ns, allow_web_body("allow-web"))
    kube.create_network_policy(ns, allow_web_body("allow-api"))
    moved = LabelSelector(match_labels={"app": "web"}, match_expressions=(NOT_QUARANTINED,))
    kube.set_network_policy_selector(ns, "allow-web", moved, None)

    with pytest.raises(Conflict):
        kube.delete_network_policy(ns, "allow-web", made.resource_version)
    assert [p.name for p in kube.list_network_policies(ns)] == ["allow-api", "allow-web"]

    current = next(p for p in kube.list_network_policies(ns) if p.name == "allow-web")
    kube.delete_network_policy(ns, "allow-web", current.resource_version)
    kube.delete_network_policy(ns, "allow-api", None)
    assert kube.list_network_policies(ns) == []


# ---------------------------------------------------------------------------------------------------------- leases


def test_lease_create_then_update_at_its_version(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_lease(ns, "budget", {"rsr/entries": "1", "rsr/extra": "x"})
    assert made.resource_version
    assert made.annotations == {"rsr/entries": "1", "rsr/extra": "x"}
    assert kube.get_lease(ns, "budget") == made

    with pytest.raises(Conflict):  # another instance created it first
        kube.create_lease(ns, "budget", {"rsr/entries": "other"})

    updated = kube.update_lease(ns, "budget", {"rsr/entries": "1,2"}, made.resource_version)
    assert updated.annotations == {"rsr/entries": "1,2"}  # the annotations are replaced, not merged
    assert updated.resource_version != made.resource_version
    assert kube.get_lease(ns, "budget") == updated


def test_lease_update_at_a_stale_version_is_conflict(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_lease(ns, "budget", {"rsr/entries": "1"})
    winner = kube.update_lease(ns, "budget", {"rsr/entries": "1,2"}, made.resource_version)

    with pytest.raises(Conflict):
        kube.update_lease(ns, "budget", {"rsr/entries": "1,3"}, made.resource_version)

    assert kube.get_lease(ns, "budget") == winner


def test_lease_update_without_a_version_is_refused(side: Side) -> None:
    """A Lease is never overwritten blind: the apiserver answers 422 (resourceVersion must be specified)."""
    kube, ns = side.kube, side.namespace
    made = kube.create_lease(ns, "budget", {"rsr/entries": "1"})

    with pytest.raises(PermanentError):
        kube.update_lease(ns, "budget", {"rsr/entries": "forced"}, None)

    assert kube.get_lease(ns, "budget") == made


def test_lease_update_of_a_missing_lease_creates_it(side: Side) -> None:
    """A Lease's PUT may create (its strategy allows create on update), whatever resourceVersion it carries: an
    update never reads as NotFound, so a Lease deleted between a read and the update comes back."""
    kube, ns = side.kube, side.namespace
    made = kube.update_lease(ns, "budget", {"rsr/entries": "1"}, "12345")

    assert made.annotations == {"rsr/entries": "1"}
    assert made.resource_version and made.resource_version != "12345"
    assert kube.get_lease(ns, "budget") == made


# ------------------------------------------------------------------------------ configmaps (the quarantined identities)


def test_config_map_create_then_update_at_its_version(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    made = kube.create_config_map(ns, "identities", {"uid-1": "system:serviceaccount:a:b a/p"})
    assert made.resource_version and made.data == {"uid-1": "system:serviceaccount:a:b a/p"}
    assert kube.get_config_map(ns, "identities") == made

    with pytest.raises(Conflict):  # another instance created it first
        kube.create_config_map(ns, "identities", {})

    updated = kube.update_config_map(ns, "identities", {"uid-2": "x"}, made.resource_version)
    assert updated.data == {"uid-2": "x"}  # the data is replaced, not merged
    with pytest.raises(Conflict):  # a write based on a stale read
        kube.update_config_map(ns, "identities", {"uid-3": "y"}, made.resource_version)
    assert kube.get_config_map(ns, "identities") == updated


def test_config_map_update_of_a_missing_one_is_not_found_and_a_blind_one_overwrites(side: Side) -> None:
    """Unlike a Lease's, a ConfigMap's PUT never creates it (the caller creates it again: a parameter deleted between
    a read and the update), and takes no resourceVersion as a blind overwrite (why the responder always sends one)."""
    kube, ns = side.kube, side.namespace
    with pytest.raises(NotFound):
        kube.get_config_map(ns, "identities")
    with pytest.raises(NotFound):
        kube.update_config_map(ns, "identities", {"uid-1": "x"}, "12345")
    kube.create_config_map(ns, "identities", {"uid-0": "kept?"})
    assert kube.update_config_map(ns, "identities", {"uid-1": "x"}, None).data == {"uid-1": "x"}


def test_config_map_merge_patch_sets_and_removes_keys_and_a_missing_one_is_not_found(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    with pytest.raises(NotFound):
        kube.patch_config_map_data(ns, "identities", {"uid-1": "x"})
    made = kube.create_config_map(ns, "identities", {"uid-1": "a", "uid-2": "b"})
    patched = kube.patch_config_map_data(ns, "identities", {"uid-2": None, "uid-3": "c"})
    assert patched.data == {"uid-1": "a", "uid-3": "c"}  # key by key: the others stay
    assert patched.resource_version != made.resource_version
    assert kube.get_config_map(ns, "identities") == patched


def test_the_default_service_account_is_read(side: Side) -> None:
    account = side.kube.get_service_account(side.namespace, "default")
    assert (account.namespace, account.name) == (side.namespace, "default")
    with pytest.raises(NotFound):
        side.kube.get_service_account(side.namespace, "ghost")


# ------------------------------------------------------------------------------------- namespaces, nodes, workloads


def test_namespace_and_node_reads(side: Side) -> None:
    kube = side.kube
    ns = side.add_namespace({"team": "shop"}, {"contact": "shop-sre@example.com"})
    node = side.add_node(
        {"cloud.google.com/gke-nodepool": "pool-1", "topology.kubernetes.io/zone": "europe-west1-b"},
        {"container.googleapis.com/instance_id": "1234567890"},
    )

    got_ns = kube.get_namespace(ns)
    assert got_ns.name == ns
    assert got_ns.labels["team"] == "shop"  # the apiserver adds its own (kubernetes.io/metadata.name on newer ones)
    assert got_ns.annotations == {"contact": "shop-sre@example.com"}
    got_node = kube.get_node(node)
    assert got_node.name == node
    assert got_node.labels["cloud.google.com/gke-nodepool"] == "pool-1"
    assert got_node.labels["topology.kubernetes.io/zone"] == "europe-west1-b"
    assert got_node.annotations["container.googleapis.com/instance_id"] == "1234567890"


def test_owner_chain_reads(side: Side) -> None:
    kube, ns = side.kube, side.namespace
    deployment_ref, rs_ref = side.add_deployment("web")

    rs = kube.get_workload(ns, rs_ref)
    assert (rs.kind, rs.namespace, rs.name, rs.uid) == ("ReplicaSet", ns, rs_ref.name, rs_ref.uid)
    assert rs.replicas == 0
    assert [(o.kind, o.name, o.uid, o.controller) for o in rs.owners] == [
        ("Deployment", "web", deployment_ref.uid, True)
    ]
    deployment = kube.get_workload(ns, rs.owners[0])
    assert (deployment.kind, deployment.name, deployment.uid, deployment.owners) == (
        "Deployment",
        "web",
        deployment_ref.uid,
        (),
    )


# ---------------------------------------------------------------------------------- exec and logs (a running pod)

SOCKETS = ["cat", "/proc/net/tcp", "/proc/net/tcp6"]


def test_exec_runs_the_capture_commands(running_side: tuple[Side, str]) -> None:
    side, pod = running_side
    tree = side.kube.exec(side.namespace, pod, "api", ["ps", "axjf"], 30, 64 * 1024)
    sockets = side.kube.exec(side.namespace, pod, "api", SOCKETS, 30, 64 * 1024)
    assert tree.text.split()[:4] == ["PPID", "PID", "PGID", "SID"]
    assert (tree.exit_code, tree.failure, tree.truncated_at, tree.stopped_after_s) == (0, None, None, None)
    assert sockets.text.split()[:3] == ["sl", "local_address", "rem_address"]
    assert sockets.exit_code == 0


@pytest.mark.parametrize("argv", [["ps", "axjf"], SOCKETS], ids=["ps", "sockets"])
def test_exec_output_is_capped_and_marked(running_side: tuple[Side, str], argv: list[str]) -> None:
    side, pod = running_side
    whole = side.kube.exec(side.namespace, pod, "api", argv, 30, 64 * 1024)

    capped = side.kube.exec(side.namespace, pod, "api", argv, 30, 40)

    assert capped.text == whole.text[:40]
    assert capped.truncated_at == 40 and capped.exit_code is None  # the rest, and how it ended, were never read


def test_exec_and_logs_bound_to_the_running_pods_own_uid_return_its_output(running_side: tuple[Side, str]) -> None:
    side, pod = running_side
    uid = side.kube.get_pod(side.namespace, pod).uid
    tree = side.kube.exec(side.namespace, pod, "api", ["ps", "axjf"], 30, 64 * 1024, expected_uid=uid)
    assert tree.text.split()[:4] == ["PPID", "PID", "PGID", "SID"] and tree.exit_code == 0
    assert LOG_LINE in side.kube.read_log(side.namespace, pod, "api", 10, 64 * 1024, expected_uid=uid)


def test_exec_in_a_container_the_pod_does_not_have_is_unavailable(running_side: tuple[Side, str]) -> None:
    side, pod = running_side
    with pytest.raises(Unavailable):
        side.kube.exec(side.namespace, pod, "sidecar", ["ps", "axjf"], 30, 1024)


def test_read_log_returns_the_containers_output(running_side: tuple[Side, str]) -> None:
    side, pod = running_side
    text = side.kube.read_log(side.namespace, pod, "api", 10, 64 * 1024)
    stamp, _, line = text.splitlines()[0].partition(" ")
    assert line == LOG_LINE
    assert stamp.endswith("Z")  # timestamps=true: every line starts with its RFC 3339 time


def test_a_graceful_delete_leaves_the_pod_terminating(running_side: tuple[Side, str]) -> None:
    """A pod on a node is deleted gracefully: it stays, ``deleting``, under the same UID, until the kubelet has
    stopped it, and a second delete of it is no error. (``delete`` and the duplicate check read ``deleting``.)"""
    side, pod = running_side
    if side.name == FAKE:
        pytest.skip(
            "FakeKube's limit: it removes a deleted pod at once; unit tests of concurrent deliveries and release "
            "rely on that, so the terminating state is checked on the real node only"
        )
    before = side.kube.get_pod(side.namespace, pod)

    side.kube.delete_pod(side.namespace, pod, before.uid, 30)  # `sleep` as PID 1 ignores SIGTERM: it takes the 30 s

    during = side.kube.get_pod(side.namespace, pod)
    assert (during.uid, during.deleting) == (before.uid, True)
    side.kube.delete_pod(side.namespace, pod, before.uid, 30)
    assert side.kube.get_pod(side.namespace, pod).deleting
