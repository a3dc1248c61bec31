"""Cloud Functions entry point: ``handle_finding`` (signature type ``cloudevent``).

Importing this module costs functions-framework and nothing else: the responder (pydantic models, policy, SDK
adapters) is imported and built on the first event, so an instance starts serving as early as possible, and a broken
configuration is reported per event instead of crashing the instance at start.
"""

from __future__ import annotations

from typing import Any

import functions_framework
from cloudevents.exceptions import DataUnmarshallerError  # already loaded by functions-framework: costs nothing


@functions_framework.cloud_event
def handle_finding(cloud_event: Any) -> None:
    """Handle one SCC notification delivered by Pub/Sub (push subscription or Eventarc).

    Returns normally for everything that must be acknowledged (including invalid input); raises for failures that
    must not be acknowledged (transient errors, a 403, a crash mid-containment), so Pub/Sub redelivers.
    """
    from responder.handler import handle

    handle(cloud_event)


@functions_framework.errorhandler(DataUnmarshallerError)  # type: ignore[untyped-decorator]
def reject_undecodable_event(error: DataUnmarshallerError) -> tuple[str, int]:
    """A binary CloudEvent whose body functions-framework cannot decode (not JSON, or numbers beyond any field)
    never reaches ``handle_finding``: it still gets its one decision record, and is acknowledged (no redelivery can
    make it decodable)."""
    from responder.handler import reject_undecodable

    reject_undecodable(error)
    return "rejected: undecodable CloudEvent data", 200
