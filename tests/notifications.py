"""Builders for SCC notifications and their delivery envelopes, shared by every test tier.

Each edge case starts from a realistic sample and changes one thing, so a failure names exactly what broke.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def sample(name: str = "reverse_shell_v1") -> dict[str, Any]:
    """A fresh copy of a sample notification."""
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text())
    return data


def notification(
    *,
    version: str = "v1",
    namespace: str = "storefront",
    pod: str = "cart-api-5c8d7b9f4-q7w2z",
    container: str = "api",
    name_suffix: str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    resource: str | None = None,
    kind: str = "reverse_shell",
    **finding_overrides: Any,
) -> dict[str, Any]:
    """A notification naming ``namespace/pod``; keyword overrides replace finding fields. ``kind`` picks the sample
    (a Reverse Shell by default; see :func:`added_binary_notification`)."""
    doc = sample(f"{kind}_{'v1' if version == 'v1' else 'v2'}")
    f = doc["finding"]
    f["name"] = f["name"].rsplit("/", 1)[0] + "/" + name_suffix
    f["canonicalName"] = f["canonicalName"].rsplit("/", 1)[0] + "/" + name_suffix
    f["sourceProperties"].update({"Pod_Namespace": namespace, "Pod_Name": pod, "Container_Name": container})
    if f.get("kubernetes", {}).get("pods"):
        f["kubernetes"]["pods"][0].update({"ns": namespace, "name": pod})
        for c in f["kubernetes"]["pods"][0].get("containers", []):
            c["name"] = container
    if resource is not None:
        f["resourceName"] = resource
        doc["resource"]["name"] = resource
        _move_nodes(f, resource)
    # The event happens now: the pods a test creates before building the finding existed when it happened.
    f["eventTime"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for key, value in finding_overrides.items():
        if value is None:
            f.pop(key, None)
        else:
            f[key] = value
    return doc


def added_binary_notification(
    *, name_suffix: str = "ab1b2c3d4e5f60718293a4b5c6d7e8f9", **kwargs: Any
) -> dict[str, Any]:
    """An Added Binary Executed notification naming ``namespace/pod`` (the same keywords as :func:`notification`).

    What sets it apart from a Reverse Shell: its category, LOW severity, the binary's own process (a file the image
    did not ship), ATT&CK Ingress Tool Transfer and Native API, and no ``Reverse_Shell_Stdin_Redirection_*``: its
    sourceProperties name the pod, container, image and node only (SCC's Added Binary Executed finding page)."""
    return notification(kind="added_binary_executed", name_suffix=name_suffix, **kwargs)


def _move_nodes(finding: dict[str, Any], resource: str) -> None:
    """Keep the finding consistent: its nodes live in the cluster it names (else triage rejects a contradiction)."""
    match = re.match(r"//container\.googleapis\.com/projects/([^/]+)/(?:locations|zones)/([^/]+)/", resource)
    nodes = finding.get("kubernetes", {}).get("nodes") or []
    if match is None:
        return
    project, location = match.groups()
    zone = location if re.fullmatch(r".*[0-9]-[a-z]", location) else f"{location}-b"
    for node in nodes:
        vm = node.get("name", "").rsplit("/", 1)[-1]
        node["name"] = f"//compute.googleapis.com/projects/{project}/zones/{zone}/instances/{vm}"


def b64(doc: dict[str, Any] | bytes) -> str:
    """Base64 of a JSON document (or raw bytes)."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return base64.b64encode(raw).decode()


def message_published(doc: dict[str, Any] | bytes, message_id: str = "1001") -> dict[str, Any]:
    """MessagePublishedData (the CloudEvent data / the push body)."""
    return {
        "message": {"data": b64(doc), "messageId": message_id, "publishTime": "2026-03-14T09:27:00Z", "attributes": {}},
        "subscription": "projects/example-secops/subscriptions/responder",
    }


def dead_letter_pulled(doc: dict[str, Any] | bytes, message_id: str = "1001") -> list[dict[str, Any]]:
    """What ``gcloud pubsub subscriptions pull DEAD_LETTER_SUB --format=json`` prints for one dead letter: a list of
    ReceivedMessage, the message carrying the attributes Pub/Sub adds when it forwards to the dead-letter topic."""
    return [
        {
            "ackId": "RFAGFixdRkhRNxkIaFEOT14jPzUgKEUSAQNPAg9WCmhZGgxvF1BbU1FBVhYrAkcOL5YiT3NS",
            "message": {
                "attributes": {
                    "CloudPubSubDeadLetterSourceDeliveryCount": "10",
                    "CloudPubSubDeadLetterSourceSubscription": "rs-responder-findings-push",
                    "CloudPubSubDeadLetterSourceSubscriptionProject": "example-secops",
                    "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-03-14T09:27:00.100Z",
                },
                "data": b64(doc),
                "messageId": message_id,
                "publishTime": "2026-03-14T10:01:12.345Z",
            },
        }
    ]


def structured_cloudevent(
    doc: dict[str, Any] | bytes, event_type: str = PUBSUB_TYPE, event_id: str = "1001"
) -> dict[str, Any]:
    """A structured-mode CloudEvent (application/cloudevents+json)."""
    return {
        "specversion": "1.0",
        "type": event_type,
        "id": event_id,
        "source": "//pubsub.googleapis.com/projects/example-secops/topics/scc-findings",
        "time": "2026-03-14T09:27:00Z",
        "datacontenttype": "application/json",
        "data": message_published(doc, event_id),
    }


def legacy_event(doc: dict[str, Any] | bytes) -> dict[str, Any]:
    """A legacy background (GCF gen1) Pub/Sub event."""
    return {
        "context": {
            "eventId": "1001",
            "timestamp": "2026-03-14T09:27:00Z",
            "eventType": "google.pubsub.topic.publish",
            "resource": {
                "service": "pubsub.googleapis.com",
                "name": "projects/example-secops/topics/scc",
                "type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            },
        },
        "data": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "attributes": {}, "data": b64(doc)},
    }


def deep(doc: dict[str, Any]) -> dict[str, Any]:
    """Deep copy (tests mutate)."""
    return copy.deepcopy(doc)
