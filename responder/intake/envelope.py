"""Pub/Sub delivery envelopes → the notification bytes inside.

Eventarc delivers a binary or structured CloudEvent; functions-framework also converts a raw Pub/Sub push body and a
legacy background event into a CloudEvent before our handler sees it. ``replay`` sees the raw JSON and has to detect
the shape itself, including a dead letter as an operator takes it from its subscription: the output of
``gcloud pubsub subscriptions pull --format=json`` (a list of ``{ackId, message}``) or the message object alone. Every
path ends in a :class:`Delivery`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from responder.errors import InvalidEnvelope
from responder.intake import safejson
from responder.intake.sanitize import clean, untrusted_text

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
_LEGACY_TYPES = {"google.pubsub.topic.publish", "providers/cloud.pubsub/eventTypes/topic.publish"}
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # Pub/Sub's own message size limit


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Pub/Sub delivery: the notification bytes plus what identifies the delivery."""

    payload: bytes
    shape: str
    event_id: str | None = None
    message_id: str | None = None
    publish_time: str | None = None
    delivery_attempt: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise InvalidEnvelope("message.data is missing or not a base64 string")
    if len(data) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
        raise InvalidEnvelope("message.data exceeds the Pub/Sub message size limit")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEnvelope(f"message.data is not valid base64: {clean(exc, 80)}") from exc


def _message(message: Any, shape: str, event_id: str | None) -> Delivery:
    if not isinstance(message, Mapping):
        raise InvalidEnvelope("envelope has no Pub/Sub message object")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        attributes = {}
    attempt = message.get("deliveryAttempt")
    return Delivery(
        payload=_b64(message.get("data")),
        shape=shape,
        event_id=event_id,
        message_id=_str(message.get("messageId") or message.get("message_id")),
        publish_time=_str(message.get("publishTime") or message.get("publish_time")),
        delivery_attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        attributes={clean(k, 64): clean(v, 256) for k, v in list(attributes.items())[:32]},
    )


def _str(value: Any) -> str | None:
    return clean(value, 128) if value is not None else None


def from_cloud_event(event_type: str | None, event_id: str | None, data: Any, shape: str = "cloudevent") -> Delivery:
    """Read a CloudEvent as functions-framework hands it over (type and data)."""
    if event_type != PUBSUB_EVENT_TYPE:
        raise InvalidEnvelope(f"event type {clean(event_type, 100)!r} is not {PUBSUB_EVENT_TYPE}")
    if isinstance(data, bytes | bytearray):
        try:
            data = safejson.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidEnvelope(f"CloudEvent data is not JSON we accept: {clean(exc, 120)}") from exc
    if not isinstance(data, Mapping):
        raise InvalidEnvelope("CloudEvent data is not a MessagePublishedData object")
    # functions-framework decoded a structured event's JSON itself, so safejson never saw it: check it here.
    problem = untrusted_text({"id": event_id, "data": data})
    if problem is not None:
        raise InvalidEnvelope(f"CloudEvent {problem}")
    # The subscription and a topic in `source` are optional: push bodies POSTed to `/` lose both.
    return _message(data.get("message"), shape, _str(event_id))


def _pulled(document: list[Any]) -> Delivery:
    """``gcloud pubsub subscriptions pull --format=json``: a list of ReceivedMessage ``{ackId, message, ...}``.

    Exactly one message: a replay is one delivery, and replaying several at once would hide which record is whose.
    """
    if not document or not all(isinstance(item, Mapping) and "message" in item for item in document):
        raise InvalidEnvelope(
            "a JSON list is read only as `gcloud pubsub subscriptions pull --format=json` output, a list of "
            "{ackId, message} objects; this one is not" + ("" if document else " (it is empty: nothing was pulled)")
        )
    if len(document) != 1:
        raise InvalidEnvelope(
            f"the pulled output holds {len(document)} messages; replay one at a time "
            "(pull with --limit=1, or save one element of the list)"
        )
    received = document[0]
    delivery = _message(received["message"], "pull", None)
    attempt = received.get("deliveryAttempt")
    if isinstance(attempt, int) and not isinstance(attempt, bool):
        delivery = replace(delivery, delivery_attempt=attempt)
    return delivery


def _is_bare_message(document: Mapping[str, Any]) -> bool:
    """A PubsubMessage on its own: base64 ``data`` beside at least one of the fields Pub/Sub sets on every message."""
    markers = ("messageId", "message_id", "publishTime", "publish_time")
    return isinstance(document.get("data"), str) and any(key in document for key in markers)


def detect(document: Any) -> Delivery:
    """Auto-detect a replayed file: structured CloudEvent, push body, legacy background event, bare notification, or
    a dead letter as pulled from its subscription (``gcloud ... pull --format=json``, or the message object alone)."""
    if isinstance(document, list):
        return _pulled(document)
    if not isinstance(document, Mapping):
        raise InvalidEnvelope(f"expected a JSON object, got {type(document).__name__}")
    if "specversion" in document:
        return from_cloud_event(_str(document.get("type")), _str(document.get("id")), document.get("data"))
    if "context" in document and "data" in document:
        context = document.get("context")
        event_type = context.get("eventType") if isinstance(context, Mapping) else None
        if event_type not in _LEGACY_TYPES:
            raise InvalidEnvelope(f"legacy event type {clean(event_type, 100)!r} is not a Pub/Sub publish")
        event_id = context.get("eventId") if isinstance(context, Mapping) else None
        return _message(document.get("data"), "legacy", _str(event_id))
    if "message" in document:
        # A push body {message, subscription}, or one element of pulled output {ackId, message}.
        return _pulled([document]) if "ackId" in document else _message(document.get("message"), "push", None)
    if _is_bare_message(document):
        return _message(document, "message", None)
    if "finding" in document or "notificationConfigName" in document:
        return Delivery(payload=json.dumps(document).encode("utf-8"), shape="notification")
    raise InvalidEnvelope(
        "unrecognised envelope: not a CloudEvent, push body, legacy event, pulled Pub/Sub message or SCC notification"
    )


def detect_bytes(raw: bytes) -> Delivery:
    """:func:`detect` for raw file contents."""
    try:
        document = safejson.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEnvelope(f"input is not UTF-8 (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidEnvelope(f"input is not JSON we accept: {clean(exc, 120)}") from exc
    return detect(document)
