"""The GKE cluster lookup over the documented REST endpoint (google-auth's AuthorizedSession + JSON), on the wire:
the real HTTP client against the GKE wire fake. It stands before the first write to a cluster, so it must not load
the container SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from responder.adapters.gke import GkeClusterAPI, _base_url, cluster_info
from responder.adapters.kube_connect import choose_endpoint
from responder.errors import NotFound, TransientError
from responder.intake.identifiers import ClusterRef
from tests.support.google_fakes import GoogleFake

ROOT = Path(__file__).resolve().parents[2]
REF = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")


def test_the_lookup_is_one_get_of_the_documented_path_with_anonymous_credentials(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REF.path, dns_endpoint="gke-0abc.us-east1.gke.goog", network_policy=True)
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    assert (info.name, info.location, info.status) == ("retail-gke", "us-east1", "RUNNING")
    assert info.endpoint == "34.118.10.20" and info.dns_endpoint == "gke-0abc.us-east1.gke.goog"
    assert info.dns_endpoint_external and info.network_policy_enforced
    [request] = google_fake.requests
    assert (request.method, request.path) == ("GET", f"/v1/{REF.path}")
    assert "authorization" not in request.headers


def test_enums_as_numbers_and_unspecified_values_are_read_as_proto3_json_allows() -> None:
    info = cluster_info(
        {"name": "c", "location": "l", "status": 2, "networkConfig": {"datapathProvider": 2}, "endpoint": ""}
    )
    assert (info.status, info.datapath_provider, info.endpoint) == ("RUNNING", "ADVANCED_DATAPATH", None)
    assert info.network_policy_enforced
    unspecified = cluster_info({"status": "STATUS_UNSPECIFIED", "networkConfig": {"datapathProvider": 0}})
    assert (unspecified.status, unspecified.datapath_provider) == (None, None)


def test_a_public_cluster_is_reached_on_its_public_endpoint(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REF.path, endpoint="34.118.10.20", dns_endpoint=None)
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    assert info.public_endpoint == "34.118.10.20"
    assert choose_endpoint(info, "auto") == ("public", "34.118.10.20")


def test_a_private_endpoint_cluster_is_never_dialled_on_its_private_ip_as_if_public(google_fake: GoogleFake) -> None:
    # enablePrivateEndpoint: Cluster.endpoint holds the private IP, and privateClusterConfig still lists an external
    # IP that accepts nothing. Neither is a public endpoint.
    google_fake.add_cluster(REF.path, public_access=False, private_endpoint="10.128.0.2", dns_endpoint=None)
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    assert info.endpoint == "10.128.0.2" and info.public_endpoint is None
    assert info.private_endpoint == "10.128.0.2"
    assert choose_endpoint(info, "public") is None
    assert choose_endpoint(info, "auto") == ("private", "10.128.0.2")  # the last resort, with VPC egress
    google_fake.add_cluster(
        REF.path, public_access=False, private_endpoint="10.128.0.2", dns_endpoint="gke-0abc.us-east1.gke.goog"
    )
    with_dns = GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    assert choose_endpoint(with_dns, "auto") == ("dns", "gke-0abc.us-east1.gke.goog")


def test_a_cluster_with_ip_endpoints_off_is_reached_on_its_dns_endpoint_only(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REF.path, ip_endpoints=False, dns_endpoint="gke-0abc.us-east1.gke.goog")
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    assert (info.endpoint, info.public_endpoint, info.private_endpoint) == (None, None, None)
    assert choose_endpoint(info, "auto") == ("dns", "gke-0abc.us-east1.gke.goog")
    assert choose_endpoint(info, "public") is None and choose_endpoint(info, "private") is None


def test_the_older_private_cluster_config_names_the_public_endpoint_when_the_new_one_is_absent() -> None:
    legacy = {
        "endpoint": "34.1.1.1",
        "privateClusterConfig": {"enablePrivateNodes": True, "publicEndpoint": "34.1.1.1"},
    }
    assert cluster_info(legacy).public_endpoint == "34.1.1.1"
    private = {
        "endpoint": "10.0.0.5",
        "privateClusterConfig": {"enablePrivateEndpoint": True, "publicEndpoint": "34.1.1.1"},
    }
    assert cluster_info(private).public_endpoint is None
    # Cluster.endpoint alone says nothing about reachability: it is never taken for the public endpoint.
    assert cluster_info({"endpoint": "10.0.0.5"}).public_endpoint is None


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        (None, "https://container.googleapis.com"),
        ("container.example.internal", "https://container.example.internal"),  # a bare host: TLS
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123"),  # a wire fake keeps its scheme
    ],
)
def test_the_endpoint_setting_is_honoured(endpoint: str | None, base: str) -> None:
    assert _base_url(endpoint) == base


def test_errors_are_translated_and_transient_ones_retried(google_fake: GoogleFake) -> None:
    with pytest.raises(NotFound, match="clusters/retail-gke"):
        GkeClusterAPI(google_fake.settings()).get_cluster(REF)
    google_fake.add_cluster(REF.path)
    google_fake.fail_next(2, status=503)
    assert GkeClusterAPI(google_fake.settings(), deadline_s=10).get_cluster(REF).name == "retail-gke"
    google_fake.fail_next(1, status=503)
    with pytest.raises(TransientError):
        GkeClusterAPI(google_fake.settings(), deadline_s=0).get_cluster(REF)


def test_the_lookup_loads_no_container_sdk_and_no_kubernetes_client(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REF.path)
    code = (
        "import sys\n"
        "from responder.adapters.gke import GkeClusterAPI\n"
        "from responder.adapters.kube_connect import GkeConnector\n"
        "from responder.config import Settings\n"
        "from responder.intake.identifiers import ClusterRef\n"
        f"s = Settings(anonymous_google=True, container_endpoint={google_fake.url!r})\n"
        f"info = GkeClusterAPI(s).get_cluster(ClusterRef({REF.project!r}, {REF.location!r}, {REF.name!r}))\n"
        "assert info.name == 'retail-gke'\n"
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.container', 'kubernetes'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
