"""status and release against a real kube-apiserver (+ controller-manager).

Pods are quarantined by the real responder as its least-privilege identity; status and release run with the
operator's rights (the admin kubeconfig). Every assertion reads the cluster back with the admin client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from responder.adapters.kube_connect import KubeconfigConnector
from responder.aftercare.release import Releaser, ReleaseRequest
from responder.aftercare.status import collect_status
from responder.config import Settings
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.intake.envelope import Delivery
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine, parse_policy
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w
from tests.support.common import acts, environ_without_settings, responder_cli

pytestmark = pytest.mark.integration
REF = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")
ISOLATE = Policy(defaults=Defaults(verify_finding=False, budget=Budget(max_actions=10_000, window_s=3600)))
DETACH = parse_policy(
    "defaults: {verify_finding: false, budget: {max_actions: 10000}}\n"
    "rules: [{name: iso, actions: [{action: isolate, detach: true}]}]"
)


def quarantine(kubeconfig: Path, namespace: str, pod: str, suffix: str, policy: Policy = ISOLATE) -> None:
    """The real responder, enforce mode, as its own least-privilege identity."""
    settings = Settings(mode="enforce", action=None if policy is DETACH else "isolate", kubeconfig=kubeconfig)
    deps = Dependencies(
        settings=settings, policy=PolicyEngine(policy, settings), connector=KubeconfigConnector(kubeconfig)
    )
    doc = notification(namespace=namespace, pod=pod, container="api", name_suffix=suffix)
    outcome = Responder(deps).respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    statuses = {a.action: a.status.value for a in outcome.record.actions}
    assert statuses["isolate"] == "succeeded", outcome.record.actions


def policy_specs(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Every NetworkPolicy's spec as API JSON, by name: what "the same state" is compared on."""
    return {n: api.sanitize_for_serialization(p.spec) for n, p in w.policies(api, namespace).items()}


def operator_releaser(kube_env: Any) -> Releaser:
    settings = Settings()
    kube = KubeconfigConnector(kube_env.kubeconfig).connect(REF).kube
    return Releaser(kube, protected=PolicyEngine(Policy(), settings).protected)


def release(r: Releaser, namespace: str, pod: str, apply: bool = True) -> Any:
    # No SCC here (the operator's releaser has no Google APIs): the release says so, as an operator would.
    request = ReleaseRequest(target=f"{namespace}/{pod}", apply=apply, reason="test", by="operator", without_marks=True)
    return r.release(request)


@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> dict[str, Any]:
    """web x3 (Deployment) + Service + allowing policies, one with match expressions of its own."""
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=3)
    w.create_service(kube_admin, kube_namespace, "web", {"app": "web"})
    w.create_policy(kube_admin, kube_namespace, "allow-all")
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    w.create_policy(kube_admin, kube_namespace, "allow-db", {"app": "db"})
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web-expr"},
        "spec": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "lb"}}}]}],
        },
    }
    client.NetworkingV1Api(kube_admin).create_namespaced_network_policy(kube_namespace, body)
    pods = w.wait_for_pods(kube_admin, kube_namespace, 3, "app=web")
    return {"pods": [p.metadata.name for p in pods], "before": policy_specs(kube_admin, kube_namespace)}


def test_quarantine_two_then_release_both(
    kube_env: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: dict[str, Any]
) -> None:
    ns, (kept, detached, _) = kube_namespace, shop["pods"]
    quarantine(kube_env.responder_kubeconfig, ns, kept, "aaaa")
    quarantine(kube_env.responder_kubeconfig, ns, detached, "bbbb", DETACH)
    assert policy_specs(kube_admin, ns) != shop["before"]
    r = operator_releaser(kube_env)
    kube = r.kube

    status = {e.pod: e for e in collect_status(kube, ns)}
    assert set(status) == {kept, detached}
    assert status[detached].detached and not status[kept].detached
    assert all(e.policy_intact for e in status.values()), [e.policy_problems for e in status.values()]
    assert status[kept].finding and status[kept].finding.endswith("/aaaa")

    # Dry run: the plan, and not one write. (First the detached pod's replacement must exist: its ReplicaSet's
    # write is not the release's.)
    w.wait_for_pods(kube_admin, ns, 3, "app=web")
    before_dry = w.written_state(kube_admin, ns)
    plan = release(r, ns, detached, apply=False)
    assert plan.record.mode == "dry-run" and all(a.dry_run for a in plan.record.actions)
    assert w.written_state(kube_admin, ns) == before_dry

    # Release the detached pod: the other one is still quarantined, so the namespace's isolation stays whole.
    first = release(r, ns, detached)
    assert not first.failed and acts(first)["release"].status.value == "succeeded", first.record.actions
    suspect = client.CoreV1Api(kube_admin).read_namespaced_pod(detached, ns)
    assert QUARANTINE_LABEL not in (suspect.metadata.labels or {})
    assert "app" not in (suspect.metadata.labels or {})  # detached and replaced: not re-adopted
    pols = w.policies(kube_admin, ns)
    assert DENY_ALL_POLICY in pols
    [left] = collect_status(kube, ns)
    assert left.pod == kept and left.policy_intact, left.policy_problems

    # Release the last one: the namespace returns exactly to its policies before the incident.
    second = release(r, ns, kept)
    assert acts(second)["policies"].status.value == "succeeded", second.record.actions
    assert policy_specs(kube_admin, ns) == shop["before"]
    assert DENY_ALL_POLICY not in w.policies(kube_admin, ns)
    assert collect_status(kube, ns) == []
    released = client.CoreV1Api(kube_admin).read_namespaced_pod(kept, ns)
    assert released.metadata.labels.get("app") == "web"  # never detached: still its ReplicaSet's

    # Twice: no write at all, and the record says so.
    settled = w.written_state(kube_admin, ns)
    again = release(r, ns, kept)
    assert not again.refused and "no change" in again.record.reason
    assert w.written_state(kube_admin, ns) == settled


def test_a_same_named_replacement_is_refused(kube_env: Any, kube_admin: client.ApiClient, kube_namespace: str) -> None:
    ns = kube_namespace
    w.create_policy(kube_admin, ns, "allow-all")
    w.create_pod(kube_admin, ns, "lonely")
    quarantine(kube_env.responder_kubeconfig, ns, "lonely", "cccc")
    core = client.CoreV1Api(kube_admin)
    core.delete_namespaced_pod("lonely", ns, grace_period_seconds=0)
    w.wait_for_pods(kube_admin, ns, 0)
    for _ in range(100):
        try:
            w.create_pod(kube_admin, ns, "lonely")  # same name, new UID, never quarantined
            break
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    before = w.written_state(kube_admin, ns)
    outcome = release(operator_releaser(kube_env), ns, "lonely")
    assert outcome.refused and "not quarantined" in outcome.record.reason
    assert w.written_state(kube_admin, ns) == before


def _cli(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = environ_without_settings()
    env |= {"RESPONDER_KUBECONFIG": str(kubeconfig), "RESPONDER_GOOGLE_APIS": "off"}
    return responder_cli(*args, env=env)


def test_cli_status_and_release_with_the_operators_rights(
    kube_env: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: dict[str, Any]
) -> None:
    ns, pod = kube_namespace, shop["pods"][0]
    quarantine(kube_env.responder_kubeconfig, ns, pod, "dddd")

    status = _cli("status", "--namespace", ns, "--json", kubeconfig=kube_env.kubeconfig)
    assert status.returncode == 0, status.stderr
    [entry] = json.loads(status.stdout)
    assert (entry["namespace"], entry["pod"], entry["policy_intact"], entry["detached"]) == (ns, pod, True, False)
    assert entry["finding"].endswith("/dddd") and entry["quarantined_at"]

    # No SCC on the local cluster: the operator says so (without it, an unrecorded release is a failure).
    done = _cli("release", f"{ns}/{pod}", "--yes", "--json", "--without-marks", kubeconfig=kube_env.kubeconfig)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()  # exactly one decision record
    record = json.loads(line)
    assert (record["verdict"], record["code"], record["mode"]) == ("act", "release", "enforce")
    assert {a["action"]: a["status"] for a in record["actions"] + record["writebacks"]} == {
        "release": "succeeded",
        "identity": "succeeded",  # its token may write again
        "policies": "succeeded",
        "mark": "skipped",
    }
    assert [a["action"] for a in record["writebacks"]] == ["mark"]  # told SCC, apart from the cluster steps
    assert policy_specs(kube_admin, ns) == shop["before"]

    refused = _cli("release", f"kube-system/{pod}", "--yes", "--json", kubeconfig=kube_env.kubeconfig)
    assert refused.returncode == 2 and json.loads(refused.stdout)["code"] == "release_refused"
