"""The runner: executes a plan's actions in order against one pod, gated and accounted.

It owns what no single action can decide: when containment cannot start at all (cluster or pod unavailable, a
same-named replacement), running read-only evidence alongside the writes, holding destructive steps until SCC's
verification allows them, escalating an ineffective isolation (evidence first), and turning every failure, a crash
included, into a result in the record with a request for redelivery. Results land in the caller's ``slots`` as they
happen, so what was done before a crash is never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from responder.containment import budget as budget_mod
from responder.containment import registry
from responder.containment.base import Action, ActionContext, ActionResult, Evidence, Prefetched, Status, WritesOut
from responder.containment.detach import DetachAction, DetachParams
from responder.containment.enforcement import EnforcementSetting, resolve
from responder.containment.isolate import IsolateParams
from responder.containment.plan import Plan, PlannedStep, default_step, with_evidence_first
from responder.containment.verification import Verification
from responder.errors import Forbidden, NotFound, ResponderError, TransientError
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.ports import Connection, PodView

Slot = ActionResult | Future[tuple[ActionResult, bool]]


@dataclass(frozen=True, slots=True)
class RunRules:
    """The policy and settings the runner obeys (handed down, so containment does not depend on the policy stage)."""

    budget_namespace: str
    budget_max: int
    budget_window_s: int
    netpol_enforcement: EnforcementSetting
    capture_before_destructive: bool
    process_capture: bool


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why no step can run (cluster or pod unavailable), and whether that is a failure to redeliver.

    ``fails_when_enforcing``: harmless for a plan (dry-run replays decide without a cluster), but when the plan was
    to act it means the pod was never contained, so it is a failure and the delivery is redelivered.
    """

    reason: str
    status: Status
    retry: bool
    fails_when_enforcing: bool = False


UNVERIFIED = "not verified: "
# Run by the runner, never named in a policy: the second half of `isolate` with `detach: true` (see detach.py).
_DETACH = DetachAction()


def _action(name: str) -> Action:
    return _DETACH if name == _DETACH.name else registry.get(name)


def waits_for_scc(step: PlannedStep) -> bool:
    """Before SCC vouches, only what a refuted message's rollback takes back exactly may run: the inert deny-all,
    the exclusions and the quarantine label. A detach (its controller replaces the pod at once), evidence capture
    (exec and log reads in the container the message names) and anything destructive wait for the verification."""
    return step.destructive or step.action == _DETACH.name or _action(step.action).read_only


def split_detach(steps: list[PlannedStep]) -> list[PlannedStep]:
    """``isolate`` with ``detach: true`` becomes ``isolate`` now and ``detach`` once SCC vouched: right after the
    isolation and labelling, ahead of evidence and anything destructive."""
    if not any(s.action == "isolate" and isinstance(s.params, IsolateParams) and s.params.detach for s in steps):
        return steps
    out = [
        s.model_copy(update={"params": s.params.model_copy(update={"detach": False})}) if s.action == "isolate" else s
        for s in steps
    ]
    at = next((i for i, s in enumerate(out) if waits_for_scc(s)), len(out))
    out.insert(at, PlannedStep(action=_DETACH.name, params=DetachParams()))
    return out


def crashed(action: str, exc: BaseException, dry_run: bool) -> ActionResult:
    reason = f"internal error, will retry on redelivery: {type(exc).__name__}: {clean(exc, 200)}"
    return ActionResult(action=action, status=Status.FAILED, dry_run=dry_run, reason=reason)


def read_pod(
    connection: Connection, target: Target, started: Future[PodView] | None = None
) -> tuple[PodView | None, Blocker | None]:
    """The pod, or why containment cannot start. Only a 404 means the pod is gone; a 403 or any other failure
    is a failure (retried), never "already gone". ``started``: that read, already under way (shared)."""
    where = f"{target.namespace}/{target.pod}"
    try:
        pod: PodView = (
            started.result() if started is not None else connection.kube.get_pod(target.namespace, target.pod)
        )
        return pod, None
    except NotFound:
        return None, Blocker(f"pod {where} not found (404): already gone", Status.SKIPPED, retry=False)
    except Forbidden as exc:
        why = f"forbidden (check RBAC: pods get in {target.namespace}): {clean(exc, 200)}"
        return None, Blocker(why, Status.FAILED, retry=True)
    except ResponderError as exc:
        kind = "transient failure, will retry on redelivery" if isinstance(exc, TransientError) else "failed"
        return None, Blocker(f"could not read pod {where} ({kind}): {clean(exc, 200)}", Status.FAILED, retry=True)


def _done(value: tuple[ActionResult, bool]) -> Future[tuple[ActionResult, bool]]:
    future: Future[tuple[ActionResult, bool]] = Future()
    future.set_result(value)
    return future


class Runner:
    """Runs plans; thread-safe (no per-event state on self). ``workers`` run leaf calls, ``coordinators`` run steps
    that wait on their own leaf calls (evidence capture), so nothing waits on work queued behind itself."""

    def __init__(
        self,
        workers: Executor,
        coordinators: Executor,
        rules: RunRules,
        clock: Callable[[], datetime],
        settle: Callable[[], None] = lambda: None,
        when_warm: Callable[..., Any] | None = None,
    ) -> None:
        """``settle``: called before the runner waits on anything but its own writes (the verification, evidence
        running alongside), since those may need the SDK loads that a cold instance holds back until then.
        ``when_warm(fn, *args)``: runs evidence steps, which on a cold instance start after the isolating writes."""
        self.settle = settle
        self.when_warm = when_warm
        self.workers = workers
        self.coordinators = coordinators
        self.rules = rules
        self.clock = clock

    def contain(
        self,
        finding: Finding,
        target: Target,
        plan: Plan,
        connection: Connection | None,
        pod: PodView | None,
        blocker: Blocker | None,
        prefetched: Prefetched,
        verifying: Future[Verification],
        slots: list[ActionResult | Future[tuple[ActionResult, bool]]],
        evidence: Evidence,
        writes_out: WritesOut,
    ) -> bool:
        """Run the plan into ``slots`` (read-only steps still running after the last write stay futures, in order).

        Returns whether Pub/Sub must redeliver. ``slots`` is the caller's, so whatever was done before a crash is
        still recorded. ``writes_out`` opens once the isolating writes are on the wire, or at once when there are none
        to make (see :class:`WritesOut`); the caller opens it when this returns, whatever happened.
        """
        if plan.dry_run or not any(s.action == "isolate" for s in plan.steps):
            writes_out.open()  # no isolating writes to keep the wire and the CPU for
        if not plan.steps:
            return False
        dry_run = plan.dry_run
        if blocker is None and pod is not None and finding.event_time is None and not dry_run:
            # Without the event's time (the message lacked it and SCC did not supply it) this pod cannot be told
            # from a later same-named replacement; no time is ever assumed.
            blocker = Blocker(
                "the finding has no event time (the message lacks eventTime and SCC did not supply it): pod "
                f"{target.namespace}/{target.pod} cannot be told from a later replacement, left alone",
                Status.SKIPPED,
                retry=False,
            )
        if (
            blocker is None
            and pod is not None
            and finding.event_time
            and pod.created
            and pod.created > finding.event_time
        ):
            # Findings carry no pod UID. A pod created after the event cannot have run the reverse shell: it is a
            # same-named replacement (StatefulSet, or a re-created pod), and acting on it would punish the clean one.
            blocker = Blocker(
                f"pod {target.namespace}/{target.pod} was created after the finding's event "
                f"({pod.created.isoformat()} > {finding.event_time.isoformat()}): it is a replacement, left alone",
                Status.SKIPPED,
                retry=False,
            )
        if blocker is not None or connection is None or pod is None:
            why = blocker or Blocker("no pod to act on", Status.SKIPPED, retry=False)
            if why.fails_when_enforcing and not dry_run:
                why = Blocker(f"cannot contain: {why.reason}", Status.FAILED, retry=True)
            prefix = "not run: " if why.status is Status.SKIPPED else ""
            slots.extend(
                ActionResult(action=s.action, status=why.status, reason=prefix + why.reason, dry_run=dry_run)
                for s in plan.steps
            )
            return why.retry
        rules = self.rules
        ctx = ActionContext(
            kube=connection.kube,
            target=target,
            finding=finding,
            dry_run=dry_run,
            pod=pod,
            cluster_info=connection.info,
            evidence=evidence,
            now=self.clock(),
            pool=self.workers,
            prefetched=prefetched,
            planned=tuple(s.action for s in plan.steps),
            process_capture=rules.process_capture,
            writes_out=writes_out,
            enforcement=resolve(rules.netpol_enforcement, connection.info),
        )
        if not dry_run:
            ctx.charge_budget = partial(
                budget_mod.consume,
                connection.kube,
                rules.budget_namespace,
                finding.key or "",
                rules.budget_max,
                rules.budget_window_s,
                ctx.now,
            )
        retry = False
        steps = split_detach(list(plan.steps))
        # Read-only steps (evidence) need nothing from containment: they run alongside it (once SCC vouched) and are
        # joined at their place in the plan, which the planner puts before any destructive step.
        early = {
            i: ctx.writes_out.later(self.coordinators, self._evidence, ctx, s, verifying)
            for i, s in enumerate(steps)
            if _action(s.action).read_only
        }
        index = 0
        while index < len(steps):
            step = steps[index]
            index += 1
            if (step.destructive or step.action == _DETACH.name) and not dry_run:
                self._settle(ctx)
                verification = verifying.result()
                if not verification.allows_destructive:
                    what = "not detached" if step.action == _DETACH.name else "no destructive action"
                    reason = f"{UNVERIFIED}{verification.reason}; {what}"
                    slots.append(ActionResult(action=step.action, status=Status.SKIPPED, reason=reason))
                    continue
            running = early.get(index - 1)
            if running is not None and not any(s.destructive for s in steps[index:]):
                slots.append(running)  # nothing destructive waits for this evidence: joined by the caller
                continue
            if running is not None:
                self._settle(ctx)
            if running is None and _action(step.action).read_only:
                running = _done(self._evidence(ctx, step, verifying))  # added late (escalation): still gated
            result, transient = running.result() if running else self.run_step(ctx, step)
            retry = retry or transient
            slots.append(result)
            if (
                result.action == "isolate"
                and result.details.get("session_survives")
                and isinstance(step.params, IsolateParams)
                and step.params.live_session == "escalate"
                and not any(s.destructive for s in steps)
            ):
                # Isolation cannot end a shell that is already connected (new-only dataplane, no enforcement,
                # hostNetwork): the process has to go. A destructive step like any other: evidence first (unless the
                # policy opts out), verified first, budgeted.
                steps.append(default_step("delete"))
                steps = steps[:index] + with_evidence_first(steps[index:], rules.capture_before_destructive)
        return retry

    def _settle(self, ctx: ActionContext) -> None:
        """About to wait on something other than its own writes: let what was held back for them go ahead."""
        ctx.writes_out.open()
        self.settle()

    def _evidence(
        self, ctx: ActionContext, step: PlannedStep, verifying: Future[Verification]
    ) -> tuple[ActionResult, bool]:
        """An evidence step, started behind the isolating writes (and, on a cold instance, run after them), once SCC
        vouched for the message: never exec or read logs in a container a forger chose."""
        self.settle()
        verification = verifying.result()
        if not verification.allows_evidence(ctx.dry_run):
            reason = f"{UNVERIFIED}{verification.reason}; no exec and no log read in the container"
            ctx.evidence.notes.append(f"evidence not captured: {reason}")
            return ActionResult(action=step.action, status=Status.SKIPPED, reason=reason, dry_run=ctx.dry_run), False
        if self.when_warm is not None:
            result: tuple[ActionResult, bool] = self.when_warm(self.run_step, ctx, step)
            return result
        return self.run_step(ctx, step)

    @staticmethod
    def run_step(ctx: ActionContext, step: PlannedStep) -> tuple[ActionResult, bool]:
        """Run one action; a failure becomes its result. Returns (result, retry).

        Every failure raised by an action asks for redelivery: a 403 or a 5xx must not be acknowledged as handled
        while the pod is not contained (repeated failures end in the dead-letter topic, visible, not lost).
        """
        action = _action(step.action)
        try:
            return action.run(ctx, step.params), False
        except ResponderError as exc:
            hint = "failed, will retry on redelivery: "
            if isinstance(exc, TransientError):
                hint = "transient failure, will retry on redelivery: "
            elif isinstance(exc, Forbidden):
                hint = "forbidden (check RBAC): "
            failed = ActionResult(
                action=step.action, status=Status.FAILED, dry_run=ctx.dry_run, reason=hint + clean(exc, 240)
            )
            return failed, True
        except Exception as exc:  # a bug must not end the event silently, nor lose what other steps did
            return crashed(step.action, exc, ctx.dry_run), True
