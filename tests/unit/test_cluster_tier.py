"""The tier above the namespace: every cluster-scoped policy kind judged by content for a quarantined pod, from
manifests in each project's documented form, and what isolation does when one of them reopens the pod.

The socket-level proof (the local node's dataplane enforcing ClusterNetworkPolicy with kube-network-policies' own
evaluator) is tests/node/test_cluster_tier_live.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from responder.containment import calico_selector, cluster_tier
from responder.containment.cluster_judge import Subject, judge_calico, judge_cilium, judge_npa, needs_namespace_labels
from responder.errors import Forbidden, TransientError
from responder.ports import NamespaceView
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import NS, POD

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
Q = "responder.rsr.dev/quarantine"
WHO = Subject(namespace=NS, labels={"app": "web"}, namespace_labels={"team": "payments"}, service_account="web")
NPA = ("policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies")


def static_deny(priority: int = 1) -> dict[str, Any]:
    """The shipped static Admin-tier deny, rendered as Terraform and make kube-up render it."""
    text = (ROOT / "deploy/kubernetes/cluster-quarantine.yaml").read_text().replace("${priority}", str(priority))
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def cnp(name: str, priority: int, action: str = "Accept", tier: str = "Admin", **spec: Any) -> dict[str, Any]:
    """A ClusterNetworkPolicy as SIG Network documents it: egress to a CIDR, subject the pods labelled app=web."""
    body: dict[str, Any] = {
        "tier": tier,
        "priority": priority,
        "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
        "egress": [{"name": "proxy", "action": action, "to": [{"networks": ["203.0.113.0/24"]}]}],
    }
    body.update(spec)
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": body}  # fmt: skip


def verdicts(judged: list[Any]) -> dict[str, tuple[bool, bool]]:
    return {v.name: (v.reopens, v.holds) for v in judged}


# ---------------------------------------------------------------------------------------- ClusterNetworkPolicy
def test_the_static_deny_holds_the_pod_ahead_of_a_worse_admin_accept() -> None:
    judged = judge_npa([("ClusterNetworkPolicy", static_deny(1)), ("ClusterNetworkPolicy", cnp("proxy", 500))], WHO)
    assert verdicts(judged) == {"rsr-quarantine-deny-all": (False, True), "proxy": (False, False)}
    assert "outranked" in next(v.why for v in judged if v.name == "proxy")


@pytest.mark.parametrize("priority", [0, 1])
def test_an_admin_accept_at_an_equal_or_better_priority_reopens(priority: int) -> None:
    judged = judge_npa([("ClusterNetworkPolicy", static_deny(1)), ("ClusterNetworkPolicy", cnp("dns", priority))], WHO)
    dns = next(v for v in judged if v.name == "dns")
    assert dns.reopens and "egress rule proxy (Accept, priority" in dns.why, dns


def test_without_the_static_deny_any_admin_accept_selecting_the_pod_reopens() -> None:
    assert verdicts(judge_npa([("ClusterNetworkPolicy", cnp("proxy", 900))], WHO)) == {"proxy": (True, False)}


def test_an_accept_on_the_quarantine_label_itself_reopens() -> None:
    subject = {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {Q: "true"}}}}
    assert verdicts(judge_npa([("ClusterNetworkPolicy", cnp("q", 5, subject=subject))], WHO)) == {"q": (True, False)}


def test_a_guardrail_with_the_notin_quarantine_term_does_not_select_the_pod() -> None:
    selector = {"matchExpressions": [{"key": Q, "operator": "NotIn", "values": ["true"]}]}
    policy = cnp("guard", 0, subject={"pods": {"namespaceSelector": {}, "podSelector": selector}})
    judged = judge_npa([("ClusterNetworkPolicy", policy)], WHO)
    assert verdicts(judged) == {"guard": (False, False)} and judged[0].why == "does not select the quarantined pod"


def test_namespace_subjects_match_on_the_namespace_name_and_labels() -> None:
    by_name = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}
    by_label = {"namespaces": {"matchLabels": {"team": "payments"}}}
    other = {"namespaces": {"matchLabels": {"team": "search"}}}
    judged = judge_npa(
        [("ClusterNetworkPolicy", cnp(n, 5, subject=s)) for n, s in (("a", by_name), ("b", by_label), ("c", other))],
        WHO,
    )
    assert verdicts(judged) == {"a": (True, False), "b": (True, False), "c": (False, False)}


def test_the_baseline_tier_and_pass_never_reopen() -> None:
    judged = judge_npa(
        [("ClusterNetworkPolicy", cnp("base", 0, tier="Baseline")), ("ClusterNetworkPolicy", cnp("pass", 0, "Pass"))],
        WHO,
    )
    assert verdicts(judged) == {"base": (False, False), "pass": (False, False)}
    assert "Baseline tier" in next(v.why for v in judged if v.name == "base")


def test_a_deny_that_does_not_cover_all_traffic_does_not_outrank() -> None:
    partial = static_deny(1)
    partial["spec"]["egress"][0]["protocols"] = [{"tcp": {"destinationPort": {"number": 443}}}]
    judged = judge_npa([("ClusterNetworkPolicy", partial), ("ClusterNetworkPolicy", cnp("proxy", 500))], WHO)
    assert verdicts(judged)["proxy"] == (True, False)
    assert verdicts(judged)["rsr-quarantine-deny-all"] == (False, False)  # not a deny of all the pod's traffic


def test_a_selector_that_cannot_be_read_is_taken_to_select_for_an_accept_never_for_a_deny() -> None:
    odd = {"pods": {"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}}}
    deny = static_deny(1)
    deny["spec"]["subject"] = odd
    judged = judge_npa([("ClusterNetworkPolicy", deny), ("ClusterNetworkPolicy", cnp("odd", 500, subject=odd))], WHO)
    assert verdicts(judged) == {"rsr-quarantine-deny-all": (False, False), "odd": (True, False)}


def test_the_static_deny_leaves_protected_namespaces_out() -> None:
    system = Subject(namespace="kube-system", labels={"app": "web"}, namespace_labels={})
    assert verdicts(judge_npa([("ClusterNetworkPolicy", static_deny(1))], system)) == {
        "rsr-quarantine-deny-all": (False, False)
    }


def test_admin_and_baseline_admin_network_policies_v1alpha1() -> None:
    anp = {
        "metadata": {"name": "allow-monitoring"},
        "spec": {
            "priority": 10,
            "subject": {"namespaces": {}},
            "ingress": [{"name": "scrape", "action": "Allow", "from": [{"namespaces": {"matchLabels": {"m": "1"}}}]}],
        },
    }
    banp = {
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}, "egress": [{"action": "Allow", "to": [{"networks": ["0.0.0.0/0"]}]}]},
    }
    judged = judge_npa([("AdminNetworkPolicy", anp), ("BaselineAdminNetworkPolicy", banp)], WHO)
    assert verdicts(judged) == {"allow-monitoring": (True, False), "default": (False, False)}


# ------------------------------------------------------------------------------------------------------- Cilium
def ccnp(name: str, spec: dict[str, Any], namespace: str | None = None) -> tuple[str, dict[str, Any]]:
    kind = "CiliumNetworkPolicy" if namespace else "CiliumClusterwideNetworkPolicy"
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return kind, {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}


ALLOW_DNS = {
    "endpointSelector": {"matchLabels": {"k8s:app": "web"}},
    "egress": [{"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system"}}]}],
}
DENY_ALL_QUARANTINED = {
    "endpointSelector": {"matchLabels": {f"k8s:{Q}": "true"}},
    "ingressDeny": [{"fromEntities": ["all"]}],
    "egressDeny": [{"toEntities": ["all"]}],
}


def test_a_cilium_allow_selecting_the_pod_reopens_it_allows_add_up() -> None:
    judged = judge_cilium([ccnp("dns", ALLOW_DNS), ccnp("local", ALLOW_DNS, namespace=NS)], WHO)
    assert verdicts(judged) == {"dns": (True, False), f"{NS}/local": (True, False)}
    assert judged[1].kind == "CiliumNetworkPolicy"


def test_a_cilium_deny_of_all_traffic_outranks_every_allow() -> None:
    judged = judge_cilium([ccnp("dns", ALLOW_DNS), ccnp("quarantine", DENY_ALL_QUARANTINED)], WHO)
    assert verdicts(judged) == {"dns": (False, False), "quarantine": (False, True)}


def test_cilium_namespace_labels_and_host_policies() -> None:
    by_namespace = {"endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": NS}}, "ingress": [{}]}
    by_ns_label = {
        "endpointSelector": {"matchLabels": {"io.cilium.k8s.namespace.labels.team": "payments"}},
        "egress": [{"toCIDR": ["0.0.0.0/0"]}],
    }
    host = {"nodeSelector": {}, "ingress": [{"fromEntities": ["world"]}]}
    elsewhere = {"endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "other"}}, "egress": [{}]}
    judged = judge_cilium(
        [ccnp("a", by_namespace), ccnp("b", by_ns_label), ccnp("host", host), ccnp("c", elsewhere)], WHO
    )
    # An empty rule ({}) allows nothing, so "a" selects the pod but opens nothing.
    assert verdicts(judged) == {"a": (False, False), "b": (True, False), "host": (False, False), "c": (False, False)}


# ------------------------------------------------------------------------------------------------------- Calico
def gnp(name: str, **spec: Any) -> tuple[str, dict[str, Any]]:
    return "GlobalNetworkPolicy", {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                                   "metadata": {"name": name}, "spec": spec}  # fmt: skip


EGRESS_PROXY = [{"action": "Allow", "protocol": "TCP", "destination": {"nets": ["203.0.113.0/24"]}}]


@pytest.mark.parametrize("order", [100, 2000, None])
def test_a_calico_allow_reopens_at_any_order_in_the_default_tier(order: int | None) -> None:
    spec: dict[str, Any] = {"selector": "app == 'web'", "types": ["Egress"], "egress": EGRESS_PROXY}
    if order is not None:
        spec["order"] = order
    assert verdicts(judge_calico([gnp("proxy", **spec)], WHO)) == {"proxy": (True, False)}


def test_a_calico_deny_of_all_at_a_lower_order_holds() -> None:
    deny = gnp(
        "quarantine",
        order=10,
        selector=f"{Q} == 'true'",
        types=["Ingress", "Egress"],
        ingress=[{"action": "Deny"}],
        egress=[{"action": "Deny"}],
    )
    allow = gnp("proxy", order=50, selector="app == 'web'", types=["Egress"], egress=EGRESS_PROXY)
    earlier = gnp("early", order=5, selector="all()", types=["Egress"], egress=EGRESS_PROXY)
    judged = judge_calico([deny, allow, earlier], WHO)
    assert verdicts(judged) == {"quarantine": (False, True), "proxy": (False, False), "early": (True, False)}


def test_calico_selectors_namespaces_tiers_and_host_endpoints() -> None:
    policies = [
        gnp("not-quarantined", selector=f"{Q} != 'true'", egress=EGRESS_PROXY, types=["Egress"]),
        gnp("other-team", selector="all()", namespaceSelector="team == 'search'", egress=EGRESS_PROXY),
        gnp("ns", selector="projectcalico.org/namespace == 'shop' && has(app)", ingress=[{"action": "Allow"}]),
        gnp("tiered", tier="security", selector="all()", ingress=[{"action": "Allow"}]),
        gnp("host", selector="all()", doNotTrack=True, ingress=[{"action": "Allow"}]),
        gnp("unreadable", selector="app ~= 'x'", ingress=[{"action": "Allow"}]),
    ]
    judged = judge_calico(policies, WHO)
    assert verdicts(judged) == {
        "not-quarantined": (False, False),
        "other-team": (False, False),
        "ns": (True, False),
        "tiered": (True, False),
        "host": (False, False),
        "unreadable": (True, False),
    }
    assert "tier security" in next(v.why for v in judged if v.name == "tiered")


@pytest.mark.parametrize(
    ("selector", "labels", "selects"),
    [
        ("all()", {}, True),
        ("global()", {}, False),
        ("app == 'web' && !has(x)", {"app": "web"}, True),
        ("app in {'a', 'web'} || x == 'y'", {"app": "web"}, True),
        ("app not in {'web'}", {"app": "web"}, False),
        ("(tier starts with 'fr') && tier ends with 'nd' && tier contains 'on'", {"tier": "frontend"}, True),
        ('a != "b"', {}, True),
        ("", {}, True),
    ],
)
def test_calico_selector_expressions(selector: str, labels: dict[str, str], selects: bool) -> None:
    assert calico_selector.parse(selector)(labels) is selects


@pytest.mark.parametrize("selector", ["app ==", "app == 'x' &&", "has(", "app === 'x'", "(a == 'b'", "a == 'b')"])
def test_calico_selectors_that_cannot_be_read_raise(selector: str) -> None:
    with pytest.raises(calico_selector.SelectorError):
        calico_selector.parse(selector)


# -------------------------------------------------------------------------------- discovery, reads and refusals
def served(kube: FakeKube, *objects: dict[str, Any], key: tuple[str, str, str] = NPA) -> None:
    kube.custom_objects[key] = list(objects)


def test_nothing_served_means_the_namespace_tier_alone_and_no_list() -> None:
    kube = FakeKube()
    kube.add_web_deployment(NS, POD)
    tier = cluster_tier.read(kube, kube.pods[(NS, POD)], {"app": "web"})
    assert not tier.reopened and tier.isolated_at() == "namespace tier (NetworkPolicy deny-all)"
    assert "list_objects" not in kube.calls and "get_namespace" not in kube.calls


def test_the_namespace_is_read_only_when_a_policy_selects_namespaces_by_another_label() -> None:
    """kubernetes.io/metadata.name is the namespace's name on every namespace: selecting on it needs no read."""
    kube = FakeKube()
    kube.add_web_deployment(NS, POD)
    kube.namespaces[NS] = NamespaceView(name=NS, labels={"team": "payments"})
    pod = kube.pods[(NS, POD)]
    served(kube, static_deny(1))  # its namespaceSelector: kubernetes.io/metadata.name NotIn [system namespaces]
    assert cluster_tier.read(kube, pod, {"app": "web"}).holding
    assert "get_namespace" not in kube.calls
    by_team = {"namespaces": {"matchLabels": {"team": "payments"}}}
    served(kube, static_deny(1), cnp("team", 0, subject=by_team))
    tier = cluster_tier.read(kube, pod, {"app": "web"})
    assert kube.calls.count("get_namespace") == 1 and [v.name for v in tier.reopening] == ["team"]


@pytest.mark.parametrize(
    ("subject", "needs"),
    [
        ({"namespaces": {}}, False),
        ({"pods": {"podSelector": {}}}, False),
        ({"namespaces": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}}, False),
        ({"namespaces": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}, True),
        ({"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}}}, True),
        ({"namespaces": {"sameLabels": ["team"]}}, True),  # not a label selector: not read, so taken to need them
        ({"namespaces": "odd"}, True),
        ("odd", True),
    ],
)
def test_which_subjects_need_the_namespace_labels(subject: Any, needs: bool) -> None:
    assert needs_namespace_labels("npa", [("ClusterNetworkPolicy", {"spec": {"subject": subject}})]) is needs
    assert needs_namespace_labels("cilium", [("CiliumNetworkPolicy", {"spec": {}})])
    assert not needs_namespace_labels("calico", [])


def test_a_kind_the_identity_may_not_read_is_never_taken_for_nothing_there() -> None:
    kube = FakeKube()
    kube.add_web_deployment(NS, POD)
    served(kube, static_deny(1))
    kube.raise_on["list_objects"] = Forbidden("clusternetworkpolicies is forbidden")
    tier = cluster_tier.read(kube, kube.pods[(NS, POD)], {"app": "web"})
    assert tier.reopened and "could not be read" in tier.why_open()


def test_a_transient_failure_is_raised_so_the_delivery_is_retried() -> None:
    kube = FakeKube()
    kube.add_web_deployment(NS, POD)
    served(kube, static_deny(1))
    kube.raise_on["list_objects"] = TransientError("503")
    with pytest.raises(TransientError):
        cluster_tier.read(kube, kube.pods[(NS, POD)], {"app": "web"})
