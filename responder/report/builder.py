"""The incident report: the runbook's seven steps, each with what was found and what the responder did.

:func:`build_report` turns an :class:`~responder.service.Outcome` into an :class:`IncidentReport` (JSON, for the
report topic and tickets); :func:`render_markdown` writes it up for humans. It works for every outcome: ``act`` gets
the full report, ``ignore`` and ``reject`` a short one saying why. Without cloud access the report still carries what
the finding alone gives (filters, commands, links), with each enrichment branch marked unavailable and why.

Much of a finding is attacker-controlled (process arguments, paths, the container's own log lines, the ``ps`` output),
so every such value is sanitised and bounded here, and the Markdown renderer never lets one escape its context:
inline values go in code spans and multi-line text in fenced blocks whose fence is longer than any backtick run in
the content; other text is backslash-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from responder.errors import ResponderError
from responder.intake import identifiers
from responder.intake.findings import Endpoint, Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.investigation import links, logfilters
from responder.investigation.investigator import LOG_KINDS, LOG_TITLES, Investigation, LogKind
from responder.policy.rules import Defaults
from responder.ports import ClusterInfo, NamespaceView

if TYPE_CHECKING:
    from responder.service import Outcome

SCHEMA_VERSION = 1
MAX_ARGS = 64
MAX_ARG_CHARS = 1024
MAX_ARGS_TOTAL = 8192
MAX_LABELS = 50
MAX_LABEL_VALUE = 256
MAX_ENTRY_CHARS = 2000
MD_ENTRIES_PER_SEARCH = 10
MAX_TREE_LINES = 300
MAX_TAIL_LINES = 100
MAX_LINE_CHARS = 512
STEP_TITLES = (
    "1. Finding details",
    "2. Cluster and node",
    "3. Pod and owner chain",
    "4. Logs",
    "5. Inspect the running container",
    "6. MITRE ATT&CK and VirusTotal",
    "7. Respond",
)
_DEFAULT_OWNER_KEYS = Defaults().owner_keys


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


# ------------------------------------------------------------------------------------------------------ the model


class ProcessInfo(_Model):
    """A process the finding names; ``args`` are sanitised and bounded."""

    name: str | None = None
    binary: str | None = None
    sha256: str | None = None
    virustotal: str | None = None
    args: tuple[str, ...] = ()
    args_truncated: bool = False
    pid: int | None = None
    parent_pid: int | None = None
    user_id: int | None = None


class FindingSection(_Model):
    """Step 1: the finding as SCC reported it."""

    name: str | None = None
    canonical_name: str | None = None
    category: str | None = None
    severity: str | None = None
    state: str | None = None
    api_version: str | None = None
    event_time: datetime | None = None
    create_time: datetime | None = None
    resource_name: str | None = None
    project: str | None = None
    project_display_name: str | None = None
    image_uri: str | None = None
    container: str | None = None
    node: str | None = None
    node_pool: str | None = None
    remote: str | None = None  # the attacker's end of the redirected stdin socket, ip:port
    local: str | None = None
    processes: tuple[ProcessInfo, ...] = ()
    console_url: str | None = None


class OwnerInfo(_Model):
    """Who to contact, and where that came from (``namespace label``, ``namespace annotation``, ``cluster label``)."""

    value: str
    key: str
    source: str


class ClusterSection(_Model):
    """Step 2: the cluster."""

    path: str
    project: str
    location: str
    name: str
    zonal: bool
    status: str | None = None
    version: str | None = None
    autopilot: bool | None = None
    network_policy_enforced: bool | None = None
    datapath_provider: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    console_url: str
    enrichment: str


class NodeSection(_Model):
    """Step 2: the node the pod ran on."""

    name: str | None = None
    instance_id: str | None = None
    node_pool: str | None = None
    zone: str | None = None
    console_url: str | None = None
    vm_url: str | None = None
    enrichment: str


class ContainerInfo(_Model):
    """One container of the pod."""

    name: str
    image: str | None = None
    image_id: str | None = None
    running: bool = False
    ready: bool | None = None
    restarts: int = 0
    privileged: bool = False
    run_as_user: int | None = None
    allow_privilege_escalation: bool | None = None


class WorkloadInfo(_Model):
    """One link of the owner chain."""

    kind: str
    name: str
    replicas: int | None = None
    ready_replicas: int | None = None
    console_url: str | None = None


class PodSection(_Model):
    """Step 3: the pod and its owners; live facts when the cluster was reachable, else the finding's."""

    namespace: str
    name: str
    source: Literal["cluster", "finding"]
    uid: str | None = None
    phase: str | None = None
    node: str | None = None
    service_account: str | None = None
    start_time: datetime | None = None
    host_network: bool | None = None
    host_pid: bool | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    containers: tuple[ContainerInfo, ...] = ()
    owner_chain: tuple[WorkloadInfo, ...] = ()
    console_url: str
    enrichment: str


class LogLine(_Model):
    """One log entry, bounded."""

    timestamp: datetime | None = None
    severity: str | None = None
    text: str


class LogSection(_Model):
    """Step 4: one search: the filter verbatim, where to run it, and what it found (or why not)."""

    kind: LogKind
    title: str
    filter: str | None = None
    template: str | None = None  # when the filter needs a value only a human can look up now (the instance ID)
    explorer_url: str | None = None
    status: str
    detail: str | None = None
    limit: int
    entries: tuple[LogLine, ...] = ()


class LogsSection(_Model):
    """Step 4: the window and the three searches, plus the log tail captured from the pod."""

    window_start: datetime | None = None
    window_end: datetime | None = None
    window_note: str | None = None
    searches: tuple[LogSection, ...] = ()
    captured_tail: str | None = None


class CommandInfo(_Model):
    """A command for the human (never run by the responder)."""

    purpose: str
    text: str


class InspectSection(_Model):
    """Step 5: the commands filled in, and the process tree captured before containment."""

    commands: tuple[CommandInfo, ...] = ()
    process_tree: str | None = None
    process_tree_note: str
    evidence_notes: tuple[str, ...] = ()


class ActionInfo(_Model):
    """One action's result."""

    action: str
    status: str
    reason: str
    dry_run: bool = False
    changes: tuple[str, ...] = ()


class ResponseSection(_Model):
    """Step 7: what the policy planned, what ran, and what is left for a human."""

    mode: str | None = None
    dry_run: bool = True
    rule: str | None = None
    planned: tuple[str, ...] = ()
    actions: tuple[ActionInfo, ...] = ()
    skipped: tuple[str, ...] = ()
    todo: tuple[str, ...] = ()


class IncidentReport(_Model):
    """The whole report. ``finding`` onwards is None for an ignore/reject outcome, except what could be read."""

    schema_version: int = SCHEMA_VERSION
    generated_at: datetime
    title: str
    verdict: str
    code: str
    reason: str
    outcome: str = "done"
    owner: str | None = None
    owner_info: OwnerInfo | None = None
    finding: FindingSection | None = None
    cluster: ClusterSection | None = None
    node: NodeSection | None = None
    pod: PodSection | None = None
    logs: LogsSection | None = None
    inspect: InspectSection | None = None
    mitre: tuple[links.Technique, ...] = ()
    virustotal: tuple[links.Link, ...] = ()
    console: tuple[links.Link, ...] = ()
    response: ResponseSection | None = None
    enrichment: dict[str, str] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------------ building


def build_report(
    outcome: Outcome, *, owner_keys: Sequence[str] | None = None, now: datetime | None = None
) -> IncidentReport:
    """The report for any outcome. ``owner_keys`` defaults to the policy default (``owner``, ``team``, ``contact``)."""
    record = outcome.record
    generated = now or datetime.now(UTC)
    finding = outcome.finding
    target = outcome.triage.target if outcome.triage else None
    enrichment = record.enrichment or (outcome.investigation.summary() if outcome.investigation else {})
    base = {
        "generated_at": generated,
        "verdict": record.verdict.value,
        "code": record.code,
        "reason": clean(record.reason, 600),
        "outcome": record.outcome,
        # The record may be built after the report (e.g. when the report is published first): fall back to the
        # investigation's own summary.
        "enrichment": {clean(k, 64): clean(v, 300) for k, v in enrichment.items()},
        "warnings": tuple(clean(w, 300) for w in record.warnings),
    }
    if finding is None or target is None:
        what = clean(finding.category, 100) if finding and finding.category else "finding"
        return IncidentReport(
            title=f"{what}: {record.verdict.value} ({record.code})",
            finding=_finding_section(finding, None) if finding else None,
            **base,
        )

    investigation = outcome.investigation or Investigation()
    owner = find_owner(owner_keys or _DEFAULT_OWNER_KEYS, investigation.namespace, investigation.cluster)
    cluster = _cluster_section(target, investigation)
    node = _node_section(finding, target, investigation)
    pod = _pod_section(finding, target, investigation)
    logs = _logs_section(finding, target, investigation, outcome, generated)
    mitre = tuple(links.attack_techniques(finding.mitre))
    virustotal = tuple(links.virustotal_links(finding.processes))
    console = _console_links(finding, target, cluster, node, pod)
    category = clean(finding.category or "Reverse Shell", 60)
    report = IncidentReport(
        title=f"{category} in {target.namespace}/{target.pod} ({target.cluster.name}, {target.cluster.location})",
        owner=owner.value if owner else None,
        owner_info=owner,
        finding=_finding_section(finding, target),
        cluster=cluster,
        node=node,
        pod=pod,
        logs=logs,
        inspect=_inspect_section(target, node, outcome),
        mitre=mitre,
        virustotal=virustotal,
        console=console,
        **base,
    )
    return report.model_copy(update={"response": _response_section(outcome, report, target)})


def find_owner(keys: Iterable[str], namespace: NamespaceView | None, cluster: ClusterInfo | None) -> OwnerInfo | None:
    """The first of ``keys`` on the namespace (labels, then annotations), else on the cluster's labels."""
    keys = tuple(keys)
    # Namespace first, key by key (labels before annotations): the team owning the namespace is closer to the
    # workload than whoever owns the cluster.
    if namespace is not None:
        for key in keys:
            for source, values in (
                ("namespace label", namespace.labels),
                ("namespace annotation", namespace.annotations),
            ):
                found = _owner_value(values, key, source)
                if found:
                    return found
    if cluster is not None:
        for key in keys:
            found = _owner_value(cluster.labels, key, "cluster label")
            if found:
                return found
    return None


def _owner_value(values: Mapping[str, str], key: str, source: str) -> OwnerInfo | None:
    value = (values.get(key) or "").strip()
    return OwnerInfo(value=clean(value, 200), key=clean(key, 100), source=source) if value else None


def _endpoint(value: Endpoint | None) -> str | None:
    if value is None:
        return None
    if value.port is None:
        return value.ip
    return f"[{value.ip}]:{value.port}" if ":" in value.ip else f"{value.ip}:{value.port}"


def _args(values: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    out: list[str] = []
    total = 0
    for arg in values[:MAX_ARGS]:
        text = clean(arg, MAX_ARG_CHARS)
        if total + len(text) > MAX_ARGS_TOTAL:
            return tuple(out), True
        out.append(text)
        total += len(text)
    return tuple(out), len(values) > MAX_ARGS


def _finding_section(finding: Finding, target: Target | None) -> FindingSection:
    processes = []
    for p in finding.processes[:16]:
        args, cut = _args(p.args)
        vt: str | None = None
        if p.sha256:
            try:
                vt = links.virustotal_url(p.sha256)
            except ResponderError:
                vt = None
        processes.append(
            ProcessInfo(
                name=clean(p.name, 200) if p.name else None,
                binary=clean(p.binary_path, 1024) if p.binary_path else None,
                sha256=clean(p.sha256, 80) if p.sha256 else None,
                virustotal=vt,
                args=args,
                args_truncated=cut or p.arguments_truncated,
                pid=p.pid,
                parent_pid=p.parent_pid,
                user_id=p.user_id,
            )
        )
    project = target.cluster.project if target else None
    return FindingSection(
        name=_opt(finding.name, 300),
        canonical_name=_opt(finding.canonical_name, 300),
        category=_opt(finding.category, 100),
        severity=_opt(finding.severity, 40),
        state=_opt(finding.state, 40),
        api_version=finding.api_version,
        event_time=finding.event_time,
        create_time=finding.create_time,
        resource_name=_opt(finding.resource_name, 300),
        project=project,
        project_display_name=_opt(finding.project_display_name, 120),
        image_uri=_opt(finding.image_uri, 512),
        container=target.container if target else _opt(finding.container, 80),
        node=target.node if target else _opt(finding.node, 80),
        node_pool=_opt(finding.node_pool, 80),
        remote=_endpoint(finding.remote),
        local=_endpoint(finding.local),
        processes=tuple(processes),
        console_url=links.finding_url(finding.name, project) if project else None,
    )


def _branch(investigation: Investigation, *names: str) -> str:
    parts = []
    for name in names:
        branch = investigation.branches.get(name)
        if branch is None:
            parts.append(f"{name}: not run")
        else:
            detail = f" ({clean(branch.detail, 300)})" if branch.detail else ""
            parts.append(f"{name}: {branch.status}{detail}")
    return "; ".join(parts)


def _cluster_section(target: Target, investigation: Investigation) -> ClusterSection:
    ref, info = target.cluster, investigation.cluster
    return ClusterSection(
        path=ref.path,
        project=ref.project,
        location=ref.location,
        name=ref.name,
        zonal=ref.zonal,
        status=_opt(info.status, 40) if info else None,
        version=_opt(info.version, 60) if info else None,
        autopilot=info.autopilot if info else None,
        network_policy_enforced=info.network_policy_enforced if info else None,
        datapath_provider=_opt(info.datapath_provider, 60) if info else None,
        labels=_mapping(info.labels) if info else {},
        console_url=links.cluster_url(ref),
        enrichment=_branch(investigation, "cluster"),
    )


def _node_section(finding: Finding, target: Target, investigation: Investigation) -> NodeSection:
    ref = target.cluster
    zone = investigation.zone or (ref.location if ref.zonal else None)
    node = target.node
    return NodeSection(
        name=node,
        instance_id=_opt(investigation.instance_id, 40),
        node_pool=_opt(investigation.node_pool or finding.node_pool, 80),
        zone=_opt(zone, 60),
        console_url=links.node_url(ref, node) if node else None,
        vm_url=_vm_url(target, zone),
        enrichment=_branch(investigation, "node"),
    )


def _vm_url(target: Target, zone: str | None) -> str | None:
    if not target.node or not zone:
        return None
    try:
        return links.vm_url(target.cluster, identifiers.location(zone), target.node)
    except ResponderError:
        return None


def _pod_section(finding: Finding, target: Target, investigation: Investigation) -> PodSection:
    pod = investigation.pod
    chain = tuple(
        WorkloadInfo(
            kind=clean(w.kind, 40),
            name=clean(w.name, 253),
            replicas=w.replicas,
            ready_replicas=w.ready_replicas,
            console_url=_workload_url(target, w.kind, w.name),
        )
        for w in investigation.owner_chain
    )
    common = {
        "namespace": target.namespace,
        "name": target.pod,
        "console_url": links.pod_url(target),
        "enrichment": _branch(investigation, "pod", "namespace"),
        "owner_chain": chain,
    }
    if pod is None:
        return PodSection(source="finding", labels=_mapping(finding.pod_labels), node=target.node, **common)
    containers = tuple(
        ContainerInfo(
            name=clean(c.name, 63),
            image=_opt(c.image, 512),
            image_id=_opt(c.image_id, 512),
            running=c.running,
            ready=c.ready,
            restarts=c.restart_count,
            privileged=c.privileged,
            run_as_user=c.run_as_user,
            allow_privilege_escalation=c.allow_privilege_escalation,
        )
        for c in pod.containers[:32]
    )
    return PodSection(
        source="cluster",
        uid=_opt(pod.uid, 64),
        phase=_opt(pod.phase, 40),
        node=_opt(pod.node_name, 253),
        service_account=_opt(pod.service_account, 253),
        start_time=pod.start_time,
        host_network=pod.host_network,
        host_pid=pod.host_pid,
        labels=_mapping(pod.labels),
        annotations=_mapping(pod.annotations),
        containers=containers,
        **common,
    )


def _workload_url(target: Target, kind: str, name: str) -> str | None:
    try:
        return links.workload_url(target.cluster, target.namespace, kind, identifiers.pod_name(name))
    except ResponderError:
        return None


def _logs_section(
    finding: Finding, target: Target, investigation: Investigation, outcome: Outcome, now: datetime
) -> LogsSection:
    window = investigation.log_window
    searches = {s.kind: s for s in investigation.logs}
    if window is None:  # no investigation ran: build the filters here, so the human still gets them
        window = logfilters.log_window(finding.event_time, Defaults().log_window_min, now=now)
    builders = {
        "container": lambda: logfilters.container_filter(target, window),
        "audit": lambda: logfilters.audit_filter(target, window),
    }
    sections = []
    for kind in LOG_KINDS:
        search = searches.get(kind)
        branch = investigation.branches.get(f"logs.{kind}")
        filter_ = search.filter if search else None
        if search is None and kind in builders:
            try:
                filter_ = builders[kind]()
            except ResponderError:
                filter_ = None
        if branch is not None:
            status, detail = branch.status, (clean(branch.detail, 300) if branch.detail else None)
        elif kind == "serial_console" and filter_ is None:
            status, detail = "unavailable", "instance ID unknown: no investigation ran"
        else:
            status, detail = "unavailable", "no investigation ran; run the filter by hand"
        entries = tuple(
            LogLine(
                timestamp=e.timestamp,
                severity=_opt(e.severity, 32),
                text=clean(e.text, MAX_ENTRY_CHARS),
            )
            for e in (search.entries if search else ())
        )
        sections.append(
            LogSection(
                kind=kind,
                title=LOG_TITLES[kind],
                filter=filter_,
                template=logfilters.serial_console_template(window)
                if kind == "serial_console" and filter_ is None
                else None,
                explorer_url=links.logs_explorer_url(target.cluster.project, filter_) if filter_ else None,
                status=status,
                detail=detail,
                limit=search.limit if search else 0,
                entries=entries,
            )
        )
    evidence = outcome.evidence
    tail = _lines(evidence.logs, MAX_TAIL_LINES, keep="last") if evidence and evidence.logs else None
    return LogsSection(
        window_start=window.start,
        window_end=window.end,
        window_note=window.note,
        searches=tuple(sections),
        captured_tail=tail,
    )


def _inspect_section(target: Target, node: NodeSection, outcome: Outcome) -> InspectSection:
    commands = [*links.runbook_commands(target), links.describe_pod(target), links.delete_pod(target)]
    if target.node and not node.instance_id:
        commands.insert(1, links.node_instance_id(target.node))
    evidence = outcome.evidence
    tree = _lines(evidence.process_tree, MAX_TREE_LINES, keep="first") if evidence and evidence.process_tree else None
    notes = tuple(clean(n, 300) for n in (evidence.notes if evidence else []))
    if tree:
        note = "captured by the responder (ps axjf via exec) before any destructive step"
    else:
        tree_notes = [n for n in notes if n.startswith("process tree")]
        if tree_notes:
            note = tree_notes[0]
        elif outcome.plan is not None and not any(s.action == "capture" for s in outcome.plan.steps):
            note = "not captured: the plan had no capture step"
        else:
            capture = next((a for a in outcome.record.actions if a.action == "capture"), None)
            note = (
                f"not captured: {clean(capture.reason, 300)}"
                if capture is not None
                else "not captured: no capture ran (no cluster access, or the pod was gone)"
            )
    return InspectSection(
        commands=tuple(CommandInfo(purpose=c.purpose, text=c.text) for c in commands),
        process_tree=tree,
        process_tree_note=note,
        evidence_notes=notes,
    )


def _console_links(
    finding: Finding, target: Target, cluster: ClusterSection, node: NodeSection, pod: PodSection
) -> tuple[links.Link, ...]:
    out = [
        links.Link(title="Cluster details", url=cluster.console_url),
        links.Link(title="Pod details", url=pod.console_url),
    ]
    for workload in pod.owner_chain:
        if workload.console_url:
            out.append(links.Link(title=f"{workload.kind} {workload.name}", url=workload.console_url))
    if node.console_url:
        out.append(links.Link(title="Node details", url=node.console_url))
    if node.vm_url:
        out.append(links.Link(title="Node VM (Compute Engine)", url=node.vm_url))
    scc = links.finding_url(finding.name, target.cluster.project)
    if scc:
        out.append(links.Link(title="Finding in Security Command Center", url=scc))
    return tuple(out)


def _response_section(outcome: Outcome, report: IncidentReport, target: Target) -> ResponseSection:
    record, plan = outcome.record, outcome.plan
    actions = tuple(
        ActionInfo(
            action=clean(a.action, 40),
            status=a.status.value,
            reason=clean(a.reason, 600),
            dry_run=a.dry_run,
            changes=tuple(clean(c, 300) for c in a.changes[:50]),
        )
        for a in record.actions
    )
    dry_run = plan.dry_run if plan else True
    planned = tuple(f"{s.action}{' (destructive)' if s.destructive else ''}" for s in plan.steps) if plan else ()
    return ResponseSection(
        mode=record.mode or (plan.mode if plan else None),
        dry_run=dry_run,
        rule=_opt(record.rule or (plan.rule if plan else None), 200),
        planned=planned,
        actions=actions,
        skipped=tuple(clean(s, 300) for s in record.skipped),
        todo=tuple(_todo(outcome, report, target, dry_run)),
    )


def _todo(outcome: Outcome, report: IncidentReport, target: Target, dry_run: bool) -> list[str]:
    todo: list[str] = []
    owner = report.owner_info
    if owner:
        todo.append(f"Contact the owner: {owner.value} ({owner.source} {owner.key}).")
    else:
        project = report.finding.project if report.finding else target.cluster.project
        todo.append(
            f"Find and contact the owner of project {project}: no owner label was found on the namespace or "
            "cluster (or they could not be read)."
        )
    results = {a.action: a for a in outcome.record.actions}
    deleted = results.get("delete")
    pod_ref = f"{target.namespace}/{target.pod}"
    if dry_run:
        todo.append("The responder ran in dry-run: nothing in the cluster was changed. Contain the pod by hand.")
    if deleted is not None and deleted.status.value == "succeeded" and not deleted.dry_run:
        controller = report.pod.owner_chain[-1] if report.pod and report.pod.owner_chain else None
        owner_text = f" by {controller.kind} {controller.name}" if controller else ""
        todo.append(
            f"Confirm the replacement of {pod_ref}{owner_text} is running, healthy, and built from a trusted image "
            "(the compromised image may still be the one deployed)."
        )
    else:
        todo.append(
            f"Stop or delete the compromised container ({pod_ref}) and confirm it is replaced by a clean one "
            "(step 5 lists the delete command)."
        )
    isolate = results.get("isolate")
    if isolate is not None and (
        isolate.status.value == "failed"
        or isolate.details.get("ineffective")
        or (isolate.status.value == "skipped" and not dry_run)
    ):
        todo.append(f"Isolation did not take effect ({clean(isolate.reason, 200)}): delete the pod or cordon the node.")
    remote = report.finding.remote if report.finding else None
    if remote:
        todo.append(f"Block egress to {remote} and look for other workloads that connected to it.")
    if report.pod and report.pod.service_account:
        todo.append(
            f"Review what service account {report.pod.service_account} can reach and rotate the credentials the "
            "pod could read (secrets, tokens)."
        )
    unavailable = sorted(k for k, v in report.enrichment.items() if not v.startswith("ok"))
    if unavailable:
        todo.append(f"Enrichment incomplete ({', '.join(unavailable)}): run the step 4 and 5 filters and commands.")
    todo.append("Set the finding to INACTIVE in Security Command Center once the incident is resolved.")
    return todo


# -------------------------------------------------------------------------------------------------------- helpers


def _opt(value: str | None, limit: int) -> str | None:
    return clean(value, limit) if value else None


def _mapping(values: Mapping[str, str]) -> dict[str, str]:
    items = sorted(values.items())[:MAX_LABELS]
    return {clean(k, 128): clean(v, MAX_LABEL_VALUE) for k, v in items}


def _lines(text: str, max_lines: int, keep: Literal["first", "last"]) -> str:
    """Multi-line attacker-controlled text: each line cleaned and bounded, at most ``max_lines`` lines."""
    lines = text.splitlines()
    cut = len(lines) - max_lines
    if cut > 0:
        lines = lines[:max_lines] if keep == "first" else lines[-max_lines:]
    out = [clean(line, MAX_LINE_CHARS) for line in lines]
    if cut > 0:
        marker = f"…[{cut} more lines]"
        out = [*out, marker] if keep == "first" else [marker, *out]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------ Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~#])")
_BACKTICKS = re.compile(r"`+")


def md_text(value: object) -> str:
    """Plain text with Markdown/HTML meaning removed (backslash escapes); single line."""
    return _MD_SPECIAL.sub(r"\\\1", clean(value, 2000))


def md_code(value: object) -> str:
    """An inline code span that no backtick inside ``value`` can close."""
    text = clean(value, 4000)
    if not text:
        return "(empty)"
    ticks = "`" * (_longest_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_block(text: str, info: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run in ``text`` (so it cannot be closed early)."""
    fence = "`" * max(3, _longest_run(text) + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def md_link(title: str, url: str | None) -> str:
    """``[title](url)`` for our own titles and URLs; the title is escaped anyway."""
    if not url:
        return md_text(title)
    return f"[{md_text(title)}]({url})"


def _longest_run(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def _flag(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "unknown" if value is None else (yes if value else no)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else "unknown"


def _kv(mapping: Mapping[str, str]) -> str:
    if not mapping:
        return "none"
    return ", ".join(md_code(f"{k}={v}") for k, v in mapping.items())


def render_markdown(report: IncidentReport) -> str:
    """The report as Markdown: a header, then the runbook's seven steps (a short note for ignore/reject)."""
    out: list[str] = [f"# Incident report: {md_text(report.title)}", ""]
    out.append(f"- **Verdict**: {md_text(report.verdict)} ({md_code(report.code)}): {md_text(report.reason)}")
    if report.finding and report.finding.name:
        out.append(f"- **Finding**: {md_code(report.finding.name)}")
    out.append(f"- **Generated**: {_when(report.generated_at)}")
    if report.response is None:
        for warning in report.warnings:
            out.append(f"- **Warning**: {md_text(warning)}")
        out += ["", _short_note(report), ""]
        return "\n".join(out)
    response = report.response
    mode = md_text(response.mode or "unknown")
    out.append(f"- **Mode**: {mode}{' (nothing in the cluster was changed)' if response.dry_run else ''}")
    owner = report.owner_info
    out.append(
        f"- **Owner**: {md_code(owner.value)} ({md_text(owner.source)} {md_code(owner.key)})"
        if owner
        else "- **Owner**: unknown (no owner label found on the namespace or cluster)"
    )
    for warning in report.warnings:
        out.append(f"- **Warning**: {md_text(warning)}")
    out.append("")
    for step, render in zip(STEP_TITLES, _STEPS, strict=True):
        out += [f"## {step}", "", *render(report), ""]
    return "\n".join(out).rstrip() + "\n"


def _short_note(report: IncidentReport) -> str:
    if report.verdict == "ignore":
        return "No automated response: the responder does not handle this finding (see the reason above)."
    return "No automated response: the notification was rejected (see the reason above); it will not be retried."


def _step1(r: IncidentReport) -> list[str]:
    f = r.finding
    assert f is not None
    out = [
        f"- **Category**: {md_code(f.category)}; **severity** {md_code(f.severity or 'unknown')}; "
        f"**state** {md_code(f.state or 'unknown')}; SCC API {md_text(f.api_version or '?')}",
        f"- **Event time**: {_when(f.event_time)}; **created** {_when(f.create_time)}",
        f"- **Project**: {md_code(f.project)}"
        + (
            f" (display name {md_code(f.project_display_name)})"
            if f.project_display_name and f.project_display_name != f.project
            else ""
        ),
        f"- **Resource full name**: {md_code(f.resource_name)}",
        f"- **Container**: {md_code(f.container or 'unknown')}; **image** {md_code(f.image_uri or 'unknown')}",
        f"- **Reverse shell**: remote (attacker) end {md_code(f.remote or 'unknown')}, local end "
        f"{md_code(f.local or 'unknown')}",
    ]
    if f.console_url:
        out.append(f"- {md_link('Open the finding in Security Command Center', f.console_url)}")
    if not f.processes:
        out.append("- **Processes**: none reported")
    for p in f.processes:
        ids = ", ".join(
            x
            for x in (
                f"pid {p.pid}" if p.pid is not None else "",
                f"parent {p.parent_pid}" if p.parent_pid is not None else "",
                f"uid {p.user_id}" if p.user_id is not None else "",
            )
            if x
        )
        out.append(f"- **Program binary** {md_code(p.binary or p.name or 'unknown')}" + (f" ({ids})" if ids else ""))
        if p.sha256:
            vt = f" — {md_link('VirusTotal', p.virustotal)}" if p.virustotal else " (not a valid SHA-256: no link)"
            out.append(f"  - SHA-256 {md_code(p.sha256)}{vt}")
        if p.args:
            note = " (truncated)" if p.args_truncated else ""
            body = "\n".join(f"[{i}] {a}" for i, a in enumerate(p.args))
            out += [f"  - Arguments, one per line, sanitised{note}:", "", _indent(md_block(body), 4), ""]
    return out


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _step2(r: IncidentReport) -> list[str]:
    c, n = r.cluster, r.node
    assert c is not None
    assert n is not None
    kind = "zonal" if c.zonal else "regional"
    out = [
        f"- **Cluster**: {md_code(c.name)} ({kind}, {md_code(c.location)}) in project {md_code(c.project)} — "
        f"{md_link('cluster details', c.console_url)}",
        f"- **Status** {md_code(c.status or 'unknown')}, **version** {md_code(c.version or 'unknown')}, "
        f"**Autopilot** {_flag(c.autopilot)}",
        f"- **NetworkPolicy enforcement**: {_flag(c.network_policy_enforced)}"
        + (" (isolation by NetworkPolicy has no effect here)" if c.network_policy_enforced is False else ""),
        f"- **Cluster labels**: {_kv(c.labels)}",
        "- **Owner**: "
        + (
            f"{md_code(r.owner_info.value)} ({md_text(r.owner_info.source)} {md_code(r.owner_info.key)})"
            if r.owner_info
            else "unknown"
        ),
        f"- **Node**: {md_code(n.name or 'unknown')}; **pool** {md_code(n.node_pool or 'unknown')}; "
        f"**zone** {md_code(n.zone or 'unknown')}; **instance ID** {md_code(n.instance_id or 'unknown')}",
    ]
    node_links = [
        md_link("GKE node", n.console_url) if n.console_url else "",
        md_link("VM", n.vm_url) if n.vm_url else "",
    ]
    if any(node_links):
        out.append(f"- Node links: {', '.join(x for x in node_links if x)}")
    out.append(f"- Enrichment: {md_text(c.enrichment)}; {md_text(n.enrichment)}")
    return out


def _step3(r: IncidentReport) -> list[str]:
    p = r.pod
    assert p is not None
    src = "live from the cluster" if p.source == "cluster" else "from the finding only: the cluster was not read"
    out = [
        f"- **Pod**: {md_code(f'{p.namespace}/{p.name}')} ({src}) — {md_link('pod details', p.console_url)}",
    ]
    if p.source == "cluster":
        out += [
            f"- **UID** {md_code(p.uid or 'unknown')}; **phase** {md_code(p.phase or 'unknown')}; "
            f"**started** {_when(p.start_time)}; **node** {md_code(p.node or 'unknown')}",
            f"- **Service account**: {md_code(p.service_account or 'default')}",
            f"- **hostNetwork** {_flag(p.host_network)}; **hostPID** {_flag(p.host_pid)}",
        ]
    out.append(f"- **Labels**: {_kv(p.labels)}")
    if p.annotations:
        out.append(f"- **Annotations**: {_kv(p.annotations)}")
    for c in p.containers:
        flags = [
            f"restarts {c.restarts}",
            "running" if c.running else "not running",
            "privileged" if c.privileged else "unprivileged",
            f"runAsUser {c.run_as_user}" if c.run_as_user is not None else "runAsUser unset",
            f"allowPrivilegeEscalation {_flag(c.allow_privilege_escalation, 'true', 'false')}",
        ]
        out.append(
            f"- **Container** {md_code(c.name)}: image {md_code(c.image or 'unknown')}, digest "
            f"{md_code(c.image_id or 'unknown')}; {md_text(', '.join(flags))}"
        )
    if p.owner_chain:
        chain = " ← ".join(
            f"{md_text(w.kind)} {md_code(w.name)}"
            + (f" ({w.ready_replicas or 0}/{w.replicas} ready)" if w.replicas is not None else "")
            + (f" {md_link('console', w.console_url)}" if w.console_url else "")
            for w in p.owner_chain
        )
        out.append(f"- **Owner chain**: Pod ← {chain}")
    elif p.source == "cluster":
        out.append("- **Owner chain**: none (a standalone pod)")
    else:
        out.append("- **Owner chain**: unknown (cluster not read)")
    out.append(f"- Enrichment: {md_text(p.enrichment)}")
    return out


def _step4(r: IncidentReport) -> list[str]:
    logs = r.logs
    assert logs is not None
    out = [f"Window: {_when(logs.window_start)} to {_when(logs.window_end)} ({md_text(logs.window_note or '')}).", ""]
    for s in logs.searches:
        out += [f"### {md_text(s.title)}", ""]
        status = f"{md_text(s.status)}" + (f": {md_text(s.detail)}" if s.detail else "")
        if s.filter is None:
            out += [f"Filter not available ({status}).", ""]
            if s.template:
                out += ["Fill in the instance ID (step 5 shows how to read it):", "", md_block(s.template), ""]
            continue
        out += [md_block(s.filter), "", f"{md_link('Open in Logs Explorer', s.explorer_url)} · search: {status}", ""]
        if s.status == "ok":
            if not s.entries:
                out += ["No entries in the window.", ""]
            else:
                shown = s.entries[:MD_ENTRIES_PER_SEARCH]
                more = len(s.entries) - len(shown)
                body = "\n".join(f"{_when(e.timestamp)} {e.severity or '-'} {e.text}" for e in shown)
                note = f" ({more} more in the JSON report)" if more else ""
                out += [
                    f"Newest first, {len(shown)} of {len(s.entries)} (limit {s.limit}){note}:",
                    "",
                    md_block(body),
                    "",
                ]
    if logs.captured_tail:
        out += ["### Container log tail captured before containment", "", md_block(logs.captured_tail), ""]
    return out


def _step5(r: IncidentReport) -> list[str]:
    i = r.inspect
    assert i is not None
    out = ["Run these yourself (the responder never runs them):", ""]
    out += [md_block("\n".join(f"# {c.purpose}\n{c.text}" for c in i.commands), "sh"), ""]
    if i.process_tree:
        out += [f"Process tree, {md_text(i.process_tree_note)}:", "", md_block(i.process_tree), ""]
    else:
        out.append(f"Process tree: {md_text(i.process_tree_note)}.")
    for note in i.evidence_notes:
        out.append(f"- Evidence: {md_text(note)}")
    return out


def _step6(r: IncidentReport) -> list[str]:
    out = []
    for t in r.mitre:
        label = f"{t.attack_id} {t.title}" if t.attack_id and t.title else (t.attack_id or t.name)
        source = f" (finding: {md_code(t.name)})" if t.source == "finding" else " (runbook)"
        out.append(f"- {md_link(label, t.url) if t.url else md_code(t.name) + ' (unknown to this responder)'}{source}")
    if r.virustotal:
        out += [f"- {md_link(v.title, v.url)}" for v in r.virustotal]
    else:
        out.append("- VirusTotal: no binary SHA-256 in the finding")
    out += ["", "Console:", ""]
    out += [f"- {md_link(link.title, link.url)}" for link in r.console]
    return out


def _step7(r: IncidentReport) -> list[str]:
    resp = r.response
    assert resp is not None
    out = [
        f"- **Mode**: {md_text(resp.mode or 'unknown')}; **rule** {md_code(resp.rule or '(none)')}; "
        f"**planned** {md_text(', '.join(resp.planned) or 'nothing')}",
    ]
    if not resp.actions:
        out.append("- **Actions**: none ran")
    for a in resp.actions:
        dry = " (dry-run)" if a.dry_run else ""
        out.append(f"- **{md_text(a.action)}**: {md_text(a.status)}{dry}: {md_text(a.reason)}")
        out += [f"  - {md_text(c)}" for c in a.changes]
    out += [f"- **Skipped**: {md_text(s)}" for s in resp.skipped]
    out += ["", "Left for you:", ""]
    out += [f"{n}. {md_text(t)}" for n, t in enumerate(resp.todo, 1)]
    return out


_STEPS = (_step1, _step2, _step3, _step4, _step5, _step6, _step7)
