"""The incident report as Markdown for humans. No value escapes its context: inline values go in code spans, multi-line
text in fenced blocks longer than any backtick run inside, other text is backslash-escaped."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from responder.intake.sanitize import clean
from responder.report.models import (
    MD_ENTRIES_PER_SEARCH,
    STEP_TITLES,
    ActionInfo,
    IdentitySection,
    IncidentReport,
    LogSection,
)

IDENTITY_SEARCH = "identity_writes"  # shown in the Identity section (step 3), not with the pod's own searches
IDENTITY_HEADING = "### Identity: what a token stolen from the pod can do"

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
    ]
    if f.reports_connection:  # only a category whose finding carries a connection: "unknown" is then a gap
        out.append(
            f"- **{md_text((f.what or 'connection').capitalize())}**: remote (attacker) end "
            f"{md_code(f.remote or 'unknown')}, local end {md_code(f.local or 'unknown')}"
        )
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
            f"- **Service account**: {md_code(p.service_account or 'default')}"
            + (f" (Google identity {md_code(p.google_service_account)})" if p.google_service_account else ""),
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
    if r.identity is not None:
        writes = next((s for s in r.logs.searches if s.kind == IDENTITY_SEARCH), None) if r.logs else None
        out += ["", *_identity(r.identity, writes)]
    return out


def _identity(i: IdentitySection, writes: LogSection | None) -> list[str]:
    """Who a token stolen from the pod is, what RBAC lets it do, what the guard refuses and what it cannot see."""
    out = [
        IDENTITY_HEADING,
        "",
        f"- **Service account**: {md_code(i.username)}",
        f"- **Google identity**: {md_code(i.google_identity)} ("
        + ("annotation" if i.google_identity_source == "annotation" else "Workload Identity Federation principal")
        + f"): {md_text(i.google_identity_note)}",
        "- **Writes**: "
        + ("refused by the cluster now" if i.writes_refused else "**not refused**")
        + f" (identity step: {md_text(i.writes_note)}). **Reads are never refused**: admission never sees a get, "
        "list or watch.",
    ]
    if i.rights_status != "ok":
        out.append(
            f"- **RBAC bindings**: not listed ({md_text(i.rights_status)}), which does not mean it has none. "
            f"Run {md_code('kubectl get rolebindings,clusterrolebindings -A -o wide')} and look for "
            f"{md_code(i.username)}, {md_code('system:serviceaccounts:' + i.namespace)} and the other groups."
        )
    else:
        out.append(f"- **Can write**: {_phrases(i.can_write)}")
        out.append(f"- **Can read**: {_phrases(i.can_read)}")
        extra = [
            f"{i.bindings_truncated} more not listed" if i.bindings_truncated else "",
            f"{i.defaults_skipped} default binding(s) of the cluster left out" if i.defaults_skipped else "",
        ]
        notes = "; ".join(x for x in extra if x)
        out.append(f"- **Bindings naming it** ({len(i.bindings)}{'; ' + notes if notes else ''}):")
        for b in i.bindings:
            where = f"{b.namespace}/{b.name}" if b.namespace else b.name
            missing = " (the role does not exist: it grants nothing until it is created)" if not b.role_found else ""
            out.append(
                f"  - {md_text(b.kind)} {md_code(where)} → {md_text(b.role_kind)} {md_code(b.role_name)}, "
                f"{'names it as' if b.direct else 'through'} {md_code(b.subject)}{missing}"
            )
            for rule in b.rules:
                what = "write" if rule.writes else "read"
                out.append(f"    - {what}: {md_code(', '.join(rule.verbs))} on {md_code(', '.join(rule.targets))}")
            if b.rules_truncated:
                out.append(f"    - {b.rules_truncated} more rules not listed")
    if not i.account_read:
        tokens = "unknown (the service account could not be read)"
    elif i.secret_tokens:
        tokens = ", ".join(md_code(t) for t in i.secret_tokens)
    else:
        tokens = "none named in its secrets field"
    automount = {None: "not set (pods mount a token)", True: "true", False: "false"}[i.automount_token]
    out += [
        f"- **Secret-based tokens** (its {md_code('secrets')} field): {tokens}; automountServiceAccountToken "
        f"{md_text(automount)}. The identity guard does not cover tokens that are not bound to a pod (legacy "
        "Secret-based tokens, TokenRequest tokens bound to nothing): they write whatever the pod is. Find the "
        f"ones its {md_code('secrets')} field does not list with {md_code(i.secrets_command)} (the "
        f"{md_code('kubernetes.io/service-account.name')} annotation names the account).",
    ]
    if writes is not None:
        out += ["", f"#### {md_text(writes.title)}", "", *_search_lines(writes)]
    return out


def _phrases(values: tuple[str, ...]) -> str:
    return ", ".join(md_code(v) for v in values) if values else "nothing, as far as the bindings say"


def _step4(r: IncidentReport) -> list[str]:
    logs = r.logs
    assert logs is not None
    out = [f"Window: {_when(logs.window_start)} to {_when(logs.window_end)} ({md_text(logs.window_note or '')}).", ""]
    for s in logs.searches:
        if s.kind == IDENTITY_SEARCH and r.identity is not None:
            out += [f"The writes made with the pod's service account: step 3, {md_text(s.title)}.", ""]
            continue
        out += [f"### {md_text(s.title)}", "", *_search_lines(s)]
    if logs.captured_tail:
        out += ["### Container log tail captured before containment", "", md_block(logs.captured_tail), ""]
    return out


def _search_lines(s: LogSection) -> list[str]:
    """One search: its filter verbatim, where to run it, and what it found (or why not)."""
    status = f"{md_text(s.status)}" + (f": {md_text(s.detail)}" if s.detail else "")
    if s.filter is None:
        out = [f"Filter not available ({status}).", ""]
        if s.template:
            out += ["Fill in the instance ID (step 5 shows how to read it):", "", md_block(s.template), ""]
        return out
    out = [md_block(s.filter), "", f"{md_link('Open in Logs Explorer', s.explorer_url)} · search: {status}", ""]
    if s.status == "ok":
        if not s.entries:
            out += ["No entries in the window.", ""]
        else:
            shown = s.entries[:MD_ENTRIES_PER_SEARCH]
            more = len(s.entries) - len(shown)
            body = "\n".join(f"{_when(e.timestamp)} {e.severity or '-'} {e.text}" for e in shown)
            note = f" ({more} more in the JSON report)" if more else ""
            out += [f"Newest first, {len(shown)} of {len(s.entries)} (limit {s.limit}){note}:", "", md_block(body), ""]
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
    if i.connection is not None:
        what = (r.finding.what if r.finding and r.finding.what else "the finding's").capitalize()
        out.append(f"{md_text(what)} connection: {md_text(str(i.connection.get('why', '')))}.")
    if i.sockets:
        rows = [f"{s['local']} -> {s['remote']} {s['state']}" for s in i.sockets]
        out += ["", "TCP sockets of the container at capture time:", "", md_block("\n".join(rows)), ""]
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
        out += _action_lines(a)
    for a in resp.writebacks:
        out += _action_lines(a, "written back: ")
    out += [f"- **Skipped**: {md_text(s)}" for s in resp.skipped]
    out += ["", "Left for you:", ""]
    out += [f"{n}. {md_text(t)}" for n, t in enumerate(resp.todo, 1)]
    return out


def _action_lines(a: ActionInfo, kind: str = "") -> list[str]:
    dry = " (dry-run)" if a.dry_run else ""
    return [
        f"- {kind}**{md_text(a.action)}**: {md_text(a.status)}{dry}: {md_text(a.reason)}",
        *(f"  - {md_text(c)}" for c in a.changes),
    ]


_STEPS = (_step1, _step2, _step3, _step4, _step5, _step6, _step7)
