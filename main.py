"""Cloud Functions entry point: ``handle_finding`` (signature type ``cloudevent``).

Importing this module costs functions-framework and nothing else: the responder (pydantic models, policy, SDK
adapters) is imported and built on the first event, so an instance starts serving as early as possible, and a broken
configuration is reported per event instead of crashing the instance at start.

Every request gets exactly one decision record: ``handle_finding`` writes it for every event it is given, and the
error handlers below write it for a request functions-framework could not turn into an event at all.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import flask  # already loaded by functions-framework: costs nothing
import functions_framework
from cloudevents.exceptions import DataUnmarshallerError  # likewise
from werkzeug.exceptions import BadRequest  # likewise

_RECORDED = "rsr_recorded"


def _responder() -> ModuleType:
    """``responder.handler``, loaded by the first request that needs it with the garbage collector paused (see
    responder/startup.py: 30 to 50 ms of a cold instance's path to the isolating writes)."""
    from responder.startup import first_load

    with first_load("responder.handler"):
        import responder.handler
    return responder.handler


@functions_framework.cloud_event
def handle_finding(cloud_event: Any) -> None:
    """Handle one SCC notification delivered by Pub/Sub (push subscription or Eventarc).

    Returns normally for everything that must be acknowledged (including invalid input); raises for failures that
    must not be acknowledged (transient errors, a 403, a crash mid-containment), so Pub/Sub redelivers.
    """
    handle = _responder().handle
    if flask.has_app_context():
        setattr(flask.g, _RECORDED, True)  # from here on, handle() writes this request's one record, whatever happens
    handle(cloud_event)


@functions_framework.errorhandler(DataUnmarshallerError)  # type: ignore[untyped-decorator]
def reject_undecodable_event(error: DataUnmarshallerError) -> tuple[str, int]:
    """A binary CloudEvent whose body functions-framework cannot decode (not JSON, or numbers beyond any field)
    never reaches ``handle_finding``: it still gets its one decision record, and is acknowledged (no redelivery can
    make it decodable)."""
    reject_undecodable = _responder().reject_undecodable
    reject_undecodable(error)
    return "rejected: undecodable CloudEvent data", 200


@functions_framework.errorhandler(BadRequest)  # type: ignore[untyped-decorator]
def reject_unconvertible_request(error: BadRequest) -> tuple[str, int]:
    """A body that is neither a CloudEvent nor convertible from a push body or background event (functions-framework
    answers 400). One record, acknowledged. The framework's own description quotes the request's headers and body,
    credentials included, so the record says what the request was not and quotes none of it."""
    reject_undecodable = _responder().reject_undecodable
    reject_undecodable(error, "request is neither a CloudEvent nor a Pub/Sub push body or background event")
    return "rejected: not a CloudEvent", 200


@functions_framework.errorhandler(Exception)  # type: ignore[untyped-decorator]
def reject_unreadable_request(error: Exception) -> tuple[str, int]:
    """An exception before ``handle_finding`` was reached: functions-framework failed on the body itself (a
    structured event that is a JSON string, a number too long to convert). One record, acknowledged.

    An exception from ``handle_finding`` is re-raised untouched: its record is written, and the framework logs it and
    answers 500 so that Pub/Sub redelivers."""
    if flask.has_app_context() and flask.g.get(_RECORDED):
        raise error
    reject_undecodable = _responder().reject_undecodable
    reject_undecodable(error, f"functions-framework could not read the request ({type(error).__name__})")
    return "rejected: unreadable request", 200
