"""The runbook's Cloud Logging filters (step 4) and the search of the writes made with the pod's identity, built from
a validated :class:`~responder.intake.triage.Target`.

Pure functions: no I/O, so the report can show the exact filters even when Logging was never reached.

Safety: every value that lands in a filter went through ``responder.intake.identifiers`` (DNS-1123, GCP naming rules)
when triage built the ``Target``, and is quoted here with ``"…"``. A quoted string in the Logging query language is a
literal: ``AND``, ``OR``, ``timestamp``, ``:`` or ``.`` inside the quotes are characters, not syntax. The only ways out
of a quoted string are ``"`` and ``\\`` (and line breaks confuse humans reading the filter), so those are re-checked
here and rejected with :class:`InvalidIdentifier`, never escaped.

Every filter carries its own ``timestamp>=`` / ``timestamp<=`` window: an unbounded search scans the whole retention,
and google-cloud-logging's ``list_entries`` only adds its 24 h default when the word "timestamp" is absent, which a
value could otherwise supply.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from responder.errors import InvalidIdentifier
from responder.intake import identifiers
from responder.intake.triage import Target
from responder.investigation import rights

AUDIT_LOG = "cloudaudit.googleapis.com/activity"
SERIAL_CONSOLE_LOG = "serialconsole.googleapis.com/serial_port_1_output"
# core/v1 pod subresources. Audit entries for `kubectl exec`, `attach`, `port-forward`, `logs`, `debug` (ephemeral
# containers) and evictions are recorded under "<pod>/<subresource>", which an exact match on the pod misses.
POD_SUBRESOURCES = (
    "attach",
    "binding",
    "ephemeralcontainers",
    "eviction",
    "exec",
    "log",
    "portforward",
    "proxy",
    "resize",
    "status",
)
INSTANCE_ID_PLACEHOLDER = "<INSTANCE_ID>"
_UNSAFE = re.compile(r"[\"\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_INSTANCE_ID = re.compile(r"[0-9]{1,20}")


class LogWindow(BaseModel):
    """The searched interval: the event time ± N minutes, or now − N … now when the finding has no event time."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    start: datetime
    end: datetime
    anchor: Literal["event_time", "now", "since_event"]
    minutes: int

    @property
    def note(self) -> str:
        """Human explanation of where the window comes from."""
        if self.anchor == "since_event":
            return "from eventTime to the search"
        if self.anchor == "event_time":
            return f"eventTime ± {self.minutes} min"
        return f"the finding has no eventTime: searched the last {self.minutes} min before the report instead"

    @property
    def clause(self) -> str:
        """``timestamp>="…" AND timestamp<="…"`` (RFC 3339, UTC)."""
        return f'timestamp>="{_rfc3339(self.start)}" AND timestamp<="{_rfc3339(self.end)}"'


def log_window(event_time: datetime | None, minutes: int, now: datetime | None = None) -> LogWindow:
    """The window around ``event_time``; without one, the ``minutes`` before ``now``.

    Bounds are widened to whole seconds (start rounded down, end rounded up) so the displayed filter stays short and
    the event itself is always inside.
    """
    if minutes < 1:
        raise ValueError("log window must be at least one minute")
    span = timedelta(minutes=minutes)
    if event_time is not None:
        anchor = _utc(event_time)
        return LogWindow(
            start=_floor_s(anchor - span), end=_ceil_s(anchor + span), anchor="event_time", minutes=minutes
        )
    current = _utc(now or datetime.now(UTC))
    return LogWindow(start=_floor_s(current - span), end=_ceil_s(current), anchor="now", minutes=minutes)


def since_event(window: LogWindow, event_time: datetime | None, now: datetime) -> LogWindow:
    """From the event to ``now``: what was done with a stolen credential happens after the theft, and goes on after
    the investigation's ± window closes. Without an event time, from the start of ``window`` (the minutes before the
    report). Bounded at both ends like every filter here."""
    start = _floor_s(_utc(event_time)) if event_time is not None else window.start
    end = max(_ceil_s(_utc(now)), start)  # an event stamped a little ahead of this clock still gets a valid window
    return LogWindow(start=start, end=end, anchor="since_event", minutes=window.minutes)


def quote(value: str) -> str:
    """``"value"`` for a Logging filter; raises :class:`InvalidIdentifier` for anything that could leave the quotes."""
    if not isinstance(value, str) or not value or _UNSAFE.search(value):
        shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
        raise InvalidIdentifier(f"{shown} cannot be used in a log filter (empty, quote, backslash or control char)")
    return f'"{value}"'


def container_filter(target: Target, window: LogWindow) -> str:
    """(a) The pod's container logs (stdout/stderr), narrowed to the container when the finding names it."""
    c = target.cluster
    parts = [
        f"resource.type={quote('k8s_container')}",
        f"resource.labels.project_id={quote(c.project)}",
        f"resource.labels.location={quote(c.location)}",
        f"resource.labels.cluster_name={quote(c.name)}",
        f"resource.labels.namespace_name={quote(target.namespace)}",
        f"resource.labels.pod_name={quote(target.pod)}",
    ]
    if target.container:
        parts.append(f"resource.labels.container_name={quote(target.container)}")
    parts.append(window.clause)
    return " AND ".join(parts)


def _cluster_audit(target: Target) -> list[str]:
    """The cluster's Admin Activity audit log: what every audit search starts from."""
    c = target.cluster
    return [
        f"resource.type={quote('k8s_cluster')}",
        f"resource.labels.project_id={quote(c.project)}",
        f"resource.labels.location={quote(c.location)}",
        f"resource.labels.cluster_name={quote(c.name)}",
        f"log_id({quote(AUDIT_LOG)})",
    ]


def audit_filter(target: Target, window: LogWindow) -> str:
    """(b) The cluster's Admin Activity audit entries about the pod and its subresources (exec, attach, log, …).

    Why not ``protoPayload.resourceName:"core/v1/namespaces/NS/pods/POD"``: ``:`` is a case-insensitive *substring*
    test, so it would also match every pod whose name merely starts with this one (``web-1`` finds ``web-10`` to
    ``web-19``; a bare ``api`` finds every ``api-*`` pod of a Deployment), pulling other pods' events into the
    evidence. Exact matches on the pod and on each known pod subresource catch ``kubectl exec``, ``attach``,
    ``port-forward`` and ``debug`` without that over-match; a subresource Kubernetes adds later would be missed,
    which is the safer failure.
    """
    for part in (target.namespace, target.pod):  # each on its own: an empty part would still yield a quotable path
        quote(part)
    pod_path = f"core/v1/namespaces/{target.namespace}/pods/{target.pod}"
    names = [pod_path, *(f"{pod_path}/{sub}" for sub in POD_SUBRESOURCES)]
    resource_names = " OR ".join(f"protoPayload.resourceName={quote(n)}" for n in names)
    parts = [*_cluster_audit(target), f"({resource_names})", window.clause]
    return " AND ".join(parts)


def identity_writes_filter(target: Target, account_namespace: str, account: str, window: LogWindow) -> str:
    """(d) The cluster's Admin Activity audit entries made by the pod's service account, from the event on.

    Admin Activity holds writes only (reads are Data Access entries, off by default on GKE), so this finds what a
    stolen token changed, not what it read. ``principalEmail`` is compared with ``=``, never ``:``: a substring test
    would also find every account whose name starts with this one (``web`` finds ``web-admin``).
    """
    # The account's name comes from the pod's spec, not from triage: validated here before it reaches the filter.
    principal = rights.username(identifiers.namespace(account_namespace), identifiers.service_account(account))
    parts = [
        *_cluster_audit(target),
        f"protoPayload.authenticationInfo.principalEmail={quote(principal)}",
        window.clause,
    ]
    return " AND ".join(parts)


def instance_id(value: str) -> str:
    """A Compute Engine instance ID: numeric, from the node's ``container.googleapis.com/instance_id`` annotation."""
    if not isinstance(value, str) or not _INSTANCE_ID.fullmatch(value):
        shown = repr(value[:40]) if isinstance(value, str) else type(value).__name__
        raise InvalidIdentifier(f"instance id {shown} is not numeric")
    return value


def serial_console_filter(instance: str, window: LogWindow) -> str:
    """(c) The node VM's serial console (port 1); ``instance`` is the numeric instance ID, not the VM name."""
    parts = [
        f"resource.type={quote('gce_instance')}",
        f"log_id({quote(SERIAL_CONSOLE_LOG)})",
        f"resource.labels.instance_id={quote(instance_id(instance))}",
        window.clause,
    ]
    return " AND ".join(parts)


def serial_console_template(window: LogWindow) -> str:
    """The serial-console filter with an ``<INSTANCE_ID>`` placeholder, for a human who looks the ID up by hand."""
    return serial_console_filter("0", window).replace('instance_id="0"', f'instance_id="{INSTANCE_ID_PLACEHOLDER}"')


def _utc(value: datetime) -> datetime:
    # A naive datetime is taken to be UTC: findings carry RFC 3339 times, so naive ones only come from tests or callers.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _floor_s(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _ceil_s(value: datetime) -> datetime:
    if value.microsecond == 0:
        return value
    return value.replace(microsecond=0) + timedelta(seconds=1)


def _rfc3339(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
