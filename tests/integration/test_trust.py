"""Trust, round 2, on a real kube-apiserver (+ controller-manager) and the SCC wire fake, as a forger would try it.

The responder runs as its least-privilege identity (deploy/kubernetes/rbac.yaml) and talks to the SCC fake through the
real google-cloud-securitycenter client. Every assertion reads the cluster or SCC back, or reads the decision record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client

from responder.adapters.kube_connect import KubeconfigConnector
from responder.adapters.scc import SccFindings
from responder.aftercare.release import Releaser, ReleaseRequest
from responder.aftercare.status import collect_status
from responder.config import Settings
from responder.containment.keys import QUARANTINE_LABEL
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import PolicyEngine, parse_policy
from responder.ports import LabelSelector
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w
from tests.support.common import acts, deliver
from tests.unit.test_selector_properties import label_sets, selector_string, selectors

pytestmark = pytest.mark.integration
REF = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")
DETACH_AND_DELETE = parse_policy(
    "defaults: {mode: enforce, budget: {max_actions: 10000}}\n"
    "rules: [{name: all, actions: [{action: isolate, detach: true}, {action: label}, {action: capture},"
    " {action: delete}]}]"
)
ISOLATE = parse_policy(
    "defaults: {mode: enforce, budget: {max_actions: 10000}}\nrules: [{name: iso, actions: [{action: isolate}]}]"
)


def responder(google_fake: Any, kubeconfig: Path, policy: Any = DETACH_AND_DELETE) -> Responder:
    s = google_fake.settings(mode="enforce", kubeconfig=kubeconfig)
    deps = Dependencies(
        settings=s,
        policy=PolicyEngine(policy, s),
        connector=KubeconfigConnector(kubeconfig),
        findings_api=SccFindings(s, deadline_s=0),
    )
    return Responder(deps)


def state(api: client.ApiClient, namespace: str, name: str) -> tuple[str, dict[str, str], dict[str, str]]:
    pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    return pod.metadata.uid, dict(pod.metadata.labels or {}), dict(pod.metadata.annotations or {})


@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> list[Any]:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    return w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")


def test_a_forged_message_leaves_the_pod_exactly_as_it_was_spec_by_spec(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    client.CoreV1Api(kube_admin).patch_namespaced_pod(
        target.metadata.name, kube_namespace, {"metadata": {"annotations": {"team": "payments"}}}
    )
    before = state(kube_admin, kube_namespace, target.metadata.name)
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="forgedrollback")
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig), doc)  # SCC does not know it
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "suspected_forgery")
    assert state(kube_admin, kube_namespace, target.metadata.name) == before  # uid, labels, annotations
    assert acts(outcome)["detach"].status.value == "skipped" and acts(outcome)["capture"].status.value == "skipped"
    # Never detached, so the ReplicaSet started no replacement: the same two pods, still selected by it.
    assert {p.metadata.uid for p in w.pods(kube_admin, kube_namespace, "app=web")} == {p.metadata.uid for p in shop}


def test_an_scc_403_keeps_the_isolation_holds_everything_else_and_redelivers(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="scc403")
    google_fake.vouch_for(doc)
    google_fake.fail_next(5, status=403, path="*findings*")
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig), doc)
    assert outcome.retry and outcome.record.outcome == "retry", outcome.record.reason
    uid, labels, _ = state(kube_admin, kube_namespace, target.metadata.name)
    assert uid == target.metadata.uid and labels == {**target.metadata.labels, QUARANTINE_LABEL: "true"}
    for held in ("detach", "capture", "delete"):
        assert acts(outcome)[held].status.value == "skipped" and "not verified" in acts(outcome)[held].reason


def test_without_event_time_scc_s_time_keeps_a_later_pod_untouched(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="notime", eventTime=None)
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    google_fake.vouch_for(doc, eventTime=an_hour_ago)  # the shell ran in an earlier pod of that name
    before = state(kube_admin, kube_namespace, target.metadata.name)
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig), doc)
    assert any("replacement" in a.reason for a in outcome.record.actions if a.action == "isolate")
    assert state(kube_admin, kube_namespace, target.metadata.name) == before


@pytest.mark.parametrize(
    "selector",
    [
        {"matchLabels": {QUARANTINE_LABEL: "true"}},
        {"matchExpressions": [{"key": QUARANTINE_LABEL, "operator": "Exists"}]},
        {"matchExpressions": [{"key": QUARANTINE_LABEL, "operator": "In", "values": ["true", "yes"]}]},
    ],
    ids=["matchLabels", "Exists", "In"],
)
def test_a_policy_planted_on_the_quarantine_label_is_neutralised(
    google_fake: Any,
    kube_paths: Any,
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[Any],
    selector: dict[str, Any],
) -> None:
    planted = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "planted"},
        "spec": {"podSelector": selector, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]},
    }
    client.NetworkingV1Api(kube_admin).create_namespaced_network_policy(kube_namespace, planted)
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="plantedpolicy")
    google_fake.vouch_for(doc)
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, ISOLATE), doc)
    assert acts(outcome)["isolate"].status.value == "succeeded"
    stored = w.policies(kube_admin, kube_namespace)["planted"].spec.pod_selector
    assert (QUARANTINE_LABEL, "NotIn") in [(e.key, e.operator) for e in stored.match_expressions or []]
    # The apiserver itself no longer selects the quarantined pod with it.
    as_string = selector_string(
        LabelSelector.model_validate(_snake(client.ApiClient().sanitize_for_serialization(stored)))
    )
    names = {p.metadata.name for p in w.pods(kube_admin, kube_namespace, as_string)}
    assert target.metadata.name not in names
    kube = KubeconfigConnector(kube_paths.kubeconfig).connect(REF).kube
    [status] = [s for s in collect_status(kube, kube_namespace) if s.pod == target.metadata.name]
    assert status.policy_intact, status.policy_problems


def _snake(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "match_labels": selector.get("matchLabels") or {},
        "match_expressions": [
            {"key": e["key"], "operator": e["operator"], "values": tuple(e.get("values") or ())}
            for e in selector.get("matchExpressions") or []
        ],
    }


def test_generated_selectors_select_what_the_apiserver_selects(
    kube_admin: client.ApiClient, kube_namespace: str
) -> None:
    pods: dict[str, dict[str, str]] = {}
    for i, labels in enumerate(
        [
            {},
            {"app": "web"},
            {"app": "db", "tier": "true"},
            {QUARANTINE_LABEL: "true"},
            {"app": "web", QUARANTINE_LABEL: "true"},
        ]
    ):
        created = w.create_pod(kube_admin, kube_namespace, f"sel-{i}", labels or None)
        pods[f"sel-{i}"] = dict(created.metadata.labels or {})  # as stored (create_pod labels a bare pod app=NAME)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(selectors)
    def check(selector: LabelSelector) -> None:
        listed = {p.metadata.name for p in w.pods(kube_admin, kube_namespace, selector_string(selector) or None)}
        assert listed == {name for name, labels in pods.items() if selector.matches(labels)}, selector_string(selector)

    check()
    assert label_sets is not None  # the strategies are shared with the unit property tests


def test_release_marks_only_a_finding_whose_record_names_the_pod(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="genuinerelease")
    google_fake.vouch_for(doc)
    assert acts(deliver(responder(google_fake, kube_paths.responder_kubeconfig, ISOLATE), doc))["isolate"]
    unrelated = notification(namespace="jobs", pod="etl-1", name_suffix="unrelatedrelease")
    google_fake.vouch_for(unrelated)
    client.CoreV1Api(kube_admin).patch_namespaced_pod(  # someone with pods: patch redirects the marks
        target.metadata.name,
        kube_namespace,
        {"metadata": {"annotations": {"responder.rsr.dev/finding": unrelated["finding"]["name"]}}},
    )
    s = google_fake.settings()
    kube = KubeconfigConnector(kube_paths.kubeconfig).connect(REF).kube
    releaser = Releaser(
        kube, protected=PolicyEngine(ISOLATE, Settings()).protected, findings=SccFindings(s, deadline_s=0)
    )
    out = releaser.release(ReleaseRequest(target=f"{kube_namespace}/{target.metadata.name}", apply=True))
    mark = next(a for a in out.record.writebacks if a.action == "mark")
    assert mark.status.value == "skipped" and "does not name pod" in mark.reason
    assert google_fake.findings[unrelated["finding"]["name"]]["securityMarks"]["marks"] == {}


def test_a_redelivery_after_release_leaves_the_pod_released(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="lastingrelease")
    google_fake.vouch_for(doc)
    r = responder(google_fake, kube_paths.responder_kubeconfig, ISOLATE)
    assert acts(deliver(r, doc))["isolate"].status.value == "succeeded"
    kube = KubeconfigConnector(kube_paths.kubeconfig).connect(REF).kube
    # The release lasts through SCC's marks (written here through the real SCC client to the wire fake), never the pod.
    releaser = Releaser(kube, protected=PolicyEngine(ISOLATE, Settings()).protected, findings=r.deps.findings_api)
    released = releaser.release(ReleaseRequest(target=f"{kube_namespace}/{target.metadata.name}", apply=True))
    assert not released.failed, released.record.writebacks
    again = deliver(responder(google_fake, kube_paths.responder_kubeconfig, ISOLATE), doc, attempt=2)  # e.g. a seek
    assert (again.record.verdict.value, again.record.code) == ("ignore", "released")
    _, labels, _ = state(kube_admin, kube_namespace, target.metadata.name)
    assert QUARANTINE_LABEL not in labels
