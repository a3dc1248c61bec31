"""Containment against a real kube-apiserver (+ controller-manager), as the responder's least-privilege identity.

Every assertion is about what exists in the cluster afterwards, read back with the admin client.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from responder.adapters.kube_connect import KubeconfigConnector
from responder.config import Settings
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.intake.envelope import Delivery
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine, parse_policy
from responder.report.outcome import Outcome
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w
from tests.support.common import acts

pytestmark = pytest.mark.integration
# SCC verification has its own tests; here the cluster is the subject. The budget is shared by the whole session's
# cluster, so tests that are not about it get a large one.
NO_SCC = Defaults(verify_finding=False, budget=Budget(max_actions=10_000, window_s=3600))


def responder_for(
    kubeconfig: Path, action: str | None = "isolate", mode: str = "enforce", policy: Policy | None = None
) -> Responder:
    settings = Settings(mode=mode, action=action, kubeconfig=kubeconfig)  # type: ignore[arg-type]
    deps = Dependencies(
        settings=settings,
        policy=PolicyEngine(policy or Policy(defaults=NO_SCC), settings),
        connector=KubeconfigConnector(kubeconfig),
    )
    return Responder(deps)


def replay(responder: Responder, namespace: str, pod: str, suffix: str = "f00d") -> Outcome:
    doc = notification(namespace=namespace, pod=pod, container="api", name_suffix=suffix)
    return responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))


@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> list[Any]:
    """Deployment web x2 + Service + an allow-all and an allow-web policy: the additive trap."""
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    w.create_service(kube_admin, kube_namespace, "web", {"app": "web"})
    w.create_policy(kube_admin, kube_namespace, "allow-all")
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    w.create_policy(kube_admin, kube_namespace, "allow-db", {"app": "db"})
    return w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")


def test_isolate_on_real_apiserver(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, shop: list[Any]
) -> None:
    target, other = shop[0].metadata.name, shop[1].metadata.name
    outcome = replay(responder_for(kube_paths.responder_kubeconfig), kube_namespace, target)
    actions = acts(outcome)
    assert actions["isolate"].status.value == "succeeded", actions["isolate"].reason
    pols = w.policies(kube_admin, kube_namespace)
    deny = pols[DENY_ALL_POLICY].spec
    assert deny.pod_selector.match_labels == {QUARANTINE_LABEL: "true"}
    assert sorted(deny.policy_types) == ["Egress", "Ingress"]
    assert not deny.ingress and not deny.egress
    for name in ("allow-all", "allow-web"):
        exprs = pols[name].spec.pod_selector.match_expressions
        assert [(e.key, e.operator, e.values) for e in exprs] == [(QUARANTINE_LABEL, "NotIn", ["true"])]
    assert pols["allow-web"].spec.pod_selector.match_labels == {"app": "web"}  # the rest of the selector is intact
    assert pols["allow-db"].spec.pod_selector.match_expressions is None
    core = client.CoreV1Api(kube_admin)
    pod = core.read_namespaced_pod(target, kube_namespace)
    assert pod.metadata.labels[QUARANTINE_LABEL] == "true"
    assert pod.metadata.annotations["responder.rsr.dev/finding"].endswith("/f00d")
    assert QUARANTINE_LABEL not in (core.read_namespaced_pod(other, kube_namespace).metadata.labels or {})
    # Evidence: no kubelet here, so logs and ps are recorded as not captured, with the reason.
    assert any("not captured" in n for n in outcome.evidence.notes) if outcome.evidence else False


def test_detach_creates_a_clean_replacement_and_keeps_the_suspect(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    policy = parse_policy(
        "defaults: {verify_finding: false, budget: {max_actions: 10000}}\n"
        "rules: [{name: iso, actions: [{action: isolate, detach: true}]}]"
    )
    outcome = replay(
        responder_for(kube_paths.responder_kubeconfig, action=None, policy=policy), kube_namespace, target.metadata.name
    )
    assert acts(outcome)["isolate"].status.value == "succeeded"
    replacement = w.wait_for_pods(
        kube_admin, kube_namespace, 2, "app=web", exclude_uids={target.metadata.uid}
    )  # the ReplicaSet made a new one
    assert target.metadata.uid not in {p.metadata.uid for p in replacement}
    suspect = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert suspect.metadata.labels == {QUARANTINE_LABEL: "true"}
    assert json.loads(suspect.metadata.annotations["responder.rsr.dev/original-labels"])["app"] == "web"


def test_delete_with_replacement_and_ten_concurrent_deliveries(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    responder = responder_for(kube_paths.responder_kubeconfig, action="delete")
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda _: replay(responder, kube_namespace, target.metadata.name), range(10)))
    assert not any(o.retry for o in outcomes), [o.record.actions for o in outcomes if o.retry]
    deleted = [o for o in outcomes if acts(o).get("delete") and acts(o)["delete"].status.value == "succeeded"]
    assert len(deleted) >= 1
    live = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web", exclude_uids={target.metadata.uid})
    assert target.metadata.uid not in {p.metadata.uid for p in live}  # replaced by the ReplicaSet
    pols = w.policies(kube_admin, kube_namespace)
    assert sum(1 for n in pols if n == DENY_ALL_POLICY) == 1
    assert len(pols["allow-web"].spec.pod_selector.match_expressions) == 1  # excluded once, not ten times
    # Redelivery after the fact touches nothing: the new pods keep no quarantine label.
    replay(responder, kube_namespace, target.metadata.name)
    assert all(QUARANTINE_LABEL not in (p.metadata.labels or {}) for p in w.pods(kube_admin, kube_namespace, "app=web"))


def test_dry_run_writes_nothing(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, shop: list[Any]
) -> None:
    before = {n: p.metadata.resource_version for n, p in w.policies(kube_admin, kube_namespace).items()}
    core = client.CoreV1Api(kube_admin)
    # The pod is judged by what the responder could write (its metadata), not by its resourceVersion: the scheduler
    # may record at any moment that it cannot place the pod, which bumps that version without the responder.
    original = core.read_namespaced_pod(shop[0].metadata.name, kube_namespace).metadata
    outcome = replay(
        responder_for(kube_paths.responder_kubeconfig, action="delete", mode="dry-run"),
        kube_namespace,
        shop[0].metadata.name,
    )
    assert [a.action for a in outcome.record.actions] == ["isolate", "identity", "label", "capture", "delete"]
    assert all(a.dry_run for a in outcome.record.actions)
    after = {n: p.metadata.resource_version for n, p in w.policies(kube_admin, kube_namespace).items()}
    assert after == before
    current = core.read_namespaced_pod(shop[0].metadata.name, kube_namespace).metadata
    assert (current.uid, current.labels, current.annotations, current.owner_references) == (
        original.uid,
        original.labels,
        original.annotations,
        original.owner_references,
    )
    assert current.deletion_timestamp is None


def test_hostnetwork_isolation_is_reported_ineffective(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    w.create_deployment(kube_admin, kube_namespace, "agent", replicas=1, host_network=True)
    [pod] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=agent")
    outcome = replay(responder_for(kube_paths.responder_kubeconfig), kube_namespace, pod.metadata.name)
    isolate = acts(outcome)["isolate"]
    assert isolate.status.value == "failed"
    assert "hostNetwork" in isolate.reason


def test_standalone_pod_is_not_deleted(kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str) -> None:
    w.create_pod(kube_admin, kube_namespace, "lonely")
    outcome = replay(responder_for(kube_paths.responder_kubeconfig, action="delete"), kube_namespace, "lonely")
    assert "standalone" in acts(outcome)["delete"].reason
    assert (
        client.CoreV1Api(kube_admin).read_namespaced_pod("lonely", kube_namespace).metadata.deletion_timestamp is None
    )


def test_budget_lease_is_shared_through_the_cluster(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    w.create_deployment(kube_admin, kube_namespace, "api", replicas=3)
    pods = w.wait_for_pods(kube_admin, kube_namespace, 3, "app=api")
    # A budget of 1 per window, shared by two independent responder instances (separate clients, same cluster).
    policy = Policy(defaults=Defaults(verify_finding=False, budget=Budget(max_actions=1, window_s=3600)))
    client.CoordinationV1Api(kube_admin).delete_collection_namespaced_lease("responder-system")
    first = replay(
        responder_for(kube_paths.responder_kubeconfig, "delete", policy=policy),
        kube_namespace,
        pods[0].metadata.name,
        suffix="aaaa",
    )
    second = replay(
        responder_for(kube_paths.responder_kubeconfig, "delete", policy=policy),
        kube_namespace,
        pods[1].metadata.name,
        suffix="bbbb",
    )
    assert acts(first)["delete"].status.value == "succeeded"
    assert acts(second)["delete"].status.value == "skipped"
    assert "OVER" in acts(second)["delete"].reason
    assert acts(second)["isolate"].status.value == "succeeded"  # reversible containment is not budgeted
    client.CoordinationV1Api(kube_admin).delete_collection_namespaced_lease("responder-system")


def test_exec_and_logs_without_a_kubelet_degrade_to_unavailable(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    """The real exec (websocket) and log paths of the adapter, against a pod no kubelet runs: a clear reason, no crash."""
    from responder.errors import Unavailable

    w.create_pod(kube_admin, kube_namespace, "sleeper")
    kube = KubeconfigConnector(kube_paths.responder_kubeconfig).connect(_ref()).kube
    with pytest.raises(Unavailable):
        kube.exec(kube_namespace, "sleeper", "api", ["ps", "axjf"], 5.0, 64 * 1024)
    assert kube.read_log(kube_namespace, "sleeper", "api", 10, 4096) == ""  # no node runs it: no log to read


def _ref() -> Any:
    from responder.intake.identifiers import ClusterRef

    return ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")
