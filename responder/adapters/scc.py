"""``FindingsAPI`` over Security Command Center v1 and v2 (REST transport).

The API version follows the finding name: ``.../sources/S/locations/L/findings/F`` is a v2 name, the rest are v1.
Neither version has a ``GetFinding`` RPC, so a finding is read with ``ListFindings`` filtered on its name.

Permissions: ``securitycenter.findings.list`` (verify), ``securitycenter.findingsecuritymarks.update`` (marks),
``securitycenter.findings.setState`` (state).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from responder.adapters.google_clients import LazyClient, client_kwargs, enum_name, retry_policy, sdk
from responder.adapters.google_errors import google_call
from responder.config import Settings
from responder.errors import InvalidFinding, PermanentError, ResponderError
from responder.intake import identifiers as ids
from responder.intake.findings import Finding, to_finding
from responder.intake.notification import NotificationMessage
from responder.ports import SccFinding
from responder.startup import ImportGate

_FINDING_NAME = ids.FINDING_NAME  # shared with intake, which rejects any other name before acting on it
# SCC allows mark keys of 1-256 letters, digits, "_" and "-" (keys are case-insensitive). Over REST the update mask
# travels as a proto3-JSON FieldMask, whose paths are camelCased on the way out and snake_cased on the way in: an
# upper-case letter, "_" before a non-letter or a trailing "_" cannot make that round trip (protobuf refuses to encode
# them). Hence lower case only, and every "_" followed by a letter.
_MARK_KEY = re.compile(r"[a-z0-9][a-z0-9-]*(?:_[a-z][a-z0-9-]*)*")
MAX_MARK_KEY = 256
MAX_MARK_VALUE = 4096


@dataclass(frozen=True, slots=True)
class FindingName:
    """A validated SCC finding name and the parts the API calls need."""

    name: str
    scope: str  # organizations/O | folders/F | projects/P
    source: str
    location: str | None

    @property
    def v2(self) -> bool:
        """v2 names carry a location."""
        return self.location is not None

    @property
    def list_parent(self) -> str:
        """The ListFindings parent across all sources: ``<scope>/sources/-`` (+ ``/locations/L`` on v2)."""
        parent = f"{self.scope}/sources/-"
        return f"{parent}/locations/{self.location}" if self.location else parent


def parse_finding_name(name: str) -> FindingName:
    """Validate ``name`` strictly; :class:`InvalidFinding` when it is not an SCC finding name."""
    match = _FINDING_NAME.fullmatch(name) if isinstance(name, str) and len(name) <= ids.MAX_FINDING_NAME else None
    if match is None:
        shown = name[:120] if isinstance(name, str) else type(name).__name__
        raise InvalidFinding(f"{shown!r} is not a Security Command Center finding name")
    return FindingName(name=name, scope=match["scope"], source=match["source"], location=match["location"])


def validate_marks(marks: Mapping[str, str]) -> dict[str, str]:
    """Keys and values as SCC (and its REST field masks) accept them; :class:`PermanentError` otherwise."""
    checked: dict[str, str] = {}
    for key, value in marks.items():
        if not isinstance(key, str) or len(key) > MAX_MARK_KEY or not _MARK_KEY.fullmatch(key):
            raise PermanentError(f"security mark key {str(key)[:80]!r} is invalid (lower-case [a-z0-9_-], <= 256)")
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_MARK_VALUE:
            raise PermanentError(f"security mark {key!r} needs a value of 1-{MAX_MARK_VALUE} characters")
        checked[key] = value
    return checked


class SccFindings:
    """Reads a finding, writes security marks, sets its state."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout_s: float = 10.0,
        deadline_s: float = 20.0,
        gate: ImportGate | None = None,
    ) -> None:
        """``timeout_s`` bounds one HTTP attempt; ``deadline_s`` bounds retries of transient failures (0: none)."""
        self._settings = settings
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        # Each version is its own SDK package (~0.4 s to import): a deployment that only sees v2 names never loads v1.
        self._v1: LazyClient[Any] = LazyClient(lambda: self._build("securitycenter_v1"), "SCC v1", gate)
        self._v2: LazyClient[Any] = LazyClient(lambda: self._build("securitycenter_v2"), "SCC v2", gate)
        self._retry: Any = None

    def _build(self, module_name: str) -> Any:
        self._retry = retry_policy(self._deadline_s)
        return sdk(f"google.cloud.{module_name}").SecurityCenterClient(
            transport="rest", **client_kwargs(self._settings, self._settings.scc_endpoint)
        )

    def _client(self, finding: FindingName) -> Any:
        return (self._v2 if finding.v2 else self._v1).get()

    def get_finding(self, name: str) -> SccFinding | None:
        """``ListFindings(parent=<scope>/sources/-[/locations/L], filter='name="<name>"')``; None when unknown."""
        finding = parse_finding_name(name)
        request = {"parent": finding.list_parent, "filter": f'name="{finding.name}"'}
        with google_call(f"SCC list_findings {finding.name}"):
            pager = self._client(finding).list_findings(request=request, retry=self._retry, timeout=self._timeout_s)
            for result in pager:
                if result.finding.name == finding.name:
                    return scc_finding(result.finding)
        return None

    def update_marks(self, name: str, marks: Mapping[str, str]) -> None:
        """Set exactly these keys (update mask ``marks.<key>`` each); other marks stay. No keys, no call."""
        finding = parse_finding_name(name)
        checked = validate_marks(marks)
        if not checked:
            return  # an empty mask would replace every mark on the finding
        field_mask_pb2 = sdk("google.protobuf.field_mask_pb2")
        request = {
            "security_marks": {"name": f"{finding.name}/securityMarks", "marks": checked},
            "update_mask": field_mask_pb2.FieldMask(paths=[f"marks.{key}" for key in checked]),
        }
        with google_call(f"SCC update_security_marks {finding.name}"):
            self._client(finding).update_security_marks(request=request, retry=self._retry, timeout=self._timeout_s)

    def set_state(self, name: str, state: Literal["ACTIVE", "INACTIVE"], when: datetime) -> None:
        """v1 requires ``start_time`` (when the state took effect); v2 has no such field and must not get one."""
        finding = parse_finding_name(name)
        if state not in ("ACTIVE", "INACTIVE"):
            raise PermanentError(f"finding state {str(state)[:40]!r} is not ACTIVE or INACTIVE")
        with google_call(f"SCC set_finding_state {finding.name}"):
            client = self._client(finding)
            module = sdk("google.cloud.securitycenter_v2" if finding.v2 else "google.cloud.securitycenter_v1")
            request: dict[str, Any] = {"name": finding.name, "state": module.Finding.State[state]}
            if not finding.v2:
                request["start_time"] = when if when.tzinfo else when.replace(tzinfo=UTC)
            client.set_finding_state(request=request, retry=self._retry, timeout=self._timeout_s)

    def close(self) -> None:
        """Release the HTTP sessions of the clients that were built."""
        for lazy in (self._v1, self._v2):
            if lazy.built:
                lazy.get().transport.close()


def scc_finding(finding: Any) -> SccFinding:
    """Map a v1 or v2 ``Finding`` message to :class:`SccFinding`."""
    # sourceProperties name the pod the process ran in; kubernetes.pods[] may list more (context). So the former,
    # when SCC has it, is the only pod it vouches for.
    props = finding.source_properties
    namespace, name = props.get("Pod_Namespace"), props.get("Pod_Name")
    if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
        pods = [(namespace, name)]
    else:
        pods = [(p.ns, p.name) for p in finding.kubernetes.pods if p.ns and p.name]
    return SccFinding(
        name=finding.name,
        state=enum_name(finding.state),
        mute=enum_name(finding.mute),
        category=finding.category or None,
        severity=enum_name(finding.severity),
        event_time=_when(finding.event_time),
        resource_name=finding.resource_name or None,
        pods=tuple(pods),
        marks=dict(finding.security_marks.marks),
        steering=_steering(finding),
    )


def _steering(finding: Any) -> Finding | None:
    """SCC's record read exactly as a notification's finding is (the same models, the same validation), so every
    field that steers the response can be compared with, or taken from, what SCC itself holds."""
    try:
        # The proto as a camelCased dict, as a notification carries it: MessageToDict directly, the dict that
        # to_json would serialise and json.loads parse again (half the cost of reading the record, issue 33).
        document = type(finding).to_dict(finding, use_integers_for_enums=False, preserving_proto_field_name=False)
        return to_finding(NotificationMessage.model_validate({"finding": document}))
    except (ValueError, TypeError, ResponderError):
        # Unreadable as a notification: nothing of it can steer; verification then compares the core fields only.
        return None


def _when(value: Any) -> datetime | None:
    """A proto Timestamp (proto-plus hands a ``DatetimeWithNanoseconds``) as an aware datetime; None when unset."""
    if not isinstance(value, datetime) or value.timestamp() <= 0:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
