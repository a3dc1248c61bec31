"""SCC notification models (API v1 and v2) as proto3 JSON, and their parsing from Pub/Sub message bytes.

Proto3 JSON omits every default, sends int64 as strings, names enums by string or number, and Google adds fields over
time; so every raw field is optional, extra keys are kept, and enum-like fields go through one normalisation
(``proto_enums``). This is the only module that knows the raw shape; ``findings`` reduces it to the domain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from responder.errors import InvalidFinding
from responder.intake import proto_enums, safejson
from responder.intake.sanitize import clean

_INT64_MAX = 2**63 - 1


def _int64(value: Any) -> Any:
    # proto3 JSON sends int64 as a string; sourceProperties numbers arrive as doubles ("4444.0" after proto-plus).
    if isinstance(value, bool):
        raise ValueError("boolean is not an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(".0"):
            text = text[:-2]
        value = int(text, 10)
    if not isinstance(value, int) or not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError("not an int64")
    return value


def _lenient_int64(value: Any) -> Any:
    # A malformed number in a descriptive field (pid, file size) must not stop a containment: drop it instead.
    if value is None:
        return None
    try:
        return _int64(value)
    except (ValueError, TypeError):
        return None


Int64 = Annotated[int | None, BeforeValidator(_lenient_int64)]


def _utc(value: datetime | None) -> datetime | None:
    # proto3 Timestamps are UTC; a value without an offset is read as UTC so it compares with aware times.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


Timestamp = Annotated[datetime | None, AfterValidator(_utc)]


def _enum(numbers: Any) -> Any:
    def name(value: Any) -> str | None:
        found = proto_enums.enum_name(value, numbers)
        # The zero value means "not set" in proto3, whether it arrives as a name, a number or not at all.
        return None if found is None or found.endswith("_UNSPECIFIED") else found

    return BeforeValidator(name)


def _enum_list(numbers: Any) -> Any:
    def names(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [n for n in (proto_enums.enum_name(v, numbers) for v in value) if n and not n.endswith("_UNSPECIFIED")]

    return BeforeValidator(names)


# Every enum-like field goes through one normalisation (proto_enums): names in any case, or proto3 numbers.
State = Annotated[str | None, _enum(proto_enums.STATE)]
Mute = Annotated[str | None, _enum(proto_enums.MUTE)]
Severity = Annotated[str | None, _enum(proto_enums.SEVERITY)]
FindingClass = Annotated[str | None, _enum(proto_enums.FINDING_CLASS)]
Tactic = Annotated[str | None, _enum(proto_enums.TACTIC)]
Tactics = Annotated[list[str], _enum_list(proto_enums.TACTIC)]
Techniques = Annotated[list[str], _enum_list(proto_enums.TECHNIQUE)]


class _Raw(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True, defer_build=True
    )


class RawFile(_Raw):
    path: str | None = None
    size: Int64 = None
    sha256: str | None = None
    hashed_size: Int64 = None
    partially_hashed: bool | None = None


class RawProcess(_Raw):
    name: str | None = None
    binary: RawFile | None = None
    script: RawFile | None = None
    args: list[str] = Field(default_factory=list)
    arguments_truncated: bool | None = None
    pid: Int64 = None
    parent_pid: Int64 = None
    user_id: Int64 = None  # v2 only


class RawLabel(_Raw):
    name: str | None = None
    value: str | None = None


class RawContainer(_Raw):
    name: str | None = None
    uri: str | None = None
    image_id: str | None = None
    labels: list[RawLabel] = Field(default_factory=list)


class RawPod(_Raw):
    ns: str | None = None
    name: str | None = None
    labels: list[RawLabel] = Field(default_factory=list)
    containers: list[RawContainer] = Field(default_factory=list)


class RawNode(_Raw):
    name: str | None = None


class RawNodePool(_Raw):
    name: str | None = None
    nodes: list[RawNode] = Field(default_factory=list)


class RawKubernetes(_Raw):
    pods: list[RawPod] = Field(default_factory=list)
    nodes: list[RawNode] = Field(default_factory=list)
    node_pools: list[RawNodePool] = Field(default_factory=list)


class RawMitre(_Raw):
    primary_tactic: Tactic = None
    primary_techniques: Techniques = Field(default_factory=list)
    additional_tactics: Tactics = Field(default_factory=list)
    additional_techniques: Techniques = Field(default_factory=list)
    version: str | None = None


class RawSecurityMarks(_Raw):
    name: str | None = None
    marks: dict[str, str] = Field(default_factory=dict)


class RawGcpMetadata(_Raw):
    project: str | None = None
    project_display_name: str | None = None
    parent: str | None = None
    parent_display_name: str | None = None
    organization: str | None = None


class RawResource(_Raw):
    """v1 and v2 resource in one model: v1 keeps project fields at the top, v2 under ``gcpMetadata``."""

    name: str | None = None
    display_name: str | None = None
    type: str | None = None
    service: str | None = None
    location: str | None = None
    # v1 names; legacy notifications (ListFindingsResult.Resource) used projectName/parentName.
    project: str | None = Field(default=None, validation_alias=AliasChoices("project", "projectName", "project_name"))
    project_display_name: str | None = None
    parent: str | None = Field(default=None, validation_alias=AliasChoices("parent", "parentName", "parent_name"))
    parent_display_name: str | None = None
    gcp_metadata: RawGcpMetadata | None = None  # v2


class RawFinding(_Raw):
    name: str | None = None
    canonical_name: str | None = None
    parent: str | None = None
    resource_name: str | None = None
    state: State = None
    category: str | None = None
    external_uri: str | None = None
    source_properties: dict[str, Any] = Field(default_factory=dict)
    security_marks: RawSecurityMarks | None = None
    event_time: Timestamp = None
    create_time: Timestamp = None
    severity: Severity = None
    mute: Mute = None
    finding_class: FindingClass = None
    mitre_attack: RawMitre | None = None
    processes: list[RawProcess] = Field(default_factory=list)
    parent_display_name: str | None = None
    description: str | None = None
    containers: list[RawContainer] = Field(default_factory=list)
    kubernetes: RawKubernetes | None = None


class NotificationMessage(_Raw):
    """``google.cloud.securitycenter.v{1,2}.NotificationMessage`` as proto3 JSON."""

    notification_config_name: str | None = None
    finding: RawFinding | None = None
    resource: RawResource | None = None


def parse_notification(payload: bytes) -> NotificationMessage:
    """Decode the Pub/Sub message data (UTF-8 JSON) into a :class:`NotificationMessage`."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFinding(f"message data is not UTF-8 (byte {exc.start})") from exc
    try:
        document = safejson.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidFinding(f"message data is not JSON we accept: {clean(exc, 120)}") from exc
    if not isinstance(document, dict):
        raise InvalidFinding(f"message data is JSON {type(document).__name__}, expected an object")
    try:
        return NotificationMessage.model_validate(document)
    except (ValidationError, RecursionError) as exc:
        raise InvalidFinding(f"notification does not match the SCC schema: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        return clean(f"{loc}: {err['msg']} ({exc.error_count()} error(s))", 200)
    return clean(exc, 200)
