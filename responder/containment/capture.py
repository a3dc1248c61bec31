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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from responder.containment import sockets as tcp
from responder.containment.base import ActionContext, ActionParams, ActionResult, Status, Traits
from responder.errors import Forbidden, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.investigation.investigator import owner_chain

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
    held_means: ClassVar[str] = "no exec and no log read in the container"
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
        reason = f"captured {', '.join(captured)}"
        if ev.notes:
            reason += f"; {len(ev.notes)} part(s) not captured"
        return ActionResult(
            action=self.name,
            status=Status.SUCCEEDED,
            reason=reason,
            dry_run=ctx.dry_run,
            details={"captured": captured, "notes": list(ev.notes), "connection": ev.connection},
        )


class _Capture:
    """The readers of one capture; each records what it captured in ``parts`` and its failures as notes."""

    def __init__(self, ctx: ActionContext, params: CaptureParams) -> None:
        self.ctx, self.params = ctx, params
        self.ev, self.pod, self.kube = ctx.evidence, ctx.pod, ctx.kube
        self.container = ctx.target.container
        self.parts: dict[str, bool] = {"manifest": True}  # part -> captured (read after all readers finish)

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
                pod.namespace, pod.name, self.container, params.log_tail_lines, params.log_limit_bytes
            )
            self.parts["logs" if ev.logs else "logs (empty)"] = True
        except ResponderError as exc:
            ev.notes.append(f"logs not captured: {clean(exc, 200)}")

    def run_in_container(self, part: str, argv: list[str]) -> str | None:
        """One read-only command in the container (never a shell); None, with a note, when it cannot run."""
        ev, pod, ctx, container = self.ev, self.pod, self.ctx, self.container
        if ctx.dry_run:
            ev.notes.append(f"{part} not captured: dry-run (exec runs a process the attacker can see)")
            return None
        if not ctx.process_capture:
            ev.notes.append(f"{part} not captured: process capture is disabled (RESPONDER_PROCESS_CAPTURE)")
            return None
        if not any(c.running for c in pod.containers if container is None or c.name == container):
            ev.notes.append(f"{part} not captured: the container is not running")
            return None
        try:
            return self.kube.exec(
                pod.namespace, pod.name, container, argv, self.params.exec_timeout_s, self.params.exec_limit_bytes
            )
        except NotFound:
            ev.notes.append(f"{part} not captured: pod no longer exists")
        except Forbidden as exc:
            ev.notes.append(
                f"{part} not captured: not permitted (pods/exec is not granted; bind "
                f"deploy/kubernetes/rbac-capture.yaml to enable it): {clean(exc, 160)}"
            )
        except ResponderError as exc:
            ev.notes.append(f"{part} not captured: {clean(exc, 200)}")
        return None

    def process_tree(self) -> None:
        self.ev.process_tree = self.run_in_container("process tree", PROCESS_TREE_ARGV)
        self.parts["process tree"] = self.ev.process_tree is not None

    def open_sockets(self) -> None:
        text = self.run_in_container("sockets", tcp.SOCKETS_ARGV)
        if text is None:
            return
        found, odd = tcp.parse(text)
        self.ev.sockets = [s.as_dict() for s in found]
        self.ev.connection = tcp.the_connection(found, self.ctx.finding.remote, self.ctx.finding.local)
        self.parts["sockets"] = True
        if odd:
            self.ev.notes.append(f"sockets: {odd} line(s) that are not socket entries were ignored")
