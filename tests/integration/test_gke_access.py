"""GKE cluster access end to end: the real container client reads endpoint + CA from the GKE wire fake, a real
google-auth credential supplies the bearer token, and the real Kubernetes client reaches the real apiserver with it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.oauth2.credentials import Credentials
from kubernetes import client

from responder.adapters.gke import GkeClusterAPI
from responder.adapters.kube_connect import GkeConnector
from responder.containment.keys import QUARANTINE_LABEL
from responder.errors import TransientError
from responder.intake.envelope import Delivery
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w

pytestmark = pytest.mark.integration
REF = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")


def cluster_access(kubeconfig: Path) -> tuple[str, str, str]:
    """(host:port, base64 CA PEM, bearer token) of the test apiserver, as GKE's API would describe it."""
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    ca = Path(cluster["certificate-authority"]).read_bytes()
    return cluster["server"].removeprefix("https://"), base64.b64encode(ca).decode(), doc["users"][0]["user"]["token"]


@pytest.fixture
def gke(google_fake: Any, kube_paths: Any) -> tuple[GkeConnector, Any]:
    endpoint, ca, token = cluster_access(kube_paths.responder_kubeconfig)
    google_fake.add_cluster(
        REF.path, endpoint=endpoint, ca_certificate=ca, network_policy=True, labels={"team": "retail-sre"}
    )
    connector = GkeConnector(GkeClusterAPI(google_fake.settings()), credentials=Credentials(token=token))
    return connector, google_fake


def test_connects_through_the_container_api_and_caches(
    gke: tuple[GkeConnector, Any], kube_admin: client.ApiClient, kube_namespace: str
) -> None:
    connector, fake = gke
    w.create_pod(kube_admin, kube_namespace, "probe")
    connection = connector.connect(REF)
    assert connection.info is not None
    assert connection.info.network_policy_enforced
    assert connection.info.labels == {"team": "retail-sre"}
    assert connection.kube.get_pod(kube_namespace, "probe").name == "probe"
    with pytest.raises(client.ApiException) as denied:  # the token is the responder's: RBAC still applies
        connection.kube.core.list_namespaced_secret(kube_namespace)
    assert denied.value.status == 403
    assert connector.connect(REF) is connection  # cached: one container API call for many events
    assert len([r for r in fake.requests if "/clusters/" in r.path]) == 1
    [request] = [r for r in fake.requests if "/clusters/" in r.path]
    assert request.path == f"/v1/{REF.path}"


def test_expiring_token_is_refreshed_and_a_failed_refresh_is_transient(google_fake: Any, kube_paths: Any) -> None:
    endpoint, ca, token = cluster_access(kube_paths.responder_kubeconfig)
    google_fake.add_cluster(REF.path, endpoint=endpoint, ca_certificate=ca)
    # Expires in a minute, and has no refresh token: google-auth's refresh fails, which must be retried later.
    expiring = Credentials(token=token, expiry=datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1))
    connector = GkeConnector(GkeClusterAPI(google_fake.settings()), credentials=expiring)
    with pytest.raises(TransientError, match="token refresh failed"):
        connector.connect(REF)


def test_responder_contains_a_pod_through_gke_access(
    gke: tuple[GkeConnector, Any], kube_admin: client.ApiClient, kube_namespace: str
) -> None:
    connector, fake = gke
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=1)
    [pod] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=web")
    settings = fake.settings(mode="enforce", action="isolate")
    policy = Policy(defaults=Defaults(verify_finding=False, budget=Budget(max_actions=10_000)))
    responder = Responder(Dependencies(settings=settings, policy=PolicyEngine(policy, settings), connector=connector))
    doc = notification(namespace=kube_namespace, pod=pod.metadata.name, container="api", name_suffix="gke")
    outcome = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    assert outcome.record.enrichment["cluster"] == "ok"
    assert {a.action: a.status.value for a in outcome.record.actions}["isolate"] == "succeeded"
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(pod.metadata.name, kube_namespace)
    assert live.metadata.labels[QUARANTINE_LABEL] == "true"


UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens, a connection is refused at once


@pytest.mark.parametrize(
    ("preference", "where"),
    [
        ("auto", "dns_endpoint"),  # the DNS-based endpoint wins when it accepts external traffic
        ("dns", "dns_endpoint"),
        ("private", "private_endpoint"),  # the operator states that the function has VPC egress
        ("auto", "endpoint"),  # no DNS endpoint: the public one
    ],
)
def test_connector_reaches_the_endpoint_it_chooses(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, preference: str, where: str
) -> None:
    endpoint, ca, token = cluster_access(kube_paths.responder_kubeconfig)
    # Only the endpoint the connector should choose leads to the apiserver; every other one is a dead end.
    fields: dict[str, str | None] = {"endpoint": UNREACHABLE, "private_endpoint": UNREACHABLE}
    fields["dns_endpoint"] = None if (preference, where) == ("auto", "endpoint") else UNREACHABLE
    fields[where] = endpoint
    google_fake.add_cluster(REF.path, ca_certificate=ca, **fields)
    connector = GkeConnector(
        GkeClusterAPI(google_fake.settings()),
        credentials=Credentials(token=token),
        endpoint=preference,  # type: ignore[arg-type]
    )
    w.create_pod(kube_admin, kube_namespace, "probe")
    assert connector.connect(REF).kube.get_pod(kube_namespace, "probe").name == "probe"


def test_dns_endpoint_closed_to_external_traffic_is_not_chosen_by_auto(google_fake: Any, kube_paths: Any) -> None:
    endpoint, ca, token = cluster_access(kube_paths.responder_kubeconfig)
    google_fake.add_cluster(
        REF.path, ca_certificate=ca, endpoint=endpoint, dns_endpoint=UNREACHABLE, dns_external=False
    )
    connector = GkeConnector(GkeClusterAPI(google_fake.settings()), credentials=Credentials(token=token))
    connection = connector.connect(REF)
    assert connection.kube.get_namespace("default").name == "default"  # went to the public endpoint
