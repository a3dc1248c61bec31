"""Cloud Functions entry point: ``handle_finding`` (signature type ``cloudevent``).

Importing this module costs functions-framework and nothing else: the responder (pydantic models, policy, SDK
adapters) is imported and built on the first event, so an instance starts serving as early as possible, and a broken
configuration is reported per event instead of crashing the instance at start.
"""

from __future__ import annotations

from typing import Any

import functions_framework


@functions_framework.cloud_event
def handle_finding(cloud_event: Any) -> None:
    """Handle one SCC notification delivered by Pub/Sub through Eventarc.

    Returns normally for everything that must be acknowledged (including invalid input); raises only for transient
    failures, so Pub/Sub redelivers.
    """
    from responder.handler import handle

    handle(cloud_event)
