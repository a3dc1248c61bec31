"""The runner: executes a plan's actions in order against one pod, gated and accounted.

It owns what no single action can decide: when containment cannot start at all (cluster or pod unavailable, said as
a :class:`Blocker` by :func:`connect` and :func:`read_pod`; a same-named replacement), running read-only evidence
alongside the writes, holding destructive steps until SCC's verification allows them, escalating an ineffective
isolation (evidence first), and turning every failure, a crash included, into a result in the record with a request
for redelivery. ``contain(request)`` returns a :class:`ContainmentResult`; a crash ends the run but not its result,
so what was done before it is never lost.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial

from responder.containment import budget as budget_mod
from responder.containment import registry
from responder.containment.action import Action
from responder.containment.context import ActionContext, Evidence, Prefetched
from responder.containment.detach import DetachParams
from responder.containment.enforcement import EnforcementSetting, resolve
from responder.containment.identity import IdentityParams
from responder.containment.isolate import IsolateParams
from responder.containment.plan import Plan, PlannedStep, default_step, with_evidence_first
from responder.containment.progress import progress
from responder.containment.results import ActionResult, Status
from responder.containment.scheduling import Schedule
from responder.containment.verification import Verification, vouched, vouched_target
from responder.errors import Forbidden, NotFound, ResponderError, TransientError, Unavailable
from responder.intake import categories
from responder.intake.categories import CategoryProfile
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.ports import ClusterConnector, Connection, PodView


# ---------------------------------------------------------------- reaching the cluster and the pod, or why not
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
    gone: bool = False  # the compromised pod (or its cluster) no longer exists: neither does its shell


def connect(connector: ClusterConnector | None, target: Target) -> tuple[Connection | None, str | None, Blocker | None]:
    """The cluster, or why not: (connection, why enrichment is unavailable, what that means for containment)."""
    if connector is None:
        why = "no cluster credentials configured (RESPONDER_KUBECONFIG or GKE access)"
        return None, why, Blocker(why, Status.SKIPPED, retry=False, fails_when_enforcing=True)
    try:
        return connector.connect(target.cluster), None, None
    except NotFound as exc:  # the cluster is gone: nothing left to contain
        why = f"cluster {target.cluster.path} not found: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.SKIPPED, retry=False, gone=True)
    except Unavailable as exc:  # credentials or kubeconfig missing or unusable: an operator must look
        why = f"cluster {target.cluster.path} not reachable: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.SKIPPED, retry=False, fails_when_enforcing=True)
    except Forbidden as exc:
        # A 403 does not heal by itself: not retried, it ends not contained and pages (see report.outcome.settle).
        why = f"forbidden (check IAM: container.clusters.get on {target.cluster.path}): {clean(exc, 200)}"
        return None, why, Blocker(why, Status.FAILED, retry=False)
    except TransientError:
        raise  # nothing was written yet: the whole delivery is retried
    except ResponderError as exc:
        why = f"cluster {target.cluster.path} could not be reached: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.FAILED, retry=True)


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
        return None, Blocker(f"pod {where} not found (404): already gone", Status.SKIPPED, retry=False, gone=True)
    except Forbidden as exc:
        why = f"forbidden (check RBAC: pods get in {target.namespace}): {clean(exc, 200)}"
        return None, Blocker(why, Status.FAILED, retry=False)
    except ResponderError as exc:
        kind = "transient failure, will retry on redelivery" if isinstance(exc, TransientError) else "failed"
        return None, Blocker(f"could not read pod {where} ({kind}): {clean(exc, 200)}", Status.FAILED, retry=True)


# --------------------------------------------------------------------------------------------------- the run
@dataclass(frozen=True, slots=True)
class RunRules:
    """The policy and settings the runner obeys (handed down, so containment does not depend on the policy stage)."""

    budget_namespace: str
    budget_max: int
    budget_window_s: int
    netpol_enforcement: EnforcementSetting
    capture_before_destructive: bool
    process_capture: bool


@dataclass(frozen=True, kw_only=True)
class ContainmentRequest:
    """One event's containment: the ``plan`` to run on ``pod`` over ``connection``, or why nothing can run
    (``blocker``); SCC's answer as it arrives (``verifying``); where evidence goes; the event's schedule."""

    finding: Finding
    target: Target
    plan: Plan
    connection: Connection | None
    pod: PodView | None
    blocker: Blocker | None
    prefetched: Prefetched
    verifying: Future[Verification]
    evidence: Evidence
    schedule: Schedule


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One step's result, and whether it asks Pub/Sub to redeliver."""

    result: ActionResult
    retry: bool


@dataclass(frozen=True, slots=True)
class StillRunning:
    """Evidence still being captured when the last write is done (nothing destructive waits for it): the caller
    joins it after the write-back has gone out."""

    action: str
    outcome: Future[StepOutcome]


@dataclass
class ContainmentResult:
    """What containment did, in plan order: finished results, and evidence still running at its place."""

    entries: list[ActionResult | StillRunning] = field(default_factory=list)
    retry: bool = False

    def finished(self) -> list[ActionResult]:
        """The results already in (what the write-back reports)."""
        return [entry for entry in self.entries if isinstance(entry, ActionResult)]

    def join(self) -> tuple[list[ActionResult], bool]:
        """Every result in plan order, waiting for evidence still running; and whether to redeliver."""
        results: list[ActionResult] = []
        retry = self.retry
        for entry in self.entries:
            if isinstance(entry, ActionResult):
                results.append(entry)
            else:
                outcome = entry.outcome.result()
                results.append(outcome.result)
                retry = retry or outcome.retry
        return results, retry


def _action(name: str) -> Action:
    return registry.runnable(name)


def waits_for_scc(step: PlannedStep) -> bool:
    """Before SCC vouches, only what a refuted message's rollback takes back exactly may run: the inert deny-all,
    the exclusions and the quarantine label. A detach (its controller replaces the pod at once), evidence capture
    (exec and log reads in the container the message names) and a delete declare ``waits_for_scc``."""
    return _action(step.action).waits_for_scc


def split_detach(steps: list[PlannedStep]) -> list[PlannedStep]:
    """``isolate`` with ``detach: true`` becomes ``isolate`` now and ``detach`` once SCC vouched: right after the
    isolation and labelling, ahead of evidence and anything destructive."""
    if not any(isinstance(s.params, IsolateParams) and s.params.detach for s in steps):
        return steps
    out = [
        s.model_copy(update={"params": s.params.model_copy(update={"detach": False})})
        if isinstance(s.params, IsolateParams)
        else s
        for s in steps
    ]
    at = next((i for i, s in enumerate(out) if waits_for_scc(s)), len(out))
    out.insert(at, PlannedStep(action=registry.DETACH, params=DetachParams()))
    return out


def with_identity(steps: list[PlannedStep]) -> list[PlannedStep]:
    """The pod's identity is quarantined right after the step that quarantines the pod (isolate, or label): its
    token's writes are refused from then on (deploy/kubernetes/identity-guard.yaml)."""
    at = next((i for i, s in enumerate(steps) if _action(s.action).quarantines), None)
    if at is None or any(s.action == registry.IDENTITY for s in steps):
        return steps
    return [*steps[: at + 1], PlannedStep(action=registry.IDENTITY, params=IdentityParams()), *steps[at + 1 :]]


def isolating(plan: Plan) -> bool:
    """The plan makes isolating writes (everything else is scheduled behind them)."""
    return not plan.dry_run and any(_action(s.action).isolating for s in plan.steps)


def undone_by_rollback(action: str) -> bool:
    """Whether a refuted message's rollback takes this action's success back: what may run before SCC vouches."""
    return action in registry.ACTIONS and not registry.traits(action).waits_for_scc


def forbidden(exc: BaseException) -> bool:
    """A refusal that will not heal by itself: a 403, or an error caused by one (a budget the identity may not read)."""
    return isinstance(exc, Forbidden) or isinstance(exc.__cause__, Forbidden)


_ADMISSION = re.compile(r"ValidatingAdmissionPolicy '(?P<policy>[^']+)'.*?denied request: (?P<message>.*)", re.S)


def refusal(exc: BaseException) -> str:
    """A 403's text for the record. An admission policy's refusal (the guard's) leads with the policy's name and its
    own message, which says what was refused and why: the apiserver's preamble would push it past the record's cap."""
    text = str(exc)
    admission = _ADMISSION.search(text)
    if admission is None:
        return clean(text, 240)
    return clean(f"refused by admission policy {admission['policy']}: {admission['message']}", 400)


def crashed(action: str, exc: BaseException, dry_run: bool) -> ActionResult:
    """The failed result for a bug: it is recorded, and the delivery retried."""
    reason = f"internal error, will retry on redelivery: {type(exc).__name__}: {clean(exc, 200)}"
    return ActionResult(action=action, status=Status.FAILED, dry_run=dry_run, reason=reason)


def held(step: PlannedStep, verification: Verification, consequence: str, dry_run: bool = False) -> ActionResult:
    """The skipped result of a step held back because SCC did not vouch for the message."""
    reason = f"not verified: {verification.reason}; {consequence}"
    return ActionResult(action=step.action, status=Status.SKIPPED, reason=reason, dry_run=dry_run)


def escalates(step: PlannedStep, result: ActionResult, profile: CategoryProfile) -> bool:
    """Isolation ran but cannot end a shell that is already connected, and the policy says the process must go.

    Only for a category whose threat is that live session (its profile says so): for any other, the connections
    that were open before the isolation are not what the finding is about, and they never cost the pod its life.
    Except when a policy above the namespace reopens the pod (``reopened``): then it is not isolated at all."""
    return (
        (profile.live_session or bool(result.details.get("reopened")))
        and isinstance(step.params, IsolateParams)
        and bool(result.details.get("session_survives"))
        and step.params.live_session == "escalate"
    )


def blocker_for(request: ContainmentRequest) -> Blocker | None:
    """Why no step may run on this pod, or None."""
    blocker, pod, finding, target = request.blocker, request.pod, request.finding, request.target
    if blocker is None and pod is not None and finding.event_time is None and not request.plan.dry_run:
        # Without the event's time (the message lacked it and SCC did not supply it) this pod cannot be told
        # from a later same-named replacement; no time is ever assumed.
        return Blocker(
            "the finding has no event time (the message lacks eventTime and SCC did not supply it): pod "
            f"{target.namespace}/{target.pod} cannot be told from a later replacement, left alone",
            Status.SKIPPED,
            retry=False,
        )
    if blocker is None and pod is not None and finding.event_time and pod.created and pod.created > finding.event_time:
        # Findings carry no pod UID. A pod created after the event cannot have run the finding's process: it is a
        # same-named replacement (StatefulSet, or a re-created pod), and acting on it would punish the clean one.
        return Blocker(
            f"pod {target.namespace}/{target.pod} was created after the finding's event "
            f"({pod.created.isoformat()} > {finding.event_time.isoformat()}): it is a replacement, left alone",
            Status.SKIPPED,
            retry=False,
            gone=True,
        )
    if blocker is not None or request.connection is None or pod is None:
        return blocker or Blocker("no pod to act on", Status.SKIPPED, retry=False)
    return None


@dataclass
class _Queued:
    """A step waiting its turn; ``running``: evidence already started alongside containment."""

    step: PlannedStep
    running: Future[StepOutcome] | None = None


class Runner:
    """Runs plans; thread-safe (no per-event state on self). ``workers`` run leaf calls, ``coordinators`` run steps
    that wait on their own leaf calls (evidence capture), so nothing waits on work queued behind itself."""

    def __init__(
        self, workers: Executor, coordinators: Executor, rules: RunRules, clock: Callable[[], datetime]
    ) -> None:
        self.workers = workers
        self.coordinators = coordinators
        self.rules = rules
        self.clock = clock

    def contain(self, request: ContainmentRequest) -> ContainmentResult:
        """Run the plan; read-only steps still running after the last write stay :class:`StillRunning`, in order.

        The schedule's writes latch opens once the isolating writes are acknowledged, or at once when there are none
        to make; the caller opens it when this returns, whatever happened. A crash ends the run with a failed
        ``contain`` result after whatever was done before it.
        """
        if not isolating(request.plan):
            request.schedule.writes_done()  # no isolating writes to keep the wire and the CPU for
        out = ContainmentResult()
        if not request.plan.steps:
            return out
        try:
            _PlanRun(self, request, out).run()
        except Exception as exc:  # a bug mid-containment: keep what was done, say what broke, ask for redelivery
            out.entries.append(crashed("contain", exc, request.plan.dry_run))
            out.retry = True
        return out

    def context(self, request: ContainmentRequest, connection: Connection, pod: PodView) -> ActionContext:
        """What the plan's actions may use for this event."""
        rules, finding, dry_run = self.rules, request.finding, request.plan.dry_run
        ctx = ActionContext(
            kube=connection.kube,
            target=request.target,
            finding=finding,
            dry_run=dry_run,
            pod=pod,
            cluster_info=connection.info,
            evidence=request.evidence,
            now=self.clock(),
            pool=self.workers,
            prefetched=request.prefetched,
            planned=tuple(s.action for s in request.plan.steps),
            process_capture=rules.process_capture,
            writes_out=request.schedule.writes_out,
            enforcement=resolve(rules.netpol_enforcement, connection.info),
            own_namespace=rules.budget_namespace,
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
        return ctx

    @staticmethod
    def run_step(ctx: ActionContext, step: PlannedStep) -> StepOutcome:
        """Run one action; a failure becomes its result (and asks for redelivery).

        A failure that may heal (5xx, 429, a timeout, a concurrent writer, a crash) asks for redelivery. A 403 (RBAC,
        the admission guard, a budget the identity may not read) does not heal by itself: it is recorded as failed
        without a retry, and the delivery then ends ``not_contained`` and pages unless the pod is contained anyway.
        """
        action = _action(step.action)
        try:
            return StepOutcome(action.run(ctx, step.params), retry=False)
        except ResponderError as exc:
            hint, why = "failed, will retry on redelivery: ", clean(exc, 240)
            if isinstance(exc, TransientError):
                hint = "transient failure, will retry on redelivery: "
            elif forbidden(exc):
                hint, why = "forbidden (check RBAC and the admission guard): ", refusal(exc)
            failed = ActionResult(action=step.action, status=Status.FAILED, dry_run=ctx.dry_run, reason=hint + why)
            return StepOutcome(failed, retry=not forbidden(exc))
        except Exception as exc:  # a bug must not end the event silently, nor lose what other steps did
            return StepOutcome(crashed(step.action, exc, ctx.dry_run), retry=True)


class _PlanRun:
    """One plan on one pod: the queue of steps, worked off in order (an escalation appends to it)."""

    def __init__(self, runner: Runner, request: ContainmentRequest, out: ContainmentResult) -> None:
        self.runner = runner
        self.request = request
        self.out = out
        self.dry_run = request.plan.dry_run
        self.schedule = request.schedule

    def run(self) -> None:
        request, out = self.request, self.out
        why = blocker_for(request)
        if why is not None or request.connection is None or request.pod is None:
            self.blocked(why or Blocker("no pod to act on", Status.SKIPPED, retry=False))
            return
        self.ctx = self.runner.context(request, request.connection, request.pod)
        steps = with_identity(split_detach(list(request.plan.steps)))
        profile = categories.of(request.finding.category)
        ends_pod_planned = any(_action(s.action).ends_pod for s in steps)
        # Read-only steps (evidence) need nothing from containment: they run alongside it (once SCC vouched) and are
        # joined at their place in the plan, which the planner puts before any destructive step.
        queue = deque(
            _Queued(s, self.schedule.later(self.runner.coordinators, self.evidence, s) if self.reads(s) else None)
            for s in steps
        )
        while queue:
            item = queue.popleft()
            taken = self.take(item, queue)
            if not isinstance(taken, StepOutcome):
                out.entries.append(taken)  # held until SCC vouches, or evidence left running for the caller
                continue
            out.retry = out.retry or taken.retry
            out.entries.append(taken.result)
            if escalates(item.step, taken.result, profile) and not ends_pod_planned:
                # Isolation cannot end a shell that is already connected (new-only dataplane, no enforcement,
                # hostNetwork): the process has to go. A destructive step like any other: evidence first (unless the
                # policy opts out), verified first, budgeted.
                ends_pod_planned = True
                self.escalate(queue)

    def blocked(self, why: Blocker) -> None:
        """Every step gets the reason nothing could run."""
        if why.fails_when_enforcing and not self.dry_run:
            why = Blocker(f"cannot contain: {why.reason}", Status.FAILED, retry=True)
        prefix = "not run: " if why.status is Status.SKIPPED else ""
        details = {"gone": True} if why.gone else {}
        self.out.entries.extend(
            ActionResult(
                action=s.action, status=why.status, reason=prefix + why.reason, dry_run=self.dry_run, details=details
            )
            for s in self.request.plan.steps
        )
        self.out.retry = why.retry

    @staticmethod
    def reads(step: PlannedStep) -> bool:
        return _action(step.action).read_only

    def take(self, item: _Queued, rest: deque[_Queued]) -> StepOutcome | ActionResult | StillRunning:
        """Run or join one step; or hold it (its skipped result), or leave it running for the caller."""
        step = item.step
        action = _action(step.action)
        if action.waits_for_scc and not action.read_only and not self.dry_run:  # evidence is gated in evidence()
            self.schedule.settle()
            verification = self.request.verifying.result()
            if not verification.allows_destructive:
                return held(step, verification, action.held_means)
        if item.running is not None:
            if not any(_action(q.step.action).needs_evidence_first for q in rest):
                return StillRunning(step.action, item.running)  # nothing destructive waits for it
            self.schedule.settle()
            return item.running.result()
        if self.reads(step):
            return self.evidence(step)  # added late (escalation): still gated
        return self.runner.run_step(self.ctx, step)

    def escalate(self, queue: deque[_Queued]) -> None:
        """Append a delete, with evidence ahead of it unless already on the way."""
        rest = list(queue)
        steps = with_evidence_first(
            [q.step for q in rest] + [default_step(registry.ESCALATION)], self.runner.rules.capture_before_destructive
        )
        known = {id(q.step): q for q in rest}
        queue.clear()
        queue.extend(known.get(id(s)) or _Queued(s) for s in steps)

    def evidence(self, step: PlannedStep) -> StepOutcome:
        """An evidence step, started behind the isolating writes (and, on a cold instance, run after them), once SCC
        vouched for the message: never exec or read logs in a container a forger chose."""
        self.schedule.warm()
        verification = self.request.verifying.result()
        if not verification.allows_evidence(self.dry_run):
            result = held(step, verification, _action(step.action).held_means, self.dry_run)
            self.ctx.evidence.notes.append(f"evidence not captured: {result.reason}")
            return StepOutcome(result, retry=False)
        earlier = progress(self.request.finding, verification)
        if earlier is not None and earlier.finished(step.action) and not self.dry_run:
            # A redelivery resumes what is missing and repeats nothing that is done (an exec is seen by the attacker).
            why = "done by an earlier delivery of this occurrence (SCC's marks record it): not repeated"
            self.ctx.evidence.notes.append(f"evidence not captured again: {why}")
            skipped = ActionResult(action=step.action, status=Status.SKIPPED, reason=why, details={"earlier": True})
            return StepOutcome(skipped, retry=False)
        # Evidence is read where SCC says the shell ran (its record's container and connection), not where the
        # message says: the same context otherwise, so the pod it is bound to is the one containment acted on.
        finding = vouched(self.request.finding, verification)
        ctx = replace(self.ctx, finding=finding, target=vouched_target(self.ctx.target, finding))
        return self.schedule.when_warm(self.runner.run_step, ctx, step)
