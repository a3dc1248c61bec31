"""SCC notification models (API v1 and v2) and their reduction to one domain :class:`Finding`.

Proto3 JSON omits every default, sends int64 as strings, names enums by string, and Google adds fields over time; so
every raw field is optional, extra keys are kept, and unknown enum values stay plain strings. This is the only module
that sees the raw shape: everything after it works with :class:`Finding`.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from responder.errors import InvalidFinding
from responder.intake import proto_enums, safejson
from responder.intake.sanitize import clean

_INT64_MAX = 2**63 - 1
SAMPLE_PROPERTY = "Responder_Sample"


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
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


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


# ---------------------------------------------------------------------------------------------------------- domain


class _Domain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Process(_Domain):
    """A process the finding names (the shell, or its parent)."""

    name: str | None = None
    binary_path: str | None = None
    sha256: str | None = None
    args: tuple[str, ...] = ()
    arguments_truncated: bool = False
    pid: int | None = None
    parent_pid: int | None = None
    user_id: int | None = None


class Endpoint(_Domain):
    """One end of the redirected stdin socket."""

    ip: str
    port: int | None = None


class Mitre(_Domain):
    """MITRE ATT&CK names as SCC reports them (enum names, e.g. ``COMMAND_AND_SCRIPTING_INTERPRETER``)."""

    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()


class Finding(_Domain):
    """What the responder needs from a notification; identifiers are raw here and validated by triage."""

    api_version: str
    name: str | None
    canonical_name: str | None
    notification_config: str | None
    category: str | None
    state: str | None
    mute: str | None
    severity: str | None
    finding_class: str | None
    event_time: datetime | None
    create_time: datetime | None
    resource_name: str | None
    resource_type: str | None
    project_display_name: str | None
    pod_namespace: str | None
    pod_name: str | None
    pod_labels: dict[str, str] = Field(default_factory=dict)
    container: str | None
    image_uri: str | None
    node: str | None
    node_pool: str | None
    processes: tuple[Process, ...] = ()
    remote: Endpoint | None = None
    local: Endpoint | None = None
    mitre: Mitre = Mitre()
    security_marks: dict[str, str] = Field(default_factory=dict)
    sample: bool = False  # published by `python -m responder publish-sample`: reported, never acted on
    warnings: tuple[str, ...] = ()
    contradictions: tuple[str, ...] = ()  # fields that disagree with each other: triage rejects the finding

    @property
    def key(self) -> str | None:
        """Identity for de-duplication: one finding is one incident, however often it is delivered."""
        return self.canonical_name or self.name


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


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _endpoint(props: dict[str, Any], side: str, warnings: list[str]) -> Endpoint | None:
    ip_raw = props.get(f"Reverse_Shell_Stdin_Redirection_{side}_Ip")
    port_raw = props.get(f"Reverse_Shell_Stdin_Redirection_{side}_Port")
    if ip_raw is None:
        return None
    try:
        ip = str(ipaddress.ip_address(str(ip_raw).strip()))
    except ValueError:
        warnings.append(f"{side} IP {clean(ip_raw, 60)!r} is not an IP address; ignored")
        return None
    port: int | None = None
    if port_raw is not None:
        try:
            port = _int64(port_raw)
        except (ValueError, TypeError):
            port = None
        if port is None or not 0 <= port <= 65535:
            warnings.append(f"{side} port {clean(port_raw, 30)!r} is not a port number; ignored")
            port = None
    return Endpoint(ip=ip, port=port)


def _last_segment(name: str | None) -> str | None:
    return name.rsplit("/", 1)[-1] if name else None


def to_finding(message: NotificationMessage) -> Finding:
    """Reduce a notification to a :class:`Finding`; raises :class:`InvalidFinding` when there is no finding at all."""
    raw = message.finding
    if raw is None:
        raise InvalidFinding("notification has no finding")
    props = raw.source_properties
    warnings: list[str] = []
    contradictions: list[str] = []
    resource = message.resource or RawResource()

    pod, namespace, pod_name = _the_pod(raw, props, warnings, contradictions)
    containers = (pod.containers if pod else []) or raw.containers
    container = _text(props.get("Container_Name")) or (containers[0].name if containers else None)
    image_uri = _text(props.get("Container_Image_Uri")) or (containers[0].uri if containers else None)

    node = _text(props.get("VM_Instance_Name"))
    if not node and raw.kubernetes and raw.kubernetes.nodes:
        node = _last_segment(raw.kubernetes.nodes[0].name)
    node_pool = raw.kubernetes.node_pools[0].name if raw.kubernetes and raw.kubernetes.node_pools else None
    resource_name = raw.resource_name or resource.name
    if raw.resource_name and resource.name and raw.resource_name != resource.name:
        contradictions.append(
            f"finding.resourceName {clean(raw.resource_name, 160)!r} and resource.name {clean(resource.name, 160)!r} "
            "name different resources"
        )
    contradictions.extend(_node_contradictions(raw, resource_name, node))

    processes = tuple(
        Process(
            name=p.name,
            binary_path=p.binary.path if p.binary else None,
            sha256=p.binary.sha256 if p.binary else None,
            args=tuple(p.args),
            arguments_truncated=bool(p.arguments_truncated),
            pid=p.pid,
            parent_pid=p.parent_pid,
            user_id=p.user_id,
        )
        for p in raw.processes
    )
    mitre = Mitre()
    if raw.mitre_attack:
        m = raw.mitre_attack
        mitre = Mitre(
            tactics=tuple(t for t in [m.primary_tactic, *m.additional_tactics] if t),
            techniques=tuple(dict.fromkeys([*m.primary_techniques, *m.additional_techniques])),
        )
    gcp = resource.gcp_metadata
    is_v2 = gcp is not None or "/locations/" in (raw.name or "") or any(p.user_id is not None for p in raw.processes)
    return Finding(
        api_version="v2" if is_v2 else "v1",
        name=raw.name,
        canonical_name=raw.canonical_name,
        notification_config=message.notification_config_name,
        category=raw.category,
        state=raw.state,
        mute=raw.mute,
        severity=raw.severity,
        finding_class=raw.finding_class,
        event_time=raw.event_time,
        create_time=raw.create_time,
        resource_name=resource_name,
        resource_type=resource.type,
        project_display_name=(gcp.project_display_name if gcp else None) or resource.project_display_name,
        pod_namespace=namespace,
        pod_name=pod_name,
        pod_labels={lbl.name: lbl.value or "" for lbl in (pod.labels if pod else []) if lbl.name},
        container=container,
        image_uri=image_uri,
        node=node,
        node_pool=node_pool,
        processes=processes,
        remote=_endpoint(props, "Dst", warnings),
        local=_endpoint(props, "Src", warnings),
        mitre=mitre,
        security_marks=dict(raw.security_marks.marks) if raw.security_marks else {},
        sample=str(props.get(SAMPLE_PROPERTY, "")).lower() == "true",
        warnings=tuple(warnings),
        contradictions=tuple(contradictions),
    )


def _the_pod(
    raw: RawFinding, props: dict[str, Any], warnings: list[str], contradictions: list[str]
) -> tuple[RawPod | None, str | None, str | None]:
    """The pod the reverse shell ran in: (its kubernetes.pods[] entry, namespace, name).

    CTD names the pod twice (``kubernetes.pods[]`` and ``sourceProperties``). When they disagree, or several pods are
    listed and nothing says which one ran the shell, no pod can be trusted: that is recorded as a contradiction and
    triage rejects the finding. When several are listed and ``sourceProperties`` names one of them, that one is
    acted on and the others are named in a warning (they are context, e.g. a pod sharing the process's network).
    """
    listed: dict[tuple[str | None, str | None], RawPod] = {}
    for candidate in raw.kubernetes.pods if raw.kubernetes else []:
        if candidate.ns or candidate.name:
            listed.setdefault((candidate.ns, candidate.name), candidate)
    prop_ns, prop_pod = _text(props.get("Pod_Namespace")), _text(props.get("Pod_Name"))
    pod: RawPod | None = None
    if prop_ns or prop_pod:
        matching = [
            p
            for (ns, name), p in listed.items()
            if (not prop_ns or ns == prop_ns) and (not prop_pod or name == prop_pod)
        ]
        if listed and not matching:
            contradictions.append(
                "kubernetes.pods[] and sourceProperties name different pods "
                f"({_pods_text(listed)} vs {clean(prop_ns, 63)}/{clean(prop_pod, 253)})"
            )
        pod = matching[0] if matching else None
    elif len(listed) > 1:
        contradictions.append(
            f"the finding lists {len(listed)} pods ({_pods_text(listed)}) and sourceProperties does not say which one "
            "ran the reverse shell"
        )
    elif listed:
        pod = next(iter(listed.values()))
    namespace = prop_ns or (pod.ns if pod else None)
    pod_name = prop_pod or (pod.name if pod else None)
    others = {k: v for k, v in listed.items() if v is not pod}
    if pod is not None and others:
        warnings.append(
            f"the finding also lists {_pods_text(others)}: not acted on, the reverse shell ran in "
            f"{clean(namespace, 63)}/{clean(pod_name, 253)} (sourceProperties)"
        )
    return pod, namespace, pod_name


def _pods_text(pods: dict[tuple[str | None, str | None], RawPod]) -> str:
    shown = [f"{clean(ns or '?', 63)}/{clean(name or '?', 100)}" for ns, name in list(pods)[:5]]
    return ", ".join(shown) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")


_VM = re.compile(r"//compute\.googleapis\.com/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)")
_CLUSTER = re.compile(r"//container\.googleapis\.com/projects/([^/]+)/(?:locations|zones)/([^/]+)/clusters/[^/]+")


def _region(location: str) -> str:
    # us-central1-a -> us-central1; a region stays as it is.
    head, _, tail = location.rpartition("-")
    return head if len(tail) == 1 and tail.isalpha() else location


def _node_contradictions(raw: RawFinding, resource_name: str | None, vm_name: str | None) -> list[str]:
    """A node the finding names must belong to the cluster it names: same project, same region, same VM."""
    cluster = _CLUSTER.match(resource_name or "")
    nodes = [n.name for n in (raw.kubernetes.nodes if raw.kubernetes else []) if n.name]
    out: list[str] = []
    for node in nodes:
        vm = _VM.fullmatch(node)
        if vm is None or cluster is None:
            continue
        project, zone, _ = vm.groups()
        # A project can be named by ID or by number; only two names of the same kind can be compared.
        if project.isdigit() == cluster[1].isdigit() and project != cluster[1]:
            out.append(f"node {clean(node, 200)!r} is in project {clean(project, 30)}, the cluster in {cluster[1]}")
        elif _region(zone) != _region(cluster[2]):
            out.append(f"node {clean(node, 200)!r} is in zone {clean(zone, 40)}, the cluster in {cluster[2]}")
    names = {n.rsplit("/", 1)[-1] for n in nodes}
    if vm_name and names and vm_name not in names:
        out.append(f"sourceProperties.VM_Instance_Name {clean(vm_name, 63)!r} is not a node of kubernetes.nodes[]")
    return out
