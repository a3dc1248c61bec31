"""Intake and triage: every delivery shape and edge case yields exactly one trustworthy decision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from responder.config import Settings
from responder.errors import ConfigError, InvalidEnvelope
from responder.intake.envelope import Delivery, detect, detect_bytes, from_cloud_event
from responder.policy.rules import Policy, PolicyEngine
from responder.report.outcome import Outcome
from responder.service import Dependencies, Responder
from tests.notifications import (
    PUBSUB_TYPE,
    b64,
    dead_letter_pulled,
    legacy_event,
    message_published,
    notification,
    sample,
    structured_cloudevent,
)


def respond(doc: dict[str, Any] | bytes, settings: Settings | None = None) -> Outcome:
    settings = settings or Settings()
    responder = Responder(Dependencies(settings=settings, policy=PolicyEngine(Policy(), settings)))
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return responder.respond(Delivery(payload=payload, shape="test"))


def _without_pods(doc: dict[str, Any]) -> dict[str, Any]:
    doc["finding"].pop("kubernetes", None)
    doc["finding"].pop("containers", None)
    return doc


def _cloud_run(doc: dict[str, Any]) -> dict[str, Any]:
    name = "//run.googleapis.com/projects/example-retail-prod/locations/us-east1/services/checkout"
    doc["finding"]["resourceName"] = name
    doc["resource"] = {"name": name, "type": "google.cloud.run.Service", "service": "run.googleapis.com"}
    doc["finding"].pop("kubernetes")
    for key in ("Pod_Namespace", "Pod_Name", "Container_Name", "VM_Instance_Name"):
        doc["finding"]["sourceProperties"].pop(key)
    return doc


CASES: list[tuple[str, Any, str, str]] = [
    ("v1 sample", sample("reverse_shell_v1"), "act", "reverse_shell"),
    ("v2 sample", sample("reverse_shell_v2"), "act", "reverse_shell"),
    ("REVERSE_SHELL spelling", notification(category="REVERSE_SHELL"), "act", "reverse_shell"),
    ("no kubernetes block: sourceProperties", _without_pods(notification()), "act", "reverse_shell"),
    (
        "int64 as numbers",
        notification(processes=[{"pid": 4242, "parentPid": 1, "binary": {"size": 10}}]),
        "act",
        "reverse_shell",
    ),
    (
        "int64 garbage is dropped, not fatal",
        notification(processes=[{"pid": "x1", "binary": {"size": "1e9x"}}]),
        "act",
        "reverse_shell",
    ),
    ("10 KB args", notification(processes=[{"args": ["sh", "-c", "A" * 10_240]}]), "act", "reverse_shell"),
    ("inactive", notification(state="INACTIVE"), "ignore", "not_active"),
    ("state omitted (proto3 default)", notification(state=None), "ignore", "not_active"),
    ("muted", notification(mute="MUTED"), "ignore", "muted"),
    ("other category", sample("unexpected_child_shell_v1"), "ignore", "category"),
    ("not a threat", notification(findingClass="MISCONFIGURATION"), "ignore", "not_threat"),
    ("unknown enum tolerated", notification(severity="APOCALYPTIC", findingClass="THREAT"), "act", "reverse_shell"),
    ("cloud run reverse shell", _cloud_run(notification()), "ignore", "not_gke"),
    ("no finding", {"notificationConfigName": "organizations/1/notificationConfigs/x"}, "reject", "bad_finding"),
    ("finding is a list", {"finding": []}, "reject", "bad_finding"),
    ("truncated JSON", json.dumps(notification()).encode()[:-40], "reject", "bad_finding"),
    ("non-UTF-8 bytes", b'\xff\xfe{"finding": 1}', "reject", "bad_finding"),
    ("JSON array", b"[1, 2, 3]", "reject", "bad_finding"),
    ("empty", b"", "reject", "bad_finding"),
]


@pytest.mark.parametrize(("name", "doc", "verdict", "code"), CASES, ids=[c[0] for c in CASES])
def test_edge_cases_get_the_right_verdict(name: str, doc: Any, verdict: str, code: str) -> None:
    record = respond(doc).record
    assert (record.verdict.value, record.code) == (verdict, code), record.reason


def test_pod_named_twice_differently_is_rejected() -> None:
    doc = notification()
    doc["finding"]["sourceProperties"]["Pod_Name"] = "some-other-pod"
    record = respond(doc).record
    assert (record.verdict.value, record.code) == ("reject", "inconsistent")
    assert "kubernetes.pods[] and sourceProperties name different pods" in record.reason


def test_no_pod_anywhere_is_rejected() -> None:
    doc = _without_pods(notification())
    for key in ("Pod_Namespace", "Pod_Name"):
        doc["finding"]["sourceProperties"].pop(key)
    record = respond(doc).record
    assert (record.verdict.value, record.code) == ("reject", "no_pod")
    assert "Pod_Namespace" in record.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pod", "../../etc/passwd"),
        ("pod", 'web" OR resource.type="gce_instance'),
        ("pod", "UPPER-case"),
        ("pod", "a" * 254),
        ("pod", "pod;rm -rf /"),
        ("pod", "pod\nINFO fake log line"),
        ("namespace", "dots.are.not.allowed"),
        ("namespace", "-leading-dash"),
        ("namespace", "n" * 64),
        ("container", "c/../x"),
    ],
)
def test_hostile_identifiers_are_rejected_not_escaped(field: str, value: str) -> None:
    record = respond(notification(**{field: value})).record  # type: ignore[arg-type]
    assert (record.verdict.value, record.code) == ("reject", "bad_identifier")
    assert record.cluster is None or record.pod is None
    assert "\n" not in record.to_json().strip()


@pytest.mark.parametrize(
    ("resource", "verdict", "cluster"),
    [
        (
            "//container.googleapis.com/projects/p-123456/zones/us-central1-a/clusters/c1",
            "act",
            "projects/p-123456/locations/us-central1-a/clusters/c1",
        ),
        (
            "//container.googleapis.com/projects/123456789012/locations/europe-west4/clusters/c-2",
            "act",
            "projects/123456789012/locations/europe-west4/clusters/c-2",
        ),
        ("//container.googleapis.com/projects/P_BAD/locations/us-east1/clusters/c", "reject", None),
        ("//container.googleapis.com/projects/proj-1234/locations/us-east1/clusters/c/../../x", "reject", None),
        ("//container.googleapis.com/projects/proj-1234/locations/us-east1", "reject", None),
    ],
)
def test_cluster_from_resource_name(resource: str, verdict: str, cluster: str | None) -> None:
    record = respond(notification(resource=resource)).record
    assert record.verdict.value == verdict
    assert record.cluster == cluster


def test_ten_kilobyte_args_and_control_characters_stay_bounded_in_the_record() -> None:
    doc = notification(category="Reverse Shell", processes=[{"args": ["\x1b[31m" + "A" * 10_000]}])
    doc["finding"]["name"] += "\x1b]0;pwned\x07"
    line = respond(doc).record.to_json()
    assert "\x1b" not in line and "\x07" not in line
    assert len(line) < 8_000


def test_record_contract_fields_are_always_present() -> None:
    for doc in (sample("reverse_shell_v1"), notification(state="INACTIVE"), b"nope"):
        data = json.loads(respond(doc).record.to_json())
        for key in ("severity", "message", "verdict", "reason", "finding", "cluster", "pod", "actions"):
            assert key in data
    data = json.loads(respond(sample("reverse_shell_v2")).record.to_json())
    assert data["pod"] == {"namespace": "banking", "name": "settlement-0"}
    assert data["cluster"] == "projects/example-bank-prod/locations/asia-northeast1-a/clusters/ledger-gke"


def test_without_cluster_access_it_still_decides_and_plans_dry_run() -> None:
    outcome = respond(sample("reverse_shell_v1"))
    assert outcome.record.verdict.value == "act"
    assert outcome.record.mode == "dry-run"
    assert [a.action for a in outcome.record.actions] == ["isolate", "label", "capture"]
    assert all(a.status.value == "skipped" and "no cluster credentials" in a.reason for a in outcome.record.actions)
    assert outcome.record.enrichment["pod"].startswith("unavailable")


def test_categories_are_configurable() -> None:
    """RESPONDER_CATEGORIES chooses among the category profiles (tests/unit/test_categories.py has the rest)."""
    settings = Settings(categories=["Added Binary Executed"])
    # Handled, and report-only by default: no rule names it (decided without SCC here: a local replay).
    binary = respond(sample("added_binary_executed_v1"), settings).record
    assert (binary.verdict.value, binary.code, binary.outcome) == ("ignore", "report_only", "done")
    assert respond(sample("reverse_shell_v1"), settings).record.code == "category"
    # A category without a profile is not handled, whatever the settings say: the policy refuses it at load.
    assert respond(sample("unexpected_child_shell_v1")).record.code == "category"
    with pytest.raises(ConfigError, match="no category profile"):
        respond(sample("unexpected_child_shell_v1"), Settings(categories=["Unexpected Child Shell"]))


# ----------------------------------------------------------------------------------------------------- envelopes


def test_every_envelope_shape_is_detected() -> None:
    doc = sample("reverse_shell_v1")
    shapes = {
        "cloudevent": structured_cloudevent(doc),
        "push": message_published(doc),
        "legacy": legacy_event(doc),
        "notification": doc,
        "pull": dead_letter_pulled(doc),
        "message": dead_letter_pulled(doc)[0]["message"],
    }
    for shape, envelope in shapes.items():
        delivery = detect(envelope)
        assert delivery.shape == shape
        assert json.loads(delivery.payload)["finding"]["name"] == doc["finding"]["name"]


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (structured_cloudevent(sample(), event_type="google.cloud.storage.object.v1.finalized"), "event type"),
        ({"message": {"data": "%%%not-base64"}}, "base64"),
        ({"message": {"attributes": {}}}, "missing"),
        ({"message": "string"}, "no Pub/Sub message"),
        ({"context": {"eventType": "google.storage.object.finalize"}, "data": {}}, "legacy event type"),
        ({"hello": "world"}, "unrecognised"),
        ("a string", "expected a JSON object"),
        ([1, 2], "list is read only as `gcloud pubsub subscriptions pull --format=json` output"),
        ([], "empty: nothing was pulled"),
        (dead_letter_pulled(sample()) * 2, "holds 2 messages; replay one at a time"),
        ([{"ackId": "x", "message": {"messageId": "1"}}], "missing"),
        ({"data": {"not": "base64"}, "messageId": "1"}, "unrecognised"),
    ],
)
def test_bad_envelopes_are_invalid(envelope: Any, message: str) -> None:
    with pytest.raises(InvalidEnvelope, match=message):
        detect(envelope)


def test_a_dead_letter_is_read_as_gcloud_pulls_it() -> None:
    doc = sample("reverse_shell_v1")
    pulled = dead_letter_pulled(doc, message_id="4242")
    pulled[0]["deliveryAttempt"] = 3
    delivery = detect_bytes(json.dumps(pulled, indent=2).encode())
    assert (delivery.shape, delivery.message_id, delivery.delivery_attempt) == ("pull", "4242", 3)
    assert delivery.publish_time == "2026-03-14T10:01:12.345Z"
    assert delivery.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "10"
    assert json.loads(delivery.payload) == doc
    # One element of the list on its own is the same delivery.
    assert detect(pulled[0]).payload == delivery.payload


def test_detect_bytes_rejects_non_json_and_non_utf8() -> None:
    with pytest.raises(InvalidEnvelope, match="not JSON"):
        detect_bytes(b"{truncated")
    with pytest.raises(InvalidEnvelope, match="not UTF-8"):
        detect_bytes(b"\xff\xff")


def test_cloud_event_without_subscription_or_topic_is_fine() -> None:
    data = {"message": {"data": b64(sample()), "message_id": "77", "publish_time": "2026-01-01T00:00:00Z"}}
    delivery = from_cloud_event(PUBSUB_TYPE, "77", data)
    assert delivery.message_id == "77"
