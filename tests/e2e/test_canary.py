"""The canary end to end (issue 32): a finding under the deployment's canary source, held by the SCC wire fake, goes
through the real Pub/Sub emulator's push to the live functions-framework server and comes out as one `canary`
record, with nothing but SCC's verification read on the wire.

Needs the Pub/Sub emulator and the SCC wire fake, and no Kubernetes cluster: a canary never reaches one (the function
is given no kubeconfig, and the GKE endpoint points at the wire fake, which would record any lookup).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import pubsub_v1

from tests.support.google_fakes import parse_log_filter, rfc3339
from tests.support.pubsub_emulator import create_push_subscription, create_topic

pytestmark = pytest.mark.e2e

CANARY_SOURCE = "organizations/987654321012/sources/99887766554433221100"
ELSEWHERE = "projects/example-retail-dev/locations/europe-west1/clusters/dev-gke"
# What the absence alert counts: the record's fields as Cloud Logging holds them (severity is the entry's own).
CANARY_FILTER = (
    'jsonPayload.code="canary" AND jsonPayload.verdict="ignore" AND jsonPayload.outcome="done" AND severity="INFO"'
)


def canary_notification(finding: dict[str, Any]) -> dict[str, Any]:
    """The notification SCC sends for the canary job's finding: the finding as SCC holds it, marks left out."""
    sent = {key: value for key, value in finding.items() if key != "securityMarks"}
    return {
        "notificationConfigName": "organizations/987654321012/notificationConfigs/rsr-findings",
        "finding": sent,
        "resource": {"name": finding["resourceName"]},
    }


def log_entry(record: dict[str, Any]) -> dict[str, Any]:
    """The LogEntry Cloud Run writes for the record's line: ``severity`` is the entry's, the rest jsonPayload."""
    payload = dict(record)
    return {"severity": payload.pop("severity"), "jsonPayload": payload}


def test_a_canary_through_the_push_path_is_recorded_and_touches_nothing(
    pubsub_emulator: str, function_server_factory: Any, google_fake: Any
) -> None:
    name = f"{CANARY_SOURCE}/findings/rsrcanary{datetime.now(UTC):%Y%m%d%H%M%S}"
    # What the canary job writes: its category matches SCC's notification filter; no pod, no real cluster.
    finding = google_fake.add_finding(
        name,
        resource_name="//rsr.example/canary",
        sourceProperties={"rsr_canary": "true"},
        eventTime=rfc3339(datetime.now(UTC)),
    )
    server = function_server_factory(
        {
            "RESPONDER_MODE": "enforce",
            "RESPONDER_CANARY_SOURCE": CANARY_SOURCE,
            "RESPONDER_FLEET": ELSEWHERE,  # the canary is the deployment's own, whatever it names
            "RESPONDER_SCC_ENDPOINT": google_fake.url,
            "RESPONDER_LOGGING_ENDPOINT": google_fake.url,
            "RESPONDER_CONTAINER_ENDPOINT": google_fake.url,
            "RESPONDER_ANONYMOUS_GOOGLE": "true",
        }
    )
    topic = create_topic()
    create_push_subscription(topic, server.url + "/", ack_deadline_seconds=10)
    pubsub_v1.PublisherClient().publish(topic, json.dumps(canary_notification(finding)).encode()).result(timeout=30)
    [record] = server.wait_for_records(1)
    assert (record["verdict"], record["code"], record["outcome"], record["severity"]) == (
        "ignore",
        "canary",
        "done",
        "INFO",
    )
    assert record["finding"] == name
    assert record["verification"]["status"] == "verified"
    assert record["actions"] == []
    assert record["writebacks"] == []
    assert parse_log_filter(CANARY_FILTER)(log_entry(record))
    # Only SCC's verification read went out (its retries, if any): no cluster lookup, no marks, no state change.
    sent = [(r.method, r.path) for r in google_fake.requests]
    assert sent
    assert all(method == "GET" and path.endswith("/sources/-/findings") for method, path in sent), sent
