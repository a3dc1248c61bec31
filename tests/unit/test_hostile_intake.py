"""Intake under attack and under the official library's own serialisation: every delivery gets one truthful record.

Payloads here are built the way a user's tooling would build them: the official SCC library's ``to_json`` (enums as
numbers, every default printed), hand-written JSON with lower-case enums, hostile numbers and times, and findings whose
fields contradict each other.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from functions_framework import create_app

from responder import handler
from tests.notifications import PUBSUB_TYPE, notification
from tests.support.common import records
from tests.unit.test_entrypoint import MAIN
from tests.unit.test_intake import respond

CLUSTER = "//container.googleapis.com/projects/example-retail-prod/locations/us-east1/clusters/retail-gke"


def official(version: str, **overrides: Any) -> dict[str, Any]:
    """A notification serialised by google-cloud-securitycenter's default ``to_json`` (enums as integers)."""
    from google.cloud import securitycenter_v1, securitycenter_v2

    sdk = securitycenter_v2 if version == "v2" else securitycenter_v1
    name = (
        "organizations/987654321012/sources/1122/locations/global/findings/abc123"
        if version == "v2"
        else "organizations/987654321012/sources/1122/findings/abc123"
    )
    fields: dict[str, Any] = {
        "name": name,
        "state": sdk.Finding.State.ACTIVE,
        "category": "Reverse Shell",
        "severity": sdk.Finding.Severity.CRITICAL,
        "finding_class": sdk.Finding.FindingClass.THREAT,
        "resource_name": CLUSTER,
        "event_time": {"seconds": 1_780_000_000},
        "kubernetes": sdk.Kubernetes(pods=[sdk.Kubernetes.Pod(ns="storefront", name="cart-api-5c8d7b9f4-q7w2z")]),
        "mitre_attack": sdk.MitreAttack(
            primary_tactic=sdk.MitreAttack.Tactic.EXECUTION,
            primary_techniques=[sdk.MitreAttack.Technique.UNIX_SHELL],
        ),
        "processes": [sdk.Process(pid=4242, args=["/bin/sh", "-i"])],
        "source_properties": {"Pod_Namespace": "storefront", "Pod_Name": "cart-api-5c8d7b9f4-q7w2z"},
    }
    fields.update(overrides)
    message = sdk.NotificationMessage(notification_config_name="x", finding=sdk.Finding(**fields))
    doc: dict[str, Any] = json.loads(sdk.NotificationMessage.to_json(message))
    return doc


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_official_librarys_default_json_is_understood(version: str) -> None:
    doc = official(version)
    assert doc["finding"]["state"] == 1 and doc["finding"]["mitreAttack"]["primaryTactic"] == 3  # numbers, really
    outcome = respond(doc)
    record = outcome.record
    assert (record.verdict.value, record.code) == ("act", "reverse_shell"), record.reason
    assert record.pod is not None and record.pod.name == "cart-api-5c8d7b9f4-q7w2z"
    assert outcome.finding is not None
    assert outcome.finding.mitre.tactics == ("EXECUTION",)
    assert outcome.finding.mitre.techniques == ("UNIX_SHELL",)
    assert outcome.finding.severity == "CRITICAL"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_muted_by_number_is_ignored_like_muted_by_name(version: str) -> None:
    from google.cloud import securitycenter_v1, securitycenter_v2

    sdk = securitycenter_v2 if version == "v2" else securitycenter_v1
    record = respond(official(version, mute=sdk.Finding.Mute.MUTED)).record
    assert (record.verdict.value, record.code) == ("ignore", "muted")
    inactive = respond(official(version, state=sdk.Finding.State.INACTIVE)).record
    assert (inactive.verdict.value, inactive.code) == ("ignore", "not_active")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("mute", "muted", ("ignore", "muted")),
        ("mute", " Muted ", ("ignore", "muted")),
        ("mute", 1, ("ignore", "muted")),
        ("state", "active", ("act", "reverse_shell")),
        ("state", 1, ("act", "reverse_shell")),
        ("state", "2", ("ignore", "not_active")),
        ("state", 7, ("ignore", "not_active")),  # a number no version defines never reads as ACTIVE
        ("findingClass", "threat", ("act", "reverse_shell")),
        ("findingClass", 2, ("ignore", "not_threat")),
        ("state", True, ("reject", "bad_finding")),
        ("state", ["ACTIVE"], ("reject", "bad_finding")),
    ],
)
def test_every_enum_field_is_normalised_the_same_way(field: str, value: Any, expected: tuple[str, str]) -> None:
    record = respond(notification(**{field: value})).record
    assert (record.verdict.value, record.code) == expected, record.reason


@pytest.mark.parametrize(
    "event_time", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]
)
def test_implausible_event_times_are_rejected_with_a_reason(event_time: str) -> None:
    record = respond(notification(eventTime=event_time)).record
    assert (record.verdict.value, record.code) == ("reject", "bad_time")
    assert "outside the plausible window" in record.reason


@pytest.mark.parametrize("number", ["1" * 5000, "-" + "9" * 30, "1e999", "NaN", "Infinity", "1" + "0" * 80 + ".5"])
@pytest.mark.parametrize("where", ["sourceProperties", "pid", "top"])
def test_oversized_numbers_anywhere_are_rejected_at_intake(number: str, where: str) -> None:
    doc = json.dumps(notification())
    if where == "sourceProperties":
        doc = doc.replace('"Pod_Namespace"', f'"Huge": {number}, "Pod_Namespace"', 1)
    elif where == "pid":
        doc = doc.replace('"processes": [{', f'"processes": [{{"pid": {number}, ', 1)
    else:
        doc = doc.replace("{", f'{{"extra": {number}, ', 1)
    record = respond(doc.encode()).record
    assert (record.verdict.value, record.code) == ("reject", "bad_finding"), record.reason


def test_oversized_number_in_a_binary_cloudevent_gets_one_record(capsys: pytest.CaptureFixture[str]) -> None:
    handler.reset()
    app = create_app("handle_finding", MAIN, "cloudevent").test_client()
    data = base64.b64encode(json.dumps(notification()).replace("{", '{"n": ' + "7" * 5000 + ", ", 1).encode())
    body = '{"message": {"data": "' + data.decode() + '", "messageId": "9", "size": ' + "8" * 5000 + "}}"
    headers = {
        "ce-id": "9",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-specversion": "1.0",
        "ce-type": PUBSUB_TYPE,
        "Content-Type": "application/json",
    }
    resp = app.post("/", data=body, headers=headers)
    handler.reset()
    lines = records(capsys)
    assert resp.status_code == 200, resp.data
    assert [(r["verdict"], r["code"]) for r in lines] == [("reject", "bad_envelope")] or [
        (r["verdict"], r["code"]) for r in lines
    ] == [("reject", "bad_finding")]


def test_a_node_in_another_project_is_a_contradiction() -> None:
    doc = notification()
    doc["finding"]["kubernetes"]["nodes"] = [
        {"name": "//compute.googleapis.com/projects/attacker-project/zones/us-east1-b/instances/gke-x"}
    ]
    record = respond(doc).record
    assert (record.verdict.value, record.code) == ("reject", "inconsistent")
    assert "attacker-project" in record.reason


def test_resource_name_and_resource_block_naming_different_clusters_is_a_contradiction() -> None:
    doc = notification()
    doc["resource"]["name"] = (
        "//container.googleapis.com/projects/example-retail-prod/locations/us-east1/clusters/other"
    )
    record = respond(doc).record
    assert (record.verdict.value, record.code) == ("reject", "inconsistent")


def test_several_pods_without_saying_which_ran_the_shell_is_rejected() -> None:
    doc = notification()
    doc["finding"]["sourceProperties"].pop("Pod_Name")
    doc["finding"]["sourceProperties"].pop("Pod_Namespace")
    doc["finding"]["kubernetes"]["pods"].append({"ns": "storefront", "name": "checkout-7f9-abcde"})
    record = respond(doc).record
    assert (record.verdict.value, record.code) == ("reject", "inconsistent")
    assert "2 pods" in record.reason


def test_several_pods_with_the_shell_named_acts_on_that_one_and_says_so() -> None:
    doc = notification()
    doc["finding"]["kubernetes"]["pods"].insert(0, {"ns": "storefront", "name": "checkout-7f9-abcde"})
    record = respond(doc).record
    assert record.verdict.value == "act"
    assert record.pod is not None and record.pod.name == "cart-api-5c8d7b9f4-q7w2z"
    assert any("checkout-7f9-abcde" in w and "not acted on" in w for w in record.warnings)


def test_protected_and_sample_findings_are_ignore_not_act() -> None:
    assert respond(notification(namespace="kube-system")).record.code == "protected"
    assert respond(notification(namespace="kube-system")).record.verdict.value == "ignore"
    doc = notification()
    doc["finding"]["sourceProperties"]["Responder_Sample"] = "true"
    assert (respond(doc).record.verdict.value, respond(doc).record.code) == ("ignore", "sample")
