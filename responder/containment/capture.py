"""capture: pod manifest, owner chain, log tail, process tree and sockets, before anything destructive.

Permissions: ``pods: get``; ``pods/log: get``; ``pods/exec: get, create``; workload kinds: ``get``.
Example (policy): ``- action: capture\n  log_tail_lines: 500\n  process_tree: true\n  sockets: true``.

Reads run in dry-run too: evidence is worth having even when nothing else happens. The process tree and the sockets
are the exception: ``exec`` starts a process inside the compromised container, which the attacker can see, so they
run only in enforce mode, only when the plan contains containment, and only when the operator granted ``pods/exec``
(``RESPONDER_PROCESS_CAPTURE``). Two read-only commands, never a shell: ``ps axjf`` and ``cat /proc/net/tcp
/proc/net/tcp6`` (the container's own network namespace: the reverse shell's connection is there, matched against the
finding's Src/Dst). Their output is the attacker's to shape, so it is read with a byte cap and a deadline, and parsed
strictly. Each part that cannot be captured is recorded with the reason and the rest carries on.

Evidence is the compromised pod's: the apiserver addresses exec and logs by pod name, so every such read is bound to
the UID containment acted on (``expected_uid``), and what a same-named replacement may have given is refused, never
filed. How a command ended is the exec status channel's word, never its output's: a command that failed without
output is "capture failed: <reason>", and a socket table cut short or not read leaves the connection "unknown".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from responder.containment import sockets as tcp
from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.results import ActionResult, Status
from responder.errors import Forbidden, NotFound, PodReplaced, ResponderError
from responder.intake.sanitize import clean
from responder.investigation.investigator import owner_chain
from responder.ports import ExecOutput

# `ps axjf` is the runbook's command; argv without a shell, so nothing from the finding can be interpreted.
PROCESS_TREE_ARGV = ["ps", "axjf"]


class CaptureParams(ActionParams):
    """What to capture and how much."""

    log_tail_lines: int = Field(default=200, ge=0, le=10_000)
    log_limit_bytes: int = Field(default=256 * 1024, ge=1024, le=8 * 1024 * 1024)
    process_tree: bool = True
    sockets: bool = True
    exec_timeout_s: float = Field(default=10.0, gt=0, le=60)
    exec_limit_bytes: int = Field(default=256 * 1024, ge=1024, le=4 * 1024 * 1024)


class CaptureAction(Traits):
    """Collect volatile evidence into ``ctx.evidence``."""

    name: ClassVar[str] = "capture"
    read_only: ClassVar[bool] = True
    waits_for_scc: ClassVar[bool] = True  # never exec or read logs in a container a forged message chose
    held_means: ClassVar[str] = "no exec and no log read in the container"
    released_by: ClassVar[str] = "nothing to undo: it only reads"
    rbac: ClassVar[tuple[Rule, ...]] = (
        Rule(("pods", "pods/log"), ("get",)),
        Rule(("pods/exec",), ("get", "create"), manifest="rbac-capture.yaml"),
        Rule(("replicasets", "deployments", "statefulsets", "daemonsets"), ("get",), group="apps"),  # the owner chain
        Rule(("jobs", "cronjobs"), ("get",), group="batch"),
    )
    guard: ClassVar[tuple[str, ...]] = ("isExec",)
    Params: ClassVar[type[ActionParams]] = CaptureParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Capture what can be captured, the three reads at once; never fails the event."""
        assert isinstance(params, CaptureParams)
        ev = ctx.evidence
        ev.manifest = ctx.pod.manifest
        capture = _Capture(ctx, params)
        readers: list[Callable[[], object]] = [capture.owner_chain]
        if params.log_tail_lines:
            readers.append(capture.logs)
        if params.process_tree:
            readers.append(capture.process_tree)
        if params.sockets:
            readers.append(capture.open_sockets)
        ctx.run_concurrently(readers)  # each reader records its own failures as notes
        captured = [
            name
            for name in ("manifest", "owner chain", "logs", "logs (empty)", "process tree", "sockets")
            if capture.parts.get(name)
        ]
        asked = {"logs": params.log_tail_lines > 0, "process tree": params.process_tree, "sockets": params.sockets}
        missing = [
            p for p, on in asked.items() if on and not (capture.parts.get(p) or capture.parts.get(f"{p} (empty)"))
        ]
        reason = f"captured {', '.join(captured)}"
        if capture.refused:
            reason += f"; {capture.refused}"
        if missing:
            reason += f"; not captured: {', '.join(missing)}"
        if ev.notes:
            reason += f"; {len(ev.notes)} note(s)"
        return ActionResult(
            action=self.name,
            status=Status.SUCCEEDED,
            reason=reason,
            dry_run=ctx.dry_run,
            details={
                "captured": captured,
                "notes": list(ev.notes),
                "connection": ev.shell_connection,
                **({"refused": capture.refused} if capture.refused else {}),
            },
        )


class _Capture:
    """The readers of one capture; each records what it captured in ``parts`` and its failures as notes."""

    def __init__(self, ctx: ActionContext, params: CaptureParams) -> None:
        self.ctx, self.params = ctx, params
        self.ev, self.pod, self.kube = ctx.evidence, ctx.pod, ctx.kube
        self.container = ctx.target.container
        self.parts: dict[str, bool] = {"manifest": True}  # part -> captured (read after all readers finish)
        self.refused: str | None = None  # set when a read was refused: the pod by that name is another one now

    def owner_chain(self) -> None:
        ev, pod = self.ev, self.pod
        chain = self.ctx.owner_chain()  # usually already read by the investigation
        if chain is None:
            chain, error = owner_chain(self.kube, pod.namespace, pod.controller)
            if error is not None:
                ev.notes.append(f"owner chain incomplete: {clean(error, 200)}")
        ev.owner_chain.extend({"kind": w.kind, "name": w.name, "uid": w.uid} for w in chain)
        self.parts["owner chain"] = bool(ev.owner_chain)

    def logs(self) -> None:
        ev, pod, params = self.ev, self.pod, self.params
        try:
            ev.logs = self.kube.read_log(
                pod.namespace,
                pod.name,
                self.container,
                params.log_tail_lines,
                params.log_limit_bytes,
                expected_uid=pod.uid,
            )
            self.parts["logs" if ev.logs else "logs (empty)"] = True
        except PodReplaced as exc:
            ev.notes.append(f"logs: {self.refuse(exc)}")
        except ResponderError as exc:
            ev.notes.append(f"logs: not captured: {clean(exc, 200)}")

    def refuse(self, exc: PodReplaced) -> str:
        """The refusal of output a same-named replacement may have given, as the notes and the result say it."""
        now = f"is now uid {exc.actual_uid}" if exc.actual_uid else "is gone"
        self.refused = (
            f"capture refused: pod {exc.namespace}/{exc.name} {now}, not the compromised pod's uid {exc.expected_uid}"
        )
        return self.refused

    def run_in_container(self, part: str, argv: list[str]) -> ExecOutput | str:
        """One read-only command in the container (never a shell), bound to the pod's UID: its output (something
        printed, or a clean exit), or why there is none (also recorded as the part's note)."""
        why = self._exec_refused()
        if why is None:
            pod, params = self.pod, self.params
            try:
                out = self.kube.exec(
                    pod.namespace,
                    pod.name,
                    self.container,
                    argv,
                    params.exec_timeout_s,
                    params.exec_limit_bytes,
                    expected_uid=pod.uid,
                )
                failed = cut_short(out)
                if out.text or not failed:
                    return out
                why = f"capture failed: {failed}"  # nothing printed: the status says why, never "empty"
            except PodReplaced as exc:
                why = self.refuse(exc)
            except NotFound:
                why = "not captured: pod no longer exists"
            except Forbidden as exc:
                why = (
                    "not captured: not permitted (pods/exec is not granted; bind "
                    f"deploy/kubernetes/rbac-capture.yaml to enable it): {clean(exc, 160)}"
                )
            except ResponderError as exc:
                why = f"not captured: {clean(exc, 200)}"
        self.ev.notes.append(f"{part}: {why}")
        return why

    def _exec_refused(self) -> str | None:
        """Why no process may be started in the container, or None."""
        ctx, container = self.ctx, self.container
        if ctx.dry_run:
            return "not captured: dry-run (exec runs a process the attacker can see)"
        if not ctx.process_capture:
            return "not captured: process capture is disabled (RESPONDER_PROCESS_CAPTURE)"
        if not any(c.running for c in self.pod.containers if container is None or c.name == container):
            return "not captured: the container is not running"
        return None

    def process_tree(self) -> None:
        out = self.run_in_container("process tree", PROCESS_TREE_ARGV)
        if isinstance(out, str):
            return
        self.ev.process_tree = out.text + _marker(out)
        self.parts["process tree"] = True
        cut = cut_short(out)
        if cut and not _marker(out):  # a cut-short tree says so in its last line; a failed command in a note
            self.ev.notes.append(f"process tree: kept what ps printed, but it failed: {cut}")

    def open_sockets(self) -> None:
        remote, local = self.ctx.finding.remote, self.ctx.finding.local
        out = self.run_in_container("sockets", tcp.SOCKETS_ARGV)
        if isinstance(out, str):
            self.ev.shell_connection = tcp.the_connection([], remote, local, f"the socket table was not read ({out})")
            return
        cut = cut_short(out)
        table = tcp.parse(out.text)
        self.ev.sockets = [s.as_dict() for s in table.sockets]
        incomplete = f"the socket table is incomplete ({cut})" if cut else None
        self.ev.shell_connection = tcp.the_connection(tcp.every_socket(out.text), remote, local, incomplete)
        self.parts["sockets"] = True
        if cut:
            self.ev.notes.append(f"sockets: the socket table is incomplete: {cut}")
        if table.entries > len(table.sockets):
            self.ev.notes.append(
                f"sockets: {table.entries} entries, the report lists the first {len(table.sockets)} "
                f"(truncated at {tcp.MAX_SOCKETS}; the connection was looked for among all of them)"
            )
        if table.odd:
            self.ev.notes.append(f"sockets: {table.odd} line(s) that are not socket entries were ignored")


def cut_short(out: ExecOutput) -> str | None:
    """Why ``out`` may not be the command's whole output, from how it ended (never from its text, which is the
    container's); None when the command ran to a clean exit and all it printed was read."""
    if out.truncated_at is not None:
        return f"truncated at {out.truncated_at} bytes"
    if out.stopped_after_s is not None:
        return f"stopped after {out.stopped_after_s:g} s (deadline)"
    if out.exit_code == 0:
        return None
    code = f"exit code {out.exit_code}" if out.exit_code is not None else ""
    failure = clean(out.failure, 300) if out.failure else ""
    if code and failure:
        return failure if code in failure else f"{failure} ({code})"  # the kubelet's message usually says it
    return code or failure or "no exit status (the exec stream ended without one)"


def _marker(out: ExecOutput) -> str:
    """The last line a reader of a cut-short process tree sees."""
    if out.truncated_at is not None:
        return f"\n[truncated at {out.truncated_at} bytes]"
    if out.stopped_after_s is not None:
        return f"\n[stopped after {out.stopped_after_s:g} s: deadline]"
    return ""
