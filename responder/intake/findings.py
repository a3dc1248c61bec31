"""The domain :class:`Finding`: what the responder needs from a notification, with cross-field contradictions found.

Everything after intake works with :class:`Finding`; identifiers in it are still raw (``triage`` validates them).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from responder.errors import InvalidFinding
from responder.intake import categories
from responder.intake.notification import NotificationMessage, RawFinding, RawPod, RawResource, _int64
from responder.intake.sanitize import clean

SAMPLE_PROPERTY = "Responder_Sample"


class _Domain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


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
    """One end of the connection the finding reports (a reverse shell's redirected stdin socket)."""

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
        """Identity for de-duplication and the budget: one finding is one incident, however often it is delivered.

        The name, because it is what SCC vouches for; ``canonicalName`` is whatever the message says, so different
        findings could share one (and one budget slot)."""
        return self.name


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _connection(
    props: dict[str, Any], category: str | None, warnings: list[str]
) -> tuple[Endpoint | None, Endpoint | None]:
    """The (remote, local) ends of the connection the finding reports, from the ``sourceProperties`` its category's
    profile names; none for a category that reports no connection (or that the responder has no profile for)."""
    profile = categories.get(category)
    keys = profile.connection if profile else None
    if keys is None:
        return None, None
    return (
        _endpoint(props, keys.remote_ip, keys.remote_port, warnings),
        _endpoint(props, keys.local_ip, keys.local_port, warnings),
    )


def _endpoint(props: dict[str, Any], ip_key: str, port_key: str, warnings: list[str]) -> Endpoint | None:
    ip_raw, port_raw = props.get(ip_key), props.get(port_key)
    if ip_raw is None:
        return None
    try:
        ip = str(ipaddress.ip_address(str(ip_raw).strip()))
    except ValueError:
        warnings.append(f"{ip_key} {clean(ip_raw, 60)!r} is not an IP address; ignored")
        return None
    port: int | None = None
    if port_raw is not None:
        try:
            port = _int64(port_raw)
        except (ValueError, TypeError):
            port = None
        if port is None or not 0 <= port <= 65535:
            warnings.append(f"{port_key} {clean(port_raw, 30)!r} is not a port number; ignored")
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

    remote, local = _connection(props, raw.category, warnings)
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
        processes=_processes(raw),
        remote=remote,
        local=local,
        mitre=_mitre(raw),
        security_marks=dict(raw.security_marks.marks) if raw.security_marks else {},
        sample=str(props.get(SAMPLE_PROPERTY, "")).lower() == "true",
        warnings=tuple(warnings),
        contradictions=tuple(contradictions),
    )


def _processes(raw: RawFinding) -> tuple[Process, ...]:
    return tuple(
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


def _mitre(raw: RawFinding) -> Mitre:
    if not raw.mitre_attack:
        return Mitre()
    m = raw.mitre_attack
    return Mitre(
        tactics=tuple(t for t in [m.primary_tactic, *m.additional_tactics] if t),
        techniques=tuple(dict.fromkeys([*m.primary_techniques, *m.additional_techniques])),
    )


def _the_pod(
    raw: RawFinding, props: dict[str, Any], warnings: list[str], contradictions: list[str]
) -> tuple[RawPod | None, str | None, str | None]:
    """The pod the finding's process ran in: (its kubernetes.pods[] entry, namespace, name).

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
            "ran the process"
        )
    elif listed:
        pod = next(iter(listed.values()))
    namespace = prop_ns or (pod.ns if pod else None)
    pod_name = prop_pod or (pod.name if pod else None)
    others = {k: v for k, v in listed.items() if v is not pod}
    if pod is not None and others:
        warnings.append(
            f"the finding also lists {_pods_text(others)}: not acted on, the process ran in "
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
