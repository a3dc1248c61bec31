"""Cloud Functions entry point: ``handle_finding`` (signature type ``cloudevent``).

The responder is built on the first event, not at import: a cold start pays only for functions-framework and this
module until there is work to do, and a broken configuration is reported per event instead of crashing the instance.
"""

from __future__ import annotations

import threading
from typing import Any

import functions_framework

from responder.handler import handle

_lock = threading.Lock()


@functions_framework.cloud_event
def handle_finding(cloud_event: Any) -> None:
    """Handle one SCC notification delivered by Pub/Sub through Eventarc.

    Returns normally for everything that must be acknowledged (including invalid input); raises only for transient
    failures, so Pub/Sub redelivers.
    """
    handle(cloud_event, _lock)
