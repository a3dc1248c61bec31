"""``LogsAPI`` over Cloud Logging ``entries.list`` with google-cloud-logging's JSON/HTTP client.

The gapic ``LoggingServiceV2Client`` of google-cloud-logging 3.x ships gRPC transports only, so the library's own
HTTP client (``google.cloud.logging_v2.Client(_use_grpc=False)``) is the REST client here. Its ``logging_api``
layer is called directly: ``Client.list_entries`` would append ``timestamp>="<now-24h>"`` to any filter that does not
mention "timestamp", so the filter the caller built is sent verbatim instead, and must carry its own time window.

Needs ``logging.logEntries.list`` (``roles/logging.viewer``; ``roles/logging.privateLogViewer`` for data-access logs).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from responder.adapters.google_clients import LazyClient, client_kwargs, retry_policy, sdk
from responder.adapters.google_errors import google_call
from responder.config import Settings
from responder.errors import PermanentError
from responder.intake import identifiers
from responder.intake.sanitize import clean
from responder.ports import LogEntry
from responder.startup import ImportGate

MAX_FILTER_CHARS = 20_000  # the API's limit
MAX_PAGE_SIZE = 1_000  # the API's limit
ENTRY_CHARS = 2_000  # plus clean()'s "…[N more chars]" marker, an entry's text stays under 2 KiB
_WINDOW = re.compile(r"\btimestamp\s*>=?\s*\"", re.IGNORECASE)


class CloudLogs:
    """Searches one project's logs, newest first, with the caller's filter."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout_s: float = 10.0,
        deadline_s: float = 20.0,
        gate: ImportGate | None = None,
    ) -> None:
        """``timeout_s`` bounds one HTTP request; ``deadline_s`` bounds retries of a whole search (0: none)."""
        self._settings = settings
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        self._project: str | None = None
        self._client: LazyClient[Any] = LazyClient(self._build, "Cloud Logging", gate)

    def _build(self) -> Any:
        # The client wants a project (else it asks ADC for one); resource names are always explicit, so the first
        # searched project serves.
        client = sdk("google.cloud.logging_v2.client").Client(
            project=self._project,
            _use_grpc=False,
            **client_kwargs(self._settings, self._settings.logging_endpoint),
        )
        # The HTTP layer waits 60 s per request by default and its pager has no timeout knob: bind ours.
        connection = client._connection
        connection.api_request = functools.partial(connection.api_request, timeout=self._timeout_s)
        return client

    def search(self, project: str, filter_: str, limit: int) -> list[LogEntry]:
        """``entries.list`` on ``projects/<project>``, ``timestamp desc``, at most ``limit`` entries.

        The filter must bound time itself (``timestamp>="..."``): an unbounded search scans the whole retention.
        """
        identifiers.project(project)
        if limit <= 0:
            return []
        if len(filter_) > MAX_FILTER_CHARS:
            raise PermanentError(f"log filter is {len(filter_)} characters; the API accepts {MAX_FILTER_CHARS}")
        if not _WINDOW.search(filter_):
            raise PermanentError('log filter has no explicit time window (timestamp>="...")')
        if self._project is None:
            self._project = project
        what = f"Cloud Logging entries.list projects/{project}"

        def run() -> list[LogEntry]:
            api = self._client.get().logging_api
            pager = api.list_entries(
                [f"projects/{project}"],
                filter_=filter_,
                order_by="timestamp desc",
                page_size=min(limit, MAX_PAGE_SIZE),
                max_results=limit,
            )
            return [log_entry(entry) for entry in pager]

        retry = retry_policy(self._deadline_s)
        with google_call(what):
            return list(retry(run)() if retry is not None else run())

    def close(self) -> None:
        """Release the HTTP session (no-op when the client was never built)."""
        if self._client.built:
            self._client.get().close()


def log_entry(entry: Any) -> LogEntry:
    """Map a google-cloud-logging entry to :class:`LogEntry`, its payload rendered to bounded, printable text."""
    resource = getattr(entry, "resource", None)
    labels = getattr(resource, "labels", None) or {}
    severity = entry.severity
    timestamp = entry.timestamp
    return LogEntry(
        timestamp=timestamp if isinstance(timestamp, datetime) else None,
        severity=clean(severity, 32) if severity is not None else None,
        log_name=clean(entry.log_name, 512) if entry.log_name else None,
        text=render_payload(entry.payload),
        resource_labels={clean(k, 128): clean(v, 256) for k, v in list(labels.items())[:32]},
    )


def render_payload(payload: Any, limit: int = ENTRY_CHARS) -> str:
    """textPayload as is; jsonPayload as compact JSON; an audit protoPayload as a summary line, then its JSON."""
    if payload is None:
        return ""
    if isinstance(payload, str):
        return clean(payload, limit)
    if not isinstance(payload, Mapping):  # a protobuf message (gRPC transport); the HTTP client gives dicts
        payload = sdk("google.protobuf.json_format").MessageToDict(payload)
    text = _compact(payload)
    if "methodName" in payload:
        text = f"{_audit_summary(payload)} {text}"
    return clean(text, limit)


def _audit_summary(payload: Mapping[str, Any]) -> str:
    auth = payload.get("authenticationInfo") or {}
    meta = payload.get("requestMetadata") or {}
    status = payload.get("status") or {}
    parts = [
        str(payload.get("methodName", "")),
        str(payload.get("resourceName", "")),
        f"principal={auth.get('principalEmail', '-')}" if isinstance(auth, Mapping) else "",
        f"caller={meta.get('callerIp', '-')}" if isinstance(meta, Mapping) else "",
        f"status={status.get('code', 0)}" if isinstance(status, Mapping) else "",
    ]
    return " ".join(p for p in parts if p)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
