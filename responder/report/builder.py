"""The incident report: the runbook's seven steps, each with what was found and what the responder did.

:func:`build_report` turns an :class:`~responder.report.outcome.Outcome` into an :class:`IncidentReport` (JSON, for the
report topic and tickets); :func:`render_markdown` writes it up for humans. It works for every outcome: ``act`` gets
the full report, ``ignore`` and ``reject`` a short one saying why. Without cloud access the report still carries what
the finding alone gives (filters, commands, links), with each enrichment branch marked unavailable and why.

Much of a finding is attacker-controlled (process arguments, paths, the container's own log lines, the ``ps`` output),
so every such value is sanitised and bounded here, and the Markdown renderer never lets one escape its context:
inline values go in code spans and multi-line text in fenced blocks whose fence is longer than any backtick run in
the content; other text is backslash-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

from responder.containment import registry
from responder.containment.results import ActionResult
from responder.errors import ResponderError
from responder.intake import categories, identifiers
from responder.intake.categories import CategoryProfile
from responder.intake.findings import Endpoint, Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.investigation import links, logfilters
from responder.investigation.investigator import LOG_KINDS, LOG_TITLES, Investigation
from responder.policy.rules import Defaults
from responder.report.identity import WORKLOAD_IDENTITY_ANNOTATION, identity_section
from responder.report.models import (
    _DEFAULT_OWNER_KEYS,
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_ARGS_TOTAL,
    MAX_ENTRY_CHARS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_LINE_CHARS,
    MAX_TAIL_LINES,
    MAX_TREE_LINES,
    ActionInfo,
    ClusterSection,
    CommandInfo,
    ContainerInfo,
    FindingSection,
    IncidentReport,
    InspectSection,
    LogLine,
    LogSection,
    LogsSection,
    NodeSection,
    PodSection,
    ProcessInfo,
    ResponseSection,
    WorkloadInfo,
)
from responder.report.next_steps import next_steps
from responder.report.outcome import Outcome
from responder.report.owning_team import find_owning_team


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
            finding=_finding_section(finding, None, None) if finding else None,
            **base,
        )

    profile = categories.of(finding.category)
    investigation = outcome.investigation or Investigation()
    owner = find_owning_team(owner_keys or _DEFAULT_OWNER_KEYS, investigation.namespace, investigation.cluster)
    cluster = _cluster_section(target, investigation)
    node = _node_section(finding, target, investigation)
    pod = _pod_section(finding, target, investigation)
    logs = _logs_section(finding, target, investigation, outcome, generated)
    mitre = tuple(links.attack_techniques(finding.mitre, profile.techniques))
    virustotal = tuple(links.virustotal_links(finding.processes))
    console = _console_links(finding, target, cluster, node, pod)
    category = clean(finding.category or profile.category, 60)
    report = IncidentReport(
        title=f"{category} in {target.namespace}/{target.pod} ({target.cluster.name}, {target.cluster.location})",
        owner=owner.value if owner else None,
        owner_info=owner,
        finding=_finding_section(finding, target, profile),
        cluster=cluster,
        node=node,
        pod=pod,
        identity=identity_section(target, investigation, outcome.record.actions),
        logs=logs,
        inspect=_inspect_section(target, node, outcome, profile),
        mitre=mitre,
        virustotal=virustotal,
        console=console,
        **base,
    )
    return report.model_copy(update={"response": _response_section(outcome, report, target, profile)})


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


def _finding_section(finding: Finding, target: Target | None, profile: CategoryProfile | None) -> FindingSection:
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
        what=profile.noun if profile else None,
        reports_connection=profile is not None and profile.connection is not None,
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


def _google_identity(investigation: Investigation) -> str | None:
    account = investigation.service_account
    return _opt(account.annotations.get(WORKLOAD_IDENTITY_ANNOTATION), 320) if account else None


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
        google_service_account=_google_identity(investigation),
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
        elif kind == "identity_writes" and filter_ is None:
            status, detail = "unavailable", "service account unknown: no investigation ran"
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


def _inspect_section(target: Target, node: NodeSection, outcome: Outcome, profile: CategoryProfile) -> InspectSection:
    commands = [*links.runbook_commands(target), links.describe_pod(target), links.delete_pod(target)]
    if target.node and not node.instance_id:
        commands.insert(1, links.node_instance_id(target.node))
    evidence = outcome.evidence
    tree = _lines(evidence.process_tree, MAX_TREE_LINES, keep="first") if evidence and evidence.process_tree else None
    notes = tuple(clean(n, 300) for n in (evidence.notes if evidence else []))
    if tree:
        note = "captured by the responder (ps axjf via exec) before any destructive step"
    else:
        tree_notes = [n for n in notes if n.startswith("process tree: ")]
        if tree_notes:
            note = tree_notes[0].removeprefix("process tree: ")  # "not captured: …", "capture refused: …", …
        elif outcome.plan is not None and not any(registry.traits(s.action).read_only for s in outcome.plan.steps):
            note = "not captured: the plan had no capture step"
        else:
            capture = next((a for a in outcome.record.actions if registry.traits(a.action).read_only), None)
            note = (
                f"not captured: {clean(capture.reason, 300)}"
                if capture is not None
                else "not captured: no capture ran (no cluster access, or the pod was gone)"
            )
    return InspectSection(
        commands=tuple(CommandInfo(purpose=c.purpose, text=c.text) for c in commands),
        process_tree=tree,
        process_tree_note=note,
        sockets=tuple(evidence.sockets) if evidence and evidence.sockets is not None else None,
        # The finding's connection among the sockets: only for a category that reports one (else there is none to
        # look for, and "the finding names no remote address" would read as a gap).
        connection=evidence.shell_connection if evidence and profile.connection is not None else None,
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


def _response_section(
    outcome: Outcome, report: IncidentReport, target: Target, profile: CategoryProfile
) -> ResponseSection:
    record, plan = outcome.record, outcome.plan
    dry_run = plan.dry_run if plan else True
    planned = tuple(f"{s.action}{' (destructive)' if s.destructive else ''}" for s in plan.steps) if plan else ()
    return ResponseSection(
        mode=record.mode or (plan.mode if plan else None),
        dry_run=dry_run,
        rule=_opt(record.rule or (plan.rule if plan else None), 200),
        planned=planned,
        actions=_action_infos(record.actions),
        writebacks=_action_infos(record.writebacks),
        skipped=tuple(clean(s, 300) for s in record.skipped),
        todo=tuple(next_steps(outcome, report, target, dry_run, profile)),
    )


def _action_infos(results: list[ActionResult]) -> tuple[ActionInfo, ...]:
    return tuple(
        ActionInfo(
            action=clean(a.action, 40),
            status=a.status.value,
            reason=clean(a.reason, 600),
            dry_run=a.dry_run,
            changes=tuple(clean(c, 300) for c in a.changes[:50]),
        )
        for a in results
    )


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
