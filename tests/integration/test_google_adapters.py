"""The Google adapters with the REAL client libraries on the wire: GKE, Logging and SCC against the local wire fake
(``tests/support/google_fakes.py``), Pub/Sub against Google's emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from responder.adapters.gke import GkeClusterAPI
from responder.adapters.logs import CloudLogs
from responder.adapters.pubsub import PubSubPublisher
from responder.adapters.scc import SccFindings
from responder.config import Settings
from responder.containment.enforcement import resolve
from responder.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidFinding,
    InvalidIdentifier,
    NotFound,
    PermanentError,
    TransientError,
    Unavailable,
)
from responder.intake.identifiers import ClusterRef
from tests.support.google_fakes import GoogleFake, parse_log_filter
from tests.support.pubsub_emulator import create_pull_subscription, create_topic, free_port, pull

pytestmark = pytest.mark.integration

PROJECT = "demo-project"
REGIONAL = ClusterRef(PROJECT, "us-central1", "prod")
ZONAL = ClusterRef(PROJECT, "europe-west1-b", "edge")
V1 = "organizations/123456789/sources/987654321/findings/f0a1b2c3d4"
V2 = "organizations/123456789/sources/987654321/locations/global/findings/e5f6a7b8c9"
EVENT = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def window(start: datetime = EVENT - timedelta(minutes=30), end: datetime = EVENT + timedelta(minutes=30)) -> str:
    return f'timestamp>="{start:%Y-%m-%dT%H:%M:%SZ}" AND timestamp<="{end:%Y-%m-%dT%H:%M:%SZ}"'


def pod_filter(pod: str = "web-7d9f-abcde") -> str:
    return (
        f'resource.type="k8s_container" AND resource.labels.project_id="{PROJECT}" AND '
        f'resource.labels.location="us-central1" AND resource.labels.cluster_name="prod" AND '
        f'resource.labels.namespace_name="shop" AND resource.labels.pod_name="{pod}" AND {window()}'
    )


def pod_labels(pod: str = "web-7d9f-abcde", project: str = PROJECT) -> dict[str, str]:
    return {
        "project_id": project,
        "location": "us-central1",
        "cluster_name": "prod",
        "namespace_name": "shop",
        "pod_name": pod,
        "container_name": "web",
    }


# ------------------------------------------------------------------------------------------------------ imports


def test_adapter_modules_import_no_sdk_and_construct_without_io() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import responder.adapters.gke, responder.adapters.logs, responder.adapters.scc, responder.adapters.pubsub\n"
        "from responder.config import Settings\n"
        "s = Settings(anonymous_google=True, scc_endpoint='http://127.0.0.1:9', logging_endpoint='http://127.0.0.1:9',"
        " container_endpoint='http://127.0.0.1:9')\n"
        "responder.adapters.gke.GkeClusterAPI(s); responder.adapters.logs.CloudLogs(s)\n"
        "responder.adapters.scc.SccFindings(s); responder.adapters.pubsub.PubSubPublisher(s)\n"
        # "google.cloud" itself is an empty namespace package a .pth file creates at interpreter start
        "print([m for m in sys.modules if m.startswith(('google.cloud.', 'google.api_core', 'google.auth', 'grpc'))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ---------------------------------------------------------------------------------------------------------- GKE


def test_regional_cluster_maps_every_field(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(
        REGIONAL.path,
        private_endpoint="10.10.0.2",
        legacy_private_endpoint="10.99.0.9",
        dns_endpoint="gke-0123456789abcdef-123.us-central1.gke.goog",
        ca_certificate="TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0",
        labels={"team": "payments", "owner": "alice"},
        version="1.31.5-gke.1023000",
    )
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REGIONAL)

    assert info.name == "prod"
    assert info.location == "us-central1"
    assert info.status == "RUNNING"
    assert info.version == "1.31.5-gke.1023000"
    assert info.endpoint == "34.118.10.20"
    assert info.private_endpoint == "10.10.0.2"  # the current field wins over privateClusterConfig
    assert info.dns_endpoint == "gke-0123456789abcdef-123.us-central1.gke.goog"
    assert info.ca_certificate == "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0"
    assert info.labels == {"team": "payments", "owner": "alice"}
    assert (
        info.self_link == f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/us-central1/clusters/prod"
    )
    (request,) = google_fake.requests
    assert request.method == "GET"
    assert request.path == f"/v1/projects/{PROJECT}/locations/us-central1/clusters/prod"
    assert "authorization" not in request.headers  # anonymous credentials


def test_zonal_cluster_uses_the_locations_path_and_legacy_private_endpoint(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(ZONAL.path, legacy_private_endpoint="172.16.0.2", endpoint=None, autopilot=False)
    info = GkeClusterAPI(google_fake.settings()).get_cluster(ZONAL)

    assert ZONAL.zonal
    assert google_fake.requests[0].path == f"/v1/projects/{PROJECT}/locations/europe-west1-b/clusters/edge"
    assert info.location == "europe-west1-b"
    assert info.endpoint is None
    assert info.private_endpoint == "172.16.0.2"  # deprecated privateClusterConfig as the fallback
    assert info.dns_endpoint is None
    assert info.self_link is not None
    assert "/zones/europe-west1-b/" in info.self_link


@pytest.mark.parametrize(
    ("builder", "enabled", "datapath", "enforced", "mode"),
    [
        pytest.param(
            {"network_policy": True, "datapath_provider": "LEGACY_DATAPATH"},
            True,
            "LEGACY_DATAPATH",
            True,
            "new-only",
            id="calico",
        ),
        pytest.param(
            {"datapath_provider": "ADVANCED_DATAPATH"},
            False,
            "ADVANCED_DATAPATH",
            True,
            "established",
            id="dataplane-v2",
        ),
        pytest.param({"datapath_provider": "LEGACY_DATAPATH"}, False, "LEGACY_DATAPATH", False, "none", id="off"),
        pytest.param({}, False, None, False, "none", id="unspecified"),
        pytest.param(
            {"autopilot": True, "datapath_provider": "ADVANCED_DATAPATH"},
            False,
            "ADVANCED_DATAPATH",
            True,
            "established",
            id="autopilot",
        ),
    ],
)
def test_network_policy_enforcement(
    google_fake: GoogleFake, builder: dict[str, Any], enabled: bool, datapath: str | None, enforced: bool, mode: str
) -> None:
    google_fake.add_cluster(REGIONAL.path, **builder)
    info = GkeClusterAPI(google_fake.settings()).get_cluster(REGIONAL)
    assert info.network_policy_enabled is enabled
    assert info.datapath_provider == datapath
    assert info.network_policy_enforced is enforced
    assert info.autopilot is bool(builder.get("autopilot"))
    # What RESPONDER_NETPOL_ENFORCEMENT=auto makes of it: whether isolation cuts a connected reverse shell.
    assert resolve("auto", info).mode == mode


def test_unknown_cluster_is_not_found(google_fake: GoogleFake) -> None:
    with pytest.raises(NotFound, match="clusters/prod"):
        GkeClusterAPI(google_fake.settings()).get_cluster(REGIONAL)


def test_hand_built_cluster_ref_is_validated_before_any_request(google_fake: GoogleFake) -> None:
    with pytest.raises(InvalidIdentifier):
        GkeClusterAPI(google_fake.settings()).get_cluster(ClusterRef(PROJECT, "us-central1", "x/../../y"))
    assert google_fake.requests == []


# ------------------------------------------------------------------------------------------------------ Logging


def test_logs_search_request_shape_is_exact(google_fake: GoogleFake) -> None:
    flt = pod_filter()
    CloudLogs(google_fake.settings()).search(PROJECT, flt, 25)

    (request,) = google_fake.requests
    assert (request.method, request.path) == ("POST", "/v2/entries:list")
    assert request.body == {
        "resourceNames": [f"projects/{PROJECT}"],
        "filter": flt,  # verbatim: no 24 h default appended by the library
        "orderBy": "timestamp desc",
        "pageSize": 25,
    }


def test_logs_search_returns_matching_entries_newest_first(google_fake: GoogleFake) -> None:
    for minute in (-10, 5, -2, 20):
        google_fake.add_log_entry(
            log_name=f"projects/{PROJECT}/logs/stdout",
            timestamp=EVENT + timedelta(minutes=minute),
            resource_labels=pod_labels(),
            text_payload=f"line at {minute:+d}",
            severity="INFO",
        )
    google_fake.add_log_entry(  # another pod
        log_name=f"projects/{PROJECT}/logs/stdout", timestamp=EVENT, resource_labels=pod_labels("other-pod")
    )
    google_fake.add_log_entry(  # outside the window
        log_name=f"projects/{PROJECT}/logs/stdout",
        timestamp=EVENT - timedelta(hours=2),
        resource_labels=pod_labels(),
        text_payload="too old",
    )
    google_fake.add_log_entry(  # another project
        log_name="projects/other-project/logs/stdout",
        timestamp=EVENT,
        resource_labels=pod_labels(project="other-project"),
        text_payload="elsewhere",
    )
    entries = CloudLogs(google_fake.settings()).search(PROJECT, pod_filter(), 3)

    assert [e.text for e in entries] == ["line at +20", "line at +5", "line at -2"]
    stamps = [e.timestamp for e in entries if e.timestamp is not None]
    assert stamps == sorted(stamps, reverse=True)
    assert len(stamps) == 3
    assert entries[0].severity == "INFO"
    assert entries[0].log_name == f"projects/{PROJECT}/logs/stdout"
    assert entries[0].resource_labels["pod_name"] == "web-7d9f-abcde"


def test_logs_search_pages_and_stops_at_the_limit(google_fake: GoogleFake) -> None:
    for second in range(1100):
        google_fake.add_log_entry(
            log_name=f"projects/{PROJECT}/logs/stdout",
            timestamp=EVENT + timedelta(seconds=second),
            resource_labels=pod_labels(),
            text_payload=str(second),
        )
    entries = CloudLogs(google_fake.settings()).search(PROJECT, pod_filter(), 1050)

    assert len(entries) == 1050
    assert entries[0].text == "1099"
    assert entries[-1].text == "50"
    first, second_page = google_fake.requests
    assert first.body["pageSize"] == 1000  # min(limit, 1000)
    assert "pageToken" not in first.body
    assert second_page.body["pageToken"]


def test_audit_filter_with_log_id_and_method_regex(google_fake: GoogleFake) -> None:
    audit_log = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    cluster_labels = {"project_id": PROJECT, "location": "us-central1", "cluster_name": "prod"}
    for method in ("io.k8s.core.v1.pods.create", "io.k8s.core.v1.pods.get", "io.k8s.core.v1.pods.delete"):
        google_fake.add_log_entry(
            log_name=audit_log,
            timestamp=EVENT,
            resource_type="k8s_cluster",
            resource_labels=cluster_labels,
            proto_payload={
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "methodName": method,
                "resourceName": "core/v1/namespaces/shop/pods/web-7d9f-abcde",
                "authenticationInfo": {"principalEmail": "system:serviceaccount:kube-system:replicaset-controller"},
                "requestMetadata": {"callerIp": "10.0.0.7"},
                "status": {"code": 0},
            },
        )
    flt = (
        'resource.type="k8s_cluster" AND resource.labels.location="us-central1" AND '
        'resource.labels.cluster_name="prod" AND log_id("cloudaudit.googleapis.com/activity") AND '
        'protoPayload.resourceName="core/v1/namespaces/shop/pods/web-7d9f-abcde" AND '
        r'protoPayload.methodName=~"io\.k8s\.core\.v1\.pods\.(create|delete)" AND ' + window()
    )
    entries = CloudLogs(google_fake.settings()).search(PROJECT, flt, 10)

    assert sorted(e.text.split()[0] for e in entries) == ["io.k8s.core.v1.pods.create", "io.k8s.core.v1.pods.delete"]
    assert "principal=system:serviceaccount:kube-system:replicaset-controller" in entries[0].text
    assert "caller=10.0.0.7" in entries[0].text


def test_payloads_are_rendered_bounded_and_printable(google_fake: GoogleFake) -> None:
    google_fake.add_log_entry(
        log_name=f"projects/{PROJECT}/logs/stdout",
        timestamp=EVENT,
        resource_labels=pod_labels(),
        text_payload="\x1b[31mFAKE\u202e" + "A" * 10_000,
    )
    google_fake.add_log_entry(
        log_name=f"projects/{PROJECT}/logs/stderr",
        timestamp=EVENT - timedelta(seconds=1),
        resource_labels=pod_labels(),
        json_payload={"message": "connect to 203.0.113.9:4444", "pid": 4242, "nested": {"blob": "B" * 5000}},
    )
    text_entry, json_entry = CloudLogs(google_fake.settings()).search(PROJECT, pod_filter(), 10)

    assert len(text_entry.text) <= 2048
    assert len(text_entry.text.encode()) <= 2048 + 32  # the replacement characters take 3 bytes each
    assert "\x1b" not in text_entry.text
    assert "\u202e" not in text_entry.text
    assert text_entry.text.endswith("more chars]")
    assert json_entry.text.startswith('{"message":"connect to 203.0.113.9:4444","pid":4242')
    assert len(json_entry.text) <= 2048


def test_malformed_filter_is_rejected_by_the_fake_and_is_permanent(google_fake: GoogleFake) -> None:
    with pytest.raises(PermanentError) as caught:
        CloudLogs(google_fake.settings()).search(PROJECT, f'{window()} AND resource.labels.pod_name="web', 10)
    assert not isinstance(caught.value, TransientError)
    assert google_fake.requests[0].status == 400


def test_filter_without_time_window_is_refused_before_the_wire(google_fake: GoogleFake) -> None:
    logs = CloudLogs(google_fake.settings())
    with pytest.raises(PermanentError, match="time window"):
        logs.search(PROJECT, 'resource.type="k8s_container"', 10)
    assert logs.search(PROJECT, pod_filter(), 0) == []
    with pytest.raises(InvalidIdentifier):
        logs.search("Bad Project!", pod_filter(), 10)
    assert google_fake.requests == []


def test_the_responders_own_filters_parse_and_match(google_fake: GoogleFake) -> None:
    from responder.intake import triage
    from responder.investigation import logfilters

    target = triage.Target(cluster=REGIONAL, namespace="shop", pod="web-7d9f-abcde", container="web", node=None)
    win = logfilters.log_window(EVENT, 30)
    audit_log = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    cluster_labels = {"project_id": PROJECT, "location": "us-central1", "cluster_name": "prod"}
    google_fake.add_log_entry(
        log_name=f"projects/{PROJECT}/logs/stdout", timestamp=EVENT, resource_labels=pod_labels(), text_payload="out"
    )
    google_fake.add_log_entry(  # a pod whose name merely starts with ours: must not match
        log_name=f"projects/{PROJECT}/logs/stdout", timestamp=EVENT, resource_labels=pod_labels("web-7d9f-abcde2")
    )
    for resource in (
        "core/v1/namespaces/shop/pods/web-7d9f-abcde/exec",
        "core/v1/namespaces/shop/pods/web-7d9f-abcde2",
    ):
        google_fake.add_log_entry(
            log_name=audit_log,
            timestamp=EVENT,
            resource_type="k8s_cluster",
            resource_labels=cluster_labels,
            proto_payload={"methodName": "io.k8s.core.v1.pods.exec.create", "resourceName": resource},
        )
    google_fake.add_log_entry(
        log_name=f"projects/{PROJECT}/logs/serialconsole.googleapis.com%2Fserial_port_1_output",
        timestamp=EVENT,
        resource_type="gce_instance",
        resource_labels={"instance_id": "1234567890123", "project_id": PROJECT, "zone": "us-central1-a"},
        text_payload="kernel: hello",
    )
    logs = CloudLogs(google_fake.settings())

    assert [e.text for e in logs.search(PROJECT, logfilters.container_filter(target, win), 10)] == ["out"]
    (audit,) = logs.search(PROJECT, logfilters.audit_filter(target, win), 10)
    assert "pods/web-7d9f-abcde/exec" in audit.text
    serial = logs.search(PROJECT, logfilters.serial_console_filter("1234567890123", win), 10)
    assert [e.text for e in serial] == ["kernel: hello"]
    assert all(r.status == 200 for r in google_fake.requests)


@pytest.mark.parametrize(
    ("flt", "ok"),
    [
        ('resource.type="k8s_container"', True),
        ('resource.type = ("k8s_container" OR "k8s_pod") AND NOT severity>=ERROR', True),
        ('labels."k8s-pod/app"="web" timestamp>="2026-01-01T00:00:00Z"', True),
        ('resource.type="k8s_container', False),  # unterminated string
        ('resource.type="a" AND (severity="ERROR"', False),  # unbalanced parenthesis
        ('unknownField="x"', False),
        ('timestamp>="yesterday"', False),
        ('SEARCH("x")', False),
        ('resource.type="a" AND', False),
        ('protoPayload.methodName=~"("', False),
    ],
)
def test_fake_filter_parser_accepts_and_rejects(flt: str, ok: bool) -> None:
    if ok:
        parse_log_filter(flt)
    else:
        with pytest.raises(ValueError):  # FilterError is a ValueError
            parse_log_filter(flt)


def test_fake_filter_or_binds_tighter_than_and() -> None:
    # LQL: "a AND b OR c" is "a AND (b OR c)".
    predicate = parse_log_filter('severity="ERROR" AND textPayload:"x" OR textPayload:"y"')
    assert predicate({"severity": "ERROR", "textPayload": "y"})
    assert not predicate({"severity": "INFO", "textPayload": "y"})


# ---------------------------------------------------------------------------------------------------------- SCC


def test_get_finding_v1_request_and_mapping(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V1, mute="UNMUTED", marks={"owner": "payments"})
    finding = SccFindings(google_fake.settings()).get_finding(V1)

    assert finding is not None
    assert finding.name == V1
    assert finding.state == "ACTIVE"
    assert finding.mute == "UNMUTED"
    assert finding.category == "Reverse Shell"
    assert (
        finding.resource_name == "//container.googleapis.com/projects/demo-project/locations/us-central1/clusters/prod"
    )
    assert finding.marks == {"owner": "payments"}
    (request,) = google_fake.requests
    assert (request.method, request.path) == ("GET", "/v1/organizations/123456789/sources/-/findings")
    assert request.param("filter") == f'name="{V1}"'


def test_get_finding_v2_request_and_mapping(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V2, state="INACTIVE", mute="MUTED")
    finding = SccFindings(google_fake.settings()).get_finding(V2)

    assert finding is not None
    assert (finding.state, finding.mute) == ("INACTIVE", "MUTED")
    (request,) = google_fake.requests
    assert request.path == "/v2/organizations/123456789/sources/-/locations/global/findings"
    assert request.param("filter") == f'name="{V2}"'


@pytest.mark.parametrize(
    "name",
    [
        "projects/demo-project/sources/42/findings/abc",
        "folders/555/sources/42/findings/abc",
        "projects/demo-project/sources/42/locations/us/findings/abc",
    ],
)
def test_get_finding_other_scopes(google_fake: GoogleFake, name: str) -> None:
    google_fake.add_finding(name)
    finding = SccFindings(google_fake.settings()).get_finding(name)
    assert finding is not None
    assert finding.name == name


def test_unknown_finding_is_none(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V1.replace("123456789", "111111111"))  # same IDs in another organization
    scc = SccFindings(google_fake.settings())
    assert scc.get_finding(V1) is None
    assert scc.get_finding(V2) is None


@pytest.mark.parametrize(
    "name",
    [
        f'{V1}" OR name:"',
        'organizations/1/sources/2/findings/x") OR (state="ACTIVE',
        "organizations/1/sources/2/findings/../../x",
        "organizations/1/sources/2/findings/",
        "organisations/1/sources/2/findings/x",
        f"{V1}/extra",
        f"{V1}\n",
        "organizations/1/sources/2/locations/global/findings/x y",
        "",
    ],
)
def test_forged_finding_name_never_reaches_the_wire(google_fake: GoogleFake, name: str) -> None:
    scc = SccFindings(google_fake.settings())
    with pytest.raises(InvalidFinding):
        scc.get_finding(name)
    with pytest.raises(InvalidFinding):
        scc.update_marks(name, {"a": "b"})
    with pytest.raises(InvalidFinding):
        scc.set_state(name, "INACTIVE", EVENT)
    assert google_fake.requests == []


@pytest.mark.parametrize("name", [V1, V2])
def test_update_marks_masks_exactly_the_given_keys(google_fake: GoogleFake, name: str) -> None:
    google_fake.add_finding(name, marks={"owner": "payments", "rsr_action": "old", "keep-me": "1"})
    SccFindings(google_fake.settings()).update_marks(name, {"rsr_action": "isolated", "rsr-run": "r-123"})

    (request,) = google_fake.requests
    assert request.method == "PATCH"
    assert request.path == f"/{'v2' if '/locations/' in name else 'v1'}/{name}/securityMarks"
    # proto3 JSON camelCases FieldMask paths on the wire; the server maps them back (the fake does, with protobuf).
    assert sorted(request.param("updateMask").split(",")) == ["marks.rsr-run", "marks.rsrAction"]  # type: ignore[union-attr]
    assert request.body["marks"] == {"rsr_action": "isolated", "rsr-run": "r-123"}
    assert google_fake.findings[name]["securityMarks"]["marks"] == {
        "owner": "payments",
        "keep-me": "1",
        "rsr_action": "isolated",
        "rsr-run": "r-123",
    }
    assert "startTime" not in request.query


@pytest.mark.parametrize(
    "marks",
    [{"Upper": "x"}, {"a_1": "x"}, {"trailing_": "x"}, {"": "x"}, {"sp ace": "x"}, {"k": ""}, {"k": "v" * 4097}],
)
def test_invalid_marks_are_refused_before_the_wire(google_fake: GoogleFake, marks: dict[str, str]) -> None:
    google_fake.add_finding(V1)
    with pytest.raises(PermanentError):
        SccFindings(google_fake.settings()).update_marks(V1, marks)
    assert google_fake.requests == []


def test_empty_marks_send_nothing(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V1, marks={"owner": "payments"})
    SccFindings(google_fake.settings()).update_marks(V1, {})
    assert google_fake.requests == []  # an empty update mask would have wiped every mark


def test_set_state_v1_carries_start_time(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V1)
    SccFindings(google_fake.settings()).set_state(V1, "INACTIVE", EVENT)

    (request,) = google_fake.requests
    assert (request.method, request.path) == ("POST", f"/v1/{V1}:setState")
    assert request.body == {"state": 2, "startTime": "2026-11-28T10:00:00Z"}  # INACTIVE, enum-encoding=int
    assert google_fake.findings[V1]["state"] == "INACTIVE"


def test_set_state_v2_sends_no_start_time(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V2, state="INACTIVE")
    SccFindings(google_fake.settings()).set_state(V2, "ACTIVE", EVENT)

    (request,) = google_fake.requests
    assert (request.method, request.path) == ("POST", f"/v2/{V2}:setState")
    assert request.body == {"state": 1}
    assert google_fake.findings[V2]["state"] == "ACTIVE"


def test_naive_start_time_is_taken_as_utc(google_fake: GoogleFake) -> None:
    google_fake.add_finding(V1)
    SccFindings(google_fake.settings()).set_state(V1, "INACTIVE", datetime(2026, 11, 28, 10, 0))
    assert google_fake.requests[0].body["startTime"] == "2026-11-28T10:00:00Z"


def test_writes_to_an_unknown_finding_are_not_found(google_fake: GoogleFake) -> None:
    scc = SccFindings(google_fake.settings())
    with pytest.raises(NotFound):
        scc.update_marks(V1, {"a": "b"})
    with pytest.raises(NotFound):
        scc.set_state(V2, "INACTIVE", EVENT)


# --------------------------------------------------------------------------------------------- error translation


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, NotFound),
        (409, Conflict),
        (412, Conflict),
        (403, Forbidden),
        # google-auth's AuthorizedSession answers a 401 by refreshing the token and retrying; anonymous credentials
        # cannot refresh, which says "no usable credentials here". With real credentials a persistent 401 ends as
        # api_core Unauthorized -> Forbidden (see test_translate_maps_api_core_classes).
        (401, Unavailable),
        (400, PermanentError),
        (429, TransientError),
        (500, TransientError),
        (503, TransientError),
        (504, TransientError),
    ],
)
def test_http_errors_are_translated_for_every_adapter(
    google_fake: GoogleFake, status: int, expected: type[Exception]
) -> None:
    settings = google_fake.settings()
    google_fake.add_cluster(REGIONAL.path)
    google_fake.add_finding(V1)
    calls: list[Callable[[], object]] = [
        lambda: GkeClusterAPI(settings, deadline_s=0).get_cluster(REGIONAL),
        lambda: CloudLogs(settings, deadline_s=0).search(PROJECT, pod_filter(), 5),
        lambda: SccFindings(settings, deadline_s=0).get_finding(V1),
        lambda: SccFindings(settings, deadline_s=0).update_marks(V1, {"a": "b"}),
        lambda: SccFindings(settings, deadline_s=0).set_state(V1, "INACTIVE", EVENT),
    ]
    for call in calls:
        google_fake.fail_next(1, status=status)
        with pytest.raises(expected) as caught:
            call()
        assert isinstance(caught.value.__cause__, Exception)  # raise ... from exc
        if expected is PermanentError:
            assert not isinstance(caught.value, InvalidFinding | TransientError)
    assert google_fake.faults_injected == len(calls)


def test_400_failed_precondition_status_is_a_conflict() -> None:
    # Over REST, api_core picks the class from the HTTP code; the canonical status in the body decides here.
    import requests
    from google.api_core import exceptions as core

    from responder.adapters.google_errors import translate

    response = requests.Response()
    response.status_code = 400
    response._content = json.dumps({"error": {"code": 400, "message": "m", "status": "FAILED_PRECONDITION"}}).encode()
    response.request = requests.Request("GET", "http://x/").prepare()
    from_http_response: Any = core.from_http_response
    assert isinstance(translate(from_http_response(response), "call"), Conflict)


@pytest.mark.parametrize(
    ("exc_name", "expected"),
    [
        ("Unauthorized", Forbidden),
        ("PermissionDenied", Forbidden),
        ("NotFound", NotFound),
        ("AlreadyExists", Conflict),
        ("Aborted", Conflict),
        ("FailedPrecondition", Conflict),
        ("InvalidArgument", PermanentError),
        ("ResourceExhausted", TransientError),
        ("DeadlineExceeded", TransientError),
        ("ServiceUnavailable", TransientError),
        ("InternalServerError", TransientError),
        ("Cancelled", TransientError),
        ("MethodNotImplemented", PermanentError),
    ],
)
def test_translate_maps_api_core_classes(exc_name: str, expected: type[Exception]) -> None:
    from google.api_core import exceptions as core

    from responder.adapters.google_errors import translate

    translated = translate(getattr(core, exc_name)("boom"), "call")
    assert type(translated) is expected


def test_translate_leaves_programming_errors_alone() -> None:
    from responder.adapters.google_errors import google_call

    with pytest.raises(KeyError), google_call("call"):
        raise KeyError("bug")


def test_timeouts_are_transient(google_fake: GoogleFake) -> None:
    google_fake.hang_s = 5.0
    settings = google_fake.settings()
    google_fake.add_finding(V1)
    for call in (
        lambda: GkeClusterAPI(settings, timeout_s=0.3, deadline_s=0).get_cluster(REGIONAL),
        lambda: CloudLogs(settings, timeout_s=0.3, deadline_s=0).search(PROJECT, pod_filter(), 5),
        lambda: SccFindings(settings, timeout_s=0.3, deadline_s=0).get_finding(V1),
    ):
        google_fake.fail_next(1, status="hang")
        started = datetime.now(UTC)
        with pytest.raises(TransientError):
            call()
        assert datetime.now(UTC) - started < timedelta(seconds=3)


def test_connection_refused_is_transient() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(anonymous_google=True, scc_endpoint=dead, logging_endpoint=dead, container_endpoint=dead)
    with pytest.raises(TransientError):
        GkeClusterAPI(settings, deadline_s=0).get_cluster(REGIONAL)
    with pytest.raises(TransientError):
        CloudLogs(settings, deadline_s=0).search(PROJECT, pod_filter(), 5)
    with pytest.raises(TransientError):
        SccFindings(settings, deadline_s=0).get_finding(V1)


def test_transient_failures_are_retried_within_the_deadline(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REGIONAL.path)
    google_fake.add_finding(V1)
    google_fake.fail_next(2, status=503, path="/v1/projects/*")
    google_fake.fail_next(1, status=429, path="/v2/entries:list")
    google_fake.fail_next(1, status=503, path="/v1/organizations/*")
    settings = google_fake.settings()

    assert GkeClusterAPI(settings, deadline_s=10).get_cluster(REGIONAL).name == "prod"
    assert CloudLogs(settings, deadline_s=10).search(PROJECT, pod_filter(), 5) == []
    assert SccFindings(settings, deadline_s=10).get_finding(V1) is not None
    assert [r.status for r in google_fake.requests] == [503, 503, 200, 429, 200, 503, 200]


def test_retry_budget_exhaustion_is_transient(google_fake: GoogleFake) -> None:
    google_fake.fail_next(1000, status=503)
    started = datetime.now(UTC)
    with pytest.raises(TransientError, match="retries exhausted"):
        GkeClusterAPI(google_fake.settings(), deadline_s=1.0).get_cluster(REGIONAL)
    assert datetime.now(UTC) - started < timedelta(seconds=4)
    assert len(google_fake.requests) >= 2


def test_permanent_failures_are_not_retried(google_fake: GoogleFake) -> None:
    google_fake.fail_next(1, status=403)
    with pytest.raises(Forbidden):
        GkeClusterAPI(google_fake.settings(), deadline_s=10).get_cluster(REGIONAL)
    assert len(google_fake.requests) == 1


def test_seeded_fault_ratio_is_reproducible(google_fake: GoogleFake) -> None:
    google_fake.add_cluster(REGIONAL.path)
    google_fake.fail_modes = (503, 429)
    google_fake.fail_ratio = 0.5
    outcomes = []
    for _ in range(2):
        google_fake.reseed(7)
        gke = GkeClusterAPI(google_fake.settings(), deadline_s=0)
        run = []
        for _ in range(20):
            try:
                gke.get_cluster(REGIONAL)
                run.append("ok")
            except TransientError:
                run.append("fail")
        outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert 0 < outcomes[0].count("fail") < 20


# ------------------------------------------------------------------------------------------------------ Pub/Sub


def test_publisher_through_the_real_emulator(pubsub_emulator: str) -> None:
    topic = create_topic()
    subscription = create_pull_subscription(topic)
    publisher = PubSubPublisher(Settings())  # the client finds the emulator through PUBSUB_EMULATOR_HOST
    try:
        payload = json.dumps({"finding": V1, "verdict": "act"}).encode()
        message_id = publisher.publish(topic, payload, {"finding": V1, "cluster": REGIONAL.path, "kind": "report"})
    finally:
        publisher.close()

    (message,) = pull(subscription)
    assert message.message_id == message_id
    assert message.data == payload
    assert dict(message.attributes) == {"finding": V1, "cluster": REGIONAL.path, "kind": "report"}


def test_publisher_errors(pubsub_emulator: str) -> None:
    publisher = PubSubPublisher(Settings(), timeout_s=5)
    try:
        with pytest.raises(NotFound):
            publisher.publish(f"projects/{PROJECT}/topics/no-such-topic", b"x", {})
        with pytest.raises(ConfigError):
            publisher.publish("not-a-topic", b"x", {})
        with pytest.raises(PermanentError, match="reserved"):
            publisher.publish(create_topic(), b"x", {"timeout": "1"})
    finally:
        publisher.close()
