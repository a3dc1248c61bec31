"""Policy guarantees with real parts: the securitycenter client against the SCC wire fake, the Pub/Sub emulator,
and the real kube-apiserver as the responder's least-privilege identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from responder.adapters.kube_connect import KubeconfigConnector
from responder.adapters.pubsub import PubSubPublisher
from responder.adapters.scc import SccFindings
from responder.config import Settings
from responder.containment.keys import DENY_ALL_POLICY
from responder.policy.rules import PolicyEngine, parse_policy
from responder.report.outcome import Outcome
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w
from tests.support.common import deliver
from tests.support.pubsub_emulator import create_pull_subscription, create_topic, pull

pytestmark = pytest.mark.integration

ENFORCE_DELETE = """
defaults:
  mode: enforce
  budget: {max_actions: 10000}
  protected_namespaces: [kube-system, "locked-*"]
rules:
  - name: delete-everything
    actions: [{action: label}, {action: isolate}, {action: capture}, {action: delete}]
"""


def build(kubeconfig: Path, google: Settings, policy_text: str = ENFORCE_DELETE, **overrides: Any) -> Responder:
    settings = google.model_copy(update={"kubeconfig": kubeconfig, **overrides})
    deps = Dependencies(
        settings=settings,
        policy=PolicyEngine(parse_policy(policy_text), settings),
        connector=KubeconfigConnector(kubeconfig),
        findings_api=SccFindings(settings, deadline_s=2),
    )
    if settings.report_topic:
        deps.publisher = PubSubPublisher(settings)
    return Responder(deps)


def action(outcome: Outcome, name: str) -> Any:
    """A cluster action or a write-back (marks, INACTIVE, the report), by name."""
    return next(a for a in [*outcome.record.actions, *outcome.record.writebacks] if a.action == name)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_forged_finding_gets_no_deletion_and_a_real_one_does(
    version: str, google_fake: Any, kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    pod = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")[0]
    doc = notification(
        version=version,
        namespace=kube_namespace,
        pod=pod.metadata.name,
        container="api",
        name_suffix=f"forged{version}",
    )
    name = doc["finding"]["name"]
    responder = build(kube_paths.responder_kubeconfig, google_fake.settings())

    forged = deliver(responder, doc)  # SCC has never heard of this finding
    assert action(forged, "delete").status.value == "skipped"
    assert "forgery" in action(forged, "delete").reason
    assert (forged.record.verdict.value, forged.record.code) == ("reject", "suspected_forgery")
    assert client.CoreV1Api(kube_admin).read_namespaced_pod(pod.metadata.name, kube_namespace)
    [lookup] = [r for r in google_fake.requests_to("GET", "*") if "findings" in r.path]
    assert lookup.param("filter") == f'name="{name}"'
    assert f"/{version}/" in lookup.path
    assert ("/locations/global/" in lookup.path) == (version == "v2")

    google_fake.vouch_for(doc)
    real = deliver(responder, doc)
    assert action(real, "delete").status.value == "succeeded"
    assert action(real, "mark").status.value == "succeeded"
    marks = google_fake.findings[name]["securityMarks"]["marks"]
    assert marks["rsr_status"] == "deleted"
    assert marks["rsr_event"]  # lets the responder recognise the notification its own write-back triggers
    assert (marks["rsr_outcome"], marks["rsr_pod_uid"]) == ("done", pod.metadata.uid)  # the progress
    patch = google_fake.requests_to("PATCH", "*")[-1]
    assert set(patch.param("updateMask").split(",")) == {
        "marks.rsrStatus",
        "marks.rsrActions",
        "marks.rsrTime",
        "marks.rsrEvent",
        "marks.rsrOutcome",
        "marks.rsrPodUid",
    }


def test_protected_and_exempt_namespaces_survive_enforce_delete_and_page(
    google_fake: Any, kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_admin)
    locked = f"locked-{kube_namespace}"
    core.create_namespace({"metadata": {"name": locked, "labels": {"rsr-test": "true"}}})
    try:
        w.create_deployment(kube_admin, locked, "web", replicas=1)
        [protected_pod] = w.wait_for_pods(kube_admin, locked, 1, "app=web")
        # The exemption is the namespace's: a pod's own label (which its service account may write) counts for nothing.
        core.patch_namespace(kube_namespace, {"metadata": {"labels": {"responder.rsr.dev/exempt": "true"}}})
        w.create_deployment(kube_admin, kube_namespace, "vip", replicas=1, labels={"app": "vip"})
        [exempt_pod] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=vip")
        responder = build(kube_paths.responder_kubeconfig, google_fake.settings())
        for ns, pod in ((locked, protected_pod), (kube_namespace, exempt_pod)):
            doc = notification(namespace=ns, pod=pod.metadata.name, container="api", name_suffix=ns)
            # CTD reports the pod's labels as they were at detection, so the finding shows the exemption too.
            doc["finding"]["kubernetes"]["pods"][0]["labels"] = [
                {"name": k, "value": v} for k, v in pod.metadata.labels.items()
            ]
            google_fake.vouch_for(doc)
            outcome = deliver(responder, doc)
            assert [a.action for a in outcome.record.actions] == []
            assert outcome.record.skipped
            # SCC vouches for the shell the policy leaves alone: an attacker is connected, a person is paged.
            assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
            live = core.read_namespaced_pod(pod.metadata.name, ns)
            assert live.metadata.uid == pod.metadata.uid
            assert live.metadata.deletion_timestamp is None
            assert not any(k.startswith("responder.rsr.dev/quarantine") for k in live.metadata.labels)
        # The exempt namespace's label is read alongside the pod, so the inert deny-all (it selects only quarantined
        # pods, and none is) may go out ahead of it; nothing else is written there. The protected one is untouched.
        assert set(w.policies(kube_admin, kube_namespace)) <= {DENY_ALL_POLICY}
        assert w.policies(kube_admin, locked) == {}
    finally:
        core.delete_namespace(locked)


def test_incident_report_reaches_the_owners_topic(
    pubsub_emulator: str, google_fake: Any, kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str
) -> None:
    client.CoreV1Api(kube_admin).patch_namespace(kube_namespace, {"metadata": {"labels": {"team": "payments"}}})
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=1)
    [pod] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=web")
    topic = create_topic(project="rsr-test")
    subscription = create_pull_subscription(topic)
    doc = notification(namespace=kube_namespace, pod=pod.metadata.name, container="api", name_suffix="notify")
    google_fake.vouch_for(doc)
    responder = build(kube_paths.responder_kubeconfig, google_fake.settings(), report_topic=topic)
    outcome = deliver(responder, doc)
    assert action(outcome, "notify").status.value == "succeeded"
    [message] = pull(subscription)
    assert message.attributes["verdict"] == "act"
    assert message.attributes["status"] == "deleted"
    assert message.attributes["owner"] == "payments"
    assert message.attributes["cluster"] == "projects/example-retail-prod/locations/us-east1/clusters/retail-gke"
    report = json.loads(message.data)
    assert report["finding"]["name"] == doc["finding"]["name"]
