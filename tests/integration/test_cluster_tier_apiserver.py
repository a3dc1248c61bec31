"""The tier above the namespace on a real kube-apiserver (issue 30), as the responder's least-privilege identity:
API discovery finds ClusterNetworkPolicy (the CRD `make kube-up` installs from the pinned network-policy-api module),
the responder may list it and may write none of it, and isolation judges what is there: the static Admin-tier deny
holds the pod; an Admin `Accept` ahead of it sends the pod to the live-session rule.

What the node's dataplane does with the same objects, at the attacker's socket: tests/node/test_cluster_tier_live.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from responder.adapters.kube_connect import KubeconfigConnector
from responder.containment.cluster_tier import KINDS
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import parse_policy
from tests.integration.test_containment_apiserver import replay, responder_for
from tests.support import workloads as w
from tests.support.common import acts
from tests.support.kube import KubeEnv, status_of

pytestmark = pytest.mark.integration
GROUP, VERSION, PLURAL = "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies"
STATIC = "rsr-quarantine-deny-all"
ESCALATE = parse_policy(
    "defaults: {verify_finding: false, budget: {max_actions: 10000}}\n"
    "rules: [{name: iso, actions: [{action: isolate, live_session: escalate}]}]"
)


@pytest.fixture(autouse=True)
def _served_here(kube_env: KubeEnv) -> None:
    if kube_env.version.startswith("1.20."):
        pytest.skip("RSR_KUBE=1.20: the ClusterNetworkPolicy CRD is installed on the 1.35 cluster only")


def admin_accept(namespace: str, name: str, priority: int) -> dict[str, Any]:
    """An Admin-tier Accept of egress to anywhere for app=web pods of ``namespace`` (a platform guardrail that forgot
    the NotIn quarantine term)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": "Admin",
            "priority": priority,
            "subject": {
                "pods": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "podSelector": {"matchLabels": {"app": "web"}},
                }
            },
            "egress": [{"name": "anywhere", "action": "Accept", "to": [{"networks": ["0.0.0.0/0"]}]}],
        },
    }


@pytest.fixture
def accept(kube_admin: client.ApiClient, kube_namespace: str) -> Iterator[str]:
    name = f"accept-{kube_namespace}"[:63]
    api = client.CustomObjectsApi(kube_admin)
    api.create_cluster_custom_object(GROUP, VERSION, PLURAL, admin_accept(kube_namespace, name, 0))
    try:
        yield name
    finally:
        api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


@pytest.fixture
def web(kube_admin: client.ApiClient, kube_namespace: str) -> Any:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=1)
    (pod,) = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=web")
    return pod


def test_the_responder_reads_the_cluster_tier_and_may_write_none_of_it(kube_paths: Any, kube_namespace: str) -> None:
    ref = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")
    kube = KubeconfigConnector(kube_paths.responder_kubeconfig).connect(ref).kube
    served = kube.served_group_versions()
    assert f"{GROUP}/{VERSION}" in served
    assert [k.kind for k in KINDS if k.group_version in served] == ["ClusterNetworkPolicy"]
    (static,) = [o for o in kube.list_objects(GROUP, VERSION, PLURAL) if o["metadata"]["name"] == STATIC]
    assert (static["spec"]["tier"], static["spec"]["priority"]) == ("Admin", 1)
    responder = client.CustomObjectsApi(_client(kube_paths.responder_kubeconfig))
    body = admin_accept(kube_namespace, "responder-may-not", 0)
    refused = status_of(lambda: responder.create_cluster_custom_object(GROUP, VERSION, PLURAL, body))
    assert refused == 403  # the authorizer refuses: list only


def test_with_the_static_deny_isolation_is_held_at_the_cluster_tier(
    kube_paths: Any, kube_namespace: str, web: Any
) -> None:
    outcome = replay(responder_for(kube_paths.responder_kubeconfig), kube_namespace, web.metadata.name)
    isolate = acts(outcome)["isolate"]
    assert isolate.status.value == "succeeded", isolate.reason
    assert isolate.details["isolated_at"].startswith(f"cluster tier (ClusterNetworkPolicy {STATIC})")
    assert "reopened" not in isolate.details


def test_an_admin_accept_ahead_of_the_static_deny_escalates_and_is_named(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, web: Any, accept: str
) -> None:
    responder = responder_for(kube_paths.responder_kubeconfig, action=None, policy=ESCALATE)
    outcome = replay(responder, kube_namespace, web.metadata.name)
    isolate = acts(outcome)["isolate"]
    assert isolate.details["reopened"] and f"ClusterNetworkPolicy {accept}: reopens" in isolate.reason
    assert acts(outcome)["delete"].status.value == "succeeded"
    remaining = {p.metadata.uid for p in w.pods(kube_admin, kube_namespace, "app=web")}
    assert web.metadata.uid not in remaining
    assert outcome.record.outcome == "done"


def _client(kubeconfig: Any) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))
