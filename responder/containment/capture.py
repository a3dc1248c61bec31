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
from responder.containment.base import ActionContext, ActionParams, ActionResult, Status
from responder.errors import Forbidden, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.investigation import owner_chain as owners

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


class CaptureAction:
    """Collect volatile evidence into ``ctx.evidence``."""

    name: ClassVar[str] = "capture"
    isolating: ClassVar[bool] = False
    verified_first: ClassVar[bool] = False
    read_only: ClassVar[bool] = True
    destructive: ClassVar[bool] = False
    Params: ClassVar[type[ActionParams]] = CaptureParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Capture what can be captured, the three reads at once; never fails the event."""
        assert isinstance(params, CaptureParams)
        ev, pod, kube = ctx.evidence, ctx.pod, ctx.kube
        ev.manifest = pod.manifest
        container = ctx.target.container
        parts: dict[str, bool] = {"manifest": True}  # part -> captured (set by each reader, read after all finish)

        def owner_chain() -> None:
            chain = ctx.owner_chain()  # usually already read by the investigation
            if chain is None:
                chain, error = owners.walk(kube, pod.namespace, pod.controller)
                if error is not None:
                    ev.notes.append(f"owner chain incomplete: {clean(error, 200)}")
            ev.owner_chain.extend({"kind": w.kind, "name": w.name, "uid": w.uid} for w in chain)
            parts["owner chain"] = bool(ev.owner_chain)

        def logs() -> None:
            try:
                ev.logs = kube.read_log(
                    pod.namespace, pod.name, container, params.log_tail_lines, params.log_limit_bytes
                )
                parts["logs" if ev.logs else "logs (empty)"] = True
            except ResponderError as exc:
                ev.notes.append(f"logs not captured: {clean(exc, 200)}")

        def run_in_container(part: str, argv: list[str]) -> str | None:
            """One read-only command in the container (never a shell); None, with a note, when it cannot run."""
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
                return kube.exec(
                    pod.namespace, pod.name, container, argv, params.exec_timeout_s, params.exec_limit_bytes
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

        def process_tree() -> None:
            ev.process_tree = run_in_container("process tree", PROCESS_TREE_ARGV)
            parts["process tree"] = ev.process_tree is not None

        def open_sockets() -> None:
            text = run_in_container("sockets", tcp.SOCKETS_ARGV)
            if text is None:
                return
            found, odd = tcp.parse(text)
            ev.sockets = [s.as_dict() for s in found]
            ev.connection = tcp.the_connection(found, ctx.finding.remote, ctx.finding.local)
            parts["sockets"] = True
            if odd:
                ev.notes.append(f"sockets: {odd} line(s) that are not socket entries were ignored")

        readers: list[Callable[[], object]] = [owner_chain]
        if params.log_tail_lines:
            readers.append(logs)
        if params.process_tree:
            readers.append(process_tree)
        if params.sockets:
            readers.append(open_sockets)
        ctx.run_concurrently(readers)  # each reader records its own failures as notes
        captured = [
            name
            for name in ("manifest", "owner chain", "logs", "logs (empty)", "process tree", "sockets")
            if parts.get(name)
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
