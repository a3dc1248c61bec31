"""The function's body, independent of functions-framework so that tests can call it (the CLI's replay uses the same
Responder, with its own exit codes).

One :class:`Responder` per process, built on first use. A configuration error is recorded for every event and then
raised: the responder refuses to act on half a configuration, and Pub/Sub redelivers (finally dead-letters) the
message so nothing is lost while an operator fixes the settings.
"""

from __future__ import annotations

import threading
from typing import Any

from responder.errors import ConfigError, InvalidEnvelope, TransientError
from responder.intake.envelope import Delivery, from_cloud_event
from responder.intake.sanitize import clean
from responder.intake.triage import Verdict
from responder.report.outcome import Outcome, rejected
from responder.report.record import DecisionRecord, DeliveryInfo, emit, make_record
from responder.service import Responder

_responder: Responder | None = None
_lock = threading.Lock()


def get_responder() -> Responder:
    """Build the process-wide responder once (thread-safe)."""
    global _responder  # noqa: PLW0603 - one composition per process, built lazily for cold start
    if _responder is None:
        with _lock:
            if _responder is None:
                from responder.startup import first_load

                with first_load("responder"):  # the adapters, settings and policy: see responder/startup.py
                    from responder.bootstrap import build_responder

                    _responder = build_responder()
    return _responder


def reset() -> None:
    """Forget the process-wide responder (tests change settings between cases)."""
    global _responder  # noqa: PLW0603
    _responder = None


def handle(cloud_event: Any) -> Outcome:
    """Decode, respond, emit exactly one record; raise TransientError when Pub/Sub must redeliver.

    The record is written inside the error handling, and :func:`emit` never raises for what a record holds, so
    whatever goes wrong (a bug in a stage, a record that cannot be serialised) the event still gets its one line.
    """
    emitted = False

    def emit_once(record: DecisionRecord) -> None:
        nonlocal emitted
        if not emitted:
            emitted = True
            emit(record)

    try:
        try:
            delivery: Delivery = from_cloud_event(
                _attr(cloud_event, "type"), _attr(cloud_event, "id"), getattr(cloud_event, "data", None)
            )
        except InvalidEnvelope as exc:
            outcome = rejected(exc, DeliveryInfo(shape="cloudevent"))
            emit_once(outcome.record)
            return outcome
        outcome = get_responder().respond(delivery)
        emit_once(outcome.record)
    except ConfigError as exc:
        # Refuse to act on half a configuration, but keep the finding: raising makes Pub/Sub redeliver it (and
        # finally dead-letter it), so nothing is lost while an operator fixes the settings.
        emit_once(make_record(Verdict.REJECT, "config_error", f"refusing to act: {clean(exc, 400)}", outcome="retry"))
        raise
    except Exception as exc:
        # A bug must not lose the finding either: record it, then let Pub/Sub redeliver / dead-letter it.
        emit_once(
            make_record(Verdict.REJECT, "internal_error", f"{type(exc).__name__}: {clean(exc, 300)}", outcome="retry")
        )
        raise
    if outcome.retry:
        raise TransientError(f"transient failure handling {clean(outcome.record.finding, 300)}; redelivery requested")
    return outcome


def reject_undecodable(error: BaseException, reason: str | None = None) -> Outcome:
    """The record for a delivery functions-framework could not decode into a CloudEvent at all (``reason`` replaces
    the error's own text when that text quotes the request)."""
    text = reason or f"CloudEvent data is not JSON we accept: {clean(error, 200)}"
    outcome = rejected(InvalidEnvelope(text), DeliveryInfo(shape="cloudevent"))
    emit(outcome.record)
    return outcome


def _attr(event: Any, key: str) -> str | None:
    try:
        value = event[key]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None
