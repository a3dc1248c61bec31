"""The pipeline: delivery → finding → triage → preflight → contain ∥ investigate → reconcile → write back → record.

Errors: invalid input is permanent (recorded, acknowledged, never retried); a transient failure is recorded and then
raised so Pub/Sub redelivers; every step is idempotent because delivery is at-least-once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from responder.config import Settings
from responder.containment import cluster_tier
from responder.containment import identity as identity_mod
from responder.containment.context import Evidence, Prefetched
from responder.containment.keys import FINDING_ANNOTATION
from responder.containment.netpol import ensure_deny_all
from responder.containment.plan import Plan
from responder.containment.progress import converged, released, touched_before
from responder.containment.recall import Recall, written_marks
from responder.containment.results import ActionResult, Status
from responder.containment.runner import (
    Runner,
    RunRules,
    connect,
    isolating,
    read_pod,
    undone_by_rollback,
)
from responder.containment.scheduling import Schedule, resolved
from responder.containment.undo import identity_left, undo_quarantine
from responder.containment.verification import Verification, Vouch, fill_gaps, verify, vouched
from responder.coverage import Coverage, unvouched
from responder.errors import PermanentError, TransientError
from responder.event import Event
from responder.intake.envelope import Delivery
from responder.intake.findings import Finding, to_finding
from responder.intake.memo import Decoded
from responder.intake.notification import parse_notification
from responder.intake.sanitize import clean
from responder.intake.triage import Verdict, triage
from responder.investigation.investigator import Investigation, Investigator
from responder.policy.rules import PolicyEngine
from responder.ports import (
    ClusterConnector,
    Connection,
    FindingsAPI,
    KubeRead,
    LogsAPI,
    Publisher,
)
from responder.report.outcome import Outcome, Settlement, not_contained_prefix, rejected, settle
from responder.report.record import (
    DecisionRecord,
    DeliveryInfo,
    contained,
    decide,
    timed,
    verification_info,
)
from responder.report.writeback import HANDLED_MARK, notify, write_back
from responder.startup import ImportGate


@dataclass
class Dependencies:
    """The outside world, as the composition root wired it. ``None`` means not available here."""

    settings: Settings
    policy: PolicyEngine
    connector: ClusterConnector | None = None
    logs: LogsAPI | None = None
    findings_api: FindingsAPI | None = None
    publisher: Publisher | None = None
    gate: ImportGate | None = None  # a cold instance's SDK loads wait for its first containment's writes
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Settled:
    """Containment over and reconciled with SCC's answer: what the record reports."""

    plan: Plan
    verification: Verification
    results: list[ActionResult]  # what was done to the workload (and a rollback of it)
    retry: bool
    contained_at: float | None  # time.monotonic() when the first containing write was accepted


class Responder:
    """Handles deliveries. One instance per process; thread-safe (no per-event state on self)."""

    def __init__(self, deps: Dependencies, max_workers: int = 32) -> None:
        self.deps = deps
        # Two pools so nothing waits on work queued behind itself: `coordinators` run whole investigations (which
        # wait on their branches); `workers` run leaf calls only (branches, prefetches, concurrent writes).
        self.workers = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rsr-io")
        self.coordinators = ThreadPoolExecutor(max_workers=max(4, max_workers // 2), thread_name_prefix="rsr-inv")
        self.investigator = Investigator(
            deps.logs,
            deps.settings.enrichment_timeout_s,
            self.workers,
            log_window_min=deps.policy.defaults.log_window_min,
        )
        defaults = deps.policy.defaults
        rules = RunRules(
            budget_namespace=deps.settings.budget_namespace,
            budget_max=defaults.budget.max_actions,
            budget_window_s=defaults.budget.window_s,
            netpol_enforcement=deps.settings.netpol_enforcement,
            capture_before_destructive=defaults.capture_before_destructive,
            process_capture=deps.settings.process_capture,
        )
        self.runner = Runner(self.workers, self.coordinators, rules, deps.clock)
        self.coverage = Coverage.of(deps.settings, deps.findings_api, defaults.verify_finding, deps.gate)
        self.recall = Recall()  # the findings this instance finished, and what SCC told it of each
        self.decoded = Decoded()  # what it decoded lately: a redelivery's bytes are decoded once

    # ------------------------------------------------------------------------------------------------- entry
    def respond(self, delivery: Delivery) -> Outcome:
        """Handle one delivery; never raises for input problems (the record says why).

        The pipeline, in order; each stage either hands the event on or ends it with its outcome.
        """
        started = time.monotonic()
        event = self._intake(delivery)
        if isinstance(event, Outcome):
            outcome = event  # invalid input, or nothing to do for this finding
        else:
            schedule = Schedule(self.deps.gate)
            try:
                outcome = (
                    self._fill_gaps(event)
                    or self.coverage.outside_fleet(event)  # before any cluster is reached: coverage.py says why
                    or self._preflight(event, schedule)
                    or self._contain(event, schedule)  # contain ∥ investigate, reconcile, write back, report
                )
            except TransientError as exc:
                why = f"transient failure before containment, will retry on redelivery: {clean(exc, 200)}"
                outcome = event.outcome(event.record(Verdict.ACT, "transient", why, outcome="retry"))
            finally:
                # Whatever happened, what was queued behind the writes must not wait forever, and this instance's
                # containment no longer needs the CPU to itself.
                schedule.settle()
        outcome.record = timed(outcome.record, started, outcome.contained_at)
        return outcome

    # ------------------------------------------------------------------------------------------------ stages
    def _intake(self, delivery: Delivery) -> Event | Outcome:
        """Intake and triage (no I/O but a canary's SCC read): the event to act on, or the outcome that ends it here."""
        info = DeliveryInfo(
            shape=delivery.shape,
            event_id=delivery.event_id,
            message_id=delivery.message_id,
            delivery_attempt=delivery.delivery_attempt,
        )
        try:
            finding = self.decoded.finding(delivery.payload, _decode)
        except PermanentError as exc:
            return rejected(exc, info)
        defaults = self.deps.policy.defaults
        canary = self.coverage.canary(finding, info, defaults.mode)  # before triage: it may name no pod at all
        if canary is not None:
            return canary
        verdict = triage(finding, defaults.categories)
        event = Event(finding, verdict, info, defaults.mode, list(finding.warnings))
        if verdict.target is None:
            return event.outcome(event.record(verdict.verdict, verdict.code, verdict.reason))
        event_time = finding.event_time.isoformat() if finding.event_time else ""
        if event_time and finding.security_marks.get(HANDLED_MARK) == event_time:
            why = "already handled this occurrence (our own security-marks write-back)"
            return event.outcome(event.record(Verdict.IGNORE, "own_writeback", why))
        return event

    def _fill_gaps(self, event: Event) -> Outcome | None:
        """Ask SCC for what the message lacks (its event time, its severity); stop when SCC refutes the message or
        cannot supply what it lacks."""
        filled = fill_gaps(
            self.deps.findings_api, event.finding, event.target, self.deps.policy.defaults.verify_finding
        )
        if filled.warning:
            event.warnings.append(filled.warning)
        if filled.stop and filled.answer is not None:
            return unvouched(event, filled.answer)
        event.finding, event.scc_answer = filled.finding, filled.answer
        return None

    def _plan(self, event: Event) -> Plan:
        """The event's plan, computed once for the labels it is matched on (the pod's, once read)."""
        labels = (event.labels, event.namespace_labels())
        if event.plan is None or event.planned_from != labels:
            event.plan, event.planned_from = self.deps.policy.plan(event.finding, event.target, *labels), labels
        return event.plan

    # --------------------------------------------------------------------------------------------- preflight
    def _preflight(self, event: Event, schedule: Schedule) -> Outcome | None:
        """Connect, read the pod with round one of isolation, and stop here when nothing is left to do.

        A redelivery (or a finding this instance already handled) asks SCC first, alongside the pod and policy
        reads: only SCC's marks can say that an earlier delivery finished the job (see ``containment.progress``).
        Anything else is presumed new, and round one of isolation goes out with the pod read.
        """
        suspect = self.recall.seen(event.finding.name) or (event.delivery.delivery_attempt or 0) > 1
        event.connection, event.no_cluster_why, event.blocker = connect(self.deps.connector, event.target)
        if event.connection is None:
            schedule.warm()  # nothing to write here: the investigation may load what it needs now
            return None
        if suspect:
            return self._recheck(event, event.connection, schedule)
        return self._round_one(event, event.connection, schedule)

    def _recheck(self, event: Event, connection: Connection, schedule: Schedule) -> Outcome | None:
        """SCC's record, the pod, the namespace's policies and the quarantined identities, read at once: a converged
        redelivery costs these four reads and no write (three on the instance that finished the event, which holds
        SCC's record: ``containment.recall``); anything else goes on to round one (which reuses them)."""
        target, kube = event.target, connection.kube
        recalled = self.recall.answer(event.finding, target)  # this instance finished it: what SCC told it then
        if recalled is None:
            schedule.warm()  # SCC's answer is needed now, ahead of any write: its client may load at once
        asking = None if recalled else self.workers.submit(self._ask, event)
        own = self.deps.settings.budget_namespace
        event.pod_read_at = time.monotonic()
        # One round from this thread, no hand-offs: about half the CPU of a round spread over worker threads.
        pod_read, policies, event.identities_read = kube.read_together(
            [
                KubeRead("get_pod", (target.namespace, target.pod)),
                KubeRead("list_network_policies", (target.namespace,)),
                KubeRead("get_config_map", (own, identity_mod.IDENTITIES)),
            ]
        )
        event.prefetched = Prefetched(policies=policies)
        event.pod, event.blocker = read_pod(connection, target, pod_read)
        event.scc_answer = recalled if asking is None else asking.result()
        ended = self._judge_progress(event)
        if ended is None and recalled is not None:
            event.scc_answer = self._ask(event)  # what this instance remembers does not settle it: SCC's word now
            ended = self._judge_progress(event)
        return ended or self._round_one(event, connection, schedule)

    def _ask(self, event: Event) -> Verification:
        """SCC's answer about this message, asked now."""
        return verify(self.deps.findings_api, event.finding, event.target, self.deps.policy.defaults.verify_finding)

    def _round_one(self, event: Event, connection: Connection, schedule: Schedule) -> Outcome | None:
        """Round one of isolation: the pod read, the namespace's policies, and the deny-all policy when the finding's
        own labels already tell that this pod will be isolated in enforce mode. The deny-all selects only
        quarantine-labelled pods, so creating it early changes nothing for any other pod."""
        target, kube = event.target, connection.kube
        if event.pod is None and event.blocker is None and event.pod_read is None:
            event.pod_read_at = time.monotonic()
            event.pod_read = self.workers.submit(kube.get_pod, target.namespace, target.pod)
        if event.namespace_read is None:
            event.namespace_read = self.workers.submit(kube.get_namespace, target.namespace)
        # From the finding's labels while the pod read is under way (no exemption known yet: the deny-all is inert).
        forecast = self.deps.policy.plan(event.finding, target, event.labels)
        if forecast.dry_run:
            schedule.warm()  # a dry run writes nothing: no write to keep the CPU for
        listed = event.prefetched.policies or self.workers.submit(kube.list_network_policies, target.namespace)
        ensuring = self.workers.submit(ensure_deny_all, kube, target.namespace, listed) if isolating(forecast) else None
        event.prefetched = Prefetched(policies=listed, deny_all=ensuring, namespace=event.namespace_read)
        if event.pod is not None or event.blocker is not None or event.pod_read is None:
            return None
        event.pod, event.blocker = read_pod(connection, target, event.pod_read)
        if event.scc_answer is None and event.pod is not None and touched_before(event.finding.name, event.pod):
            # The pod says a delivery of this finding (or a release) came before: SCC's marks decide whether anything
            # is left to do, so they are read before any write that is not inert (the deny-all above is).
            schedule.warm()
            event.scc_answer = self._ask(event)
            return self._judge_progress(event)
        return None

    def _judge_progress(self, event: Event) -> Outcome | None:
        """With SCC's answer in hand before containment: the outcome that ends this delivery here, or None.

        Refuted: an earlier delivery's isolation of the pod (fail safe while SCC could not answer) is rolled back.
        Vouched: SCC's marks say the pod was released after this occurrence, or that an earlier delivery converged
        and the cluster still shows it. Anything else (SCC unreachable, progress missing or decayed) is handled in
        full, and the answer is reused rather than asked again.
        """
        answer = event.scc_answer
        if answer is None:
            return None
        if answer.vouch is Vouch.REFUTED:
            return self._refuted(event, answer)
        if answer.vouch is not Vouch.VERIFIED:
            return None
        event.finding = vouched(event.finding, answer)
        why = released(event.finding, answer, self.deps.clock())
        if why is not None:
            return event.outcome(event.record(Verdict.IGNORE, "released", why, verification=verification_info(answer)))
        gone = event.pod is None and event.blocker is not None and event.blocker.gone
        if event.pod is None and not gone:
            return None  # the pod could not be read: nothing can be judged, the full path retries what failed
        why = converged(event.finding, answer, event.pod, event.prefetched.listed_policies())
        own, pod, connection = self.deps.settings.budget_namespace, event.pod, event.connection
        if why is None or (
            pod
            and connection
            and (
                not identity_mod.holds(connection.kube, own, pod, event.identities_read)
                or cluster_tier.reopened_now(connection.kube, pod)
            )
        ):
            return None  # its identity's entry is gone, or a cluster-wide allow reopens it: handled in full
        self.recall.remember(event.finding.name, answer)
        plan = self._plan(event)
        record = event.record(Verdict.IGNORE, "duplicate", why, rule=plan.rule, verification=verification_info(answer))
        return event.outcome(record, plan=plan)

    def _refuted(self, event: Event, answer: Verification) -> Outcome:
        """SCC refutes the message before this delivery wrote anything to the pod: undo what an earlier delivery of
        it did (kept, fail safe, while SCC could not answer), and reject it."""
        plan = self._plan(event)
        undone = _rollback(event, plan, [], self.deps.settings.budget_namespace)
        actions = [undone] if undone is not None else []
        settlement = settle(plan, answer, actions, retry=False, profile=event.profile)
        record = event.record(
            Verdict.REJECT,
            "suspected_forgery",
            answer.reason,
            actions=actions,
            verification=verification_info(answer),
            outcome=settlement.outcome,
        )
        return event.outcome(record)

    # ---------------------------------------------------------------------------------------------- contain
    def _contain(self, event: Event, schedule: Schedule) -> Outcome:
        """Contain ∥ investigate, then reconcile with SCC's answer, settle the outcome, tell the owners and SCC.

        Not converged. SCC is asked whether it vouches for the message (destructive steps and write-backs wait for
        its answer, the isolation does not). The investigation starts, but its reads (and, on a cold instance, its
        SDK loads) go out behind the isolating writes, not ahead of or alongside them (see :class:`Schedule`). The
        pod's owner chain is read once, for both the investigation and the evidence capture.
        """
        verifying = self._verify(event, schedule)
        investigating = self._investigate(event, schedule)
        plan, evidence = self._plan(event), Evidence()
        containment = self.runner.contain(event.containment(plan, verifying, evidence, schedule))
        schedule.writes_done()  # the writes are done, or never came: what was queued behind them starts now
        contained_at = time.monotonic() if contained(containment.entries) else None
        schedule.warm()  # and on a cold instance, the verification and the investigation may load their SDKs now
        verification = verifying.result()
        results, retry = containment.join()
        if contained_at is None and contained(results):  # a delete that waited for SCC's word
            contained_at = time.monotonic()
        results, retry = self._reconcile(event, plan, verification, results, retry)
        event.finding = vouched(event.finding, verification)  # the report shows what SCC vouches for
        settled = Settled(plan, verification, results, retry, contained_at)
        return self._report(event, settled, investigating.result(), evidence)

    def _verify(self, event: Event, schedule: Schedule) -> Future[Verification]:
        """SCC's answer: the one it already gave (the message lacked fields), else asked behind the isolating writes."""
        if event.scc_answer is not None:
            return resolved(event.scc_answer)
        api, enabled = self.deps.findings_api, self.deps.policy.defaults.verify_finding
        return schedule.later(self.workers, verify, api, event.finding, event.target, enabled)

    def _investigate(self, event: Event, schedule: Schedule) -> Future[Investigation]:
        """Start the investigation behind the isolating writes, sharing the pod read with evidence capture."""
        pod_facts = None
        if event.connection is not None and event.pod is not None and not schedule.cold:
            read = event.pod_read if event.pod_read is not None else resolved(event.pod)
            pod_facts = schedule.later(
                self.workers, self.investigator.pod_facts, event.connection.kube, event.target, read, event.pod_read_at
            )
            event.prefetched = replace(event.prefetched, pod_facts=pod_facts)
        return schedule.later(
            self.coordinators,
            schedule.when_warm,
            self.investigator.investigate,
            event.finding,
            event.target,
            event.connection,
            event.no_cluster_why,
            pod_facts,
        )

    def _reconcile(
        self, event: Event, plan: Plan, verification: Verification, results: list[ActionResult], retry: bool
    ) -> tuple[list[ActionResult], bool]:
        """Keep, undo or hold what containment did, by SCC's answer."""
        if verification.vouch is Vouch.REFUTED:
            undone = _rollback(event, plan, results, self.deps.settings.budget_namespace)
            if undone is not None:
                return [*results, undone], retry or undone.status is Status.FAILED
        elif verification.vouch is Vouch.UNREACHABLE and not plan.dry_run and plan.steps:
            if any(r.status is Status.SUCCEEDED for r in results):
                # Fail safe: the isolation stays, and the record says it rests on an unconfirmed message.
                event.warnings.append(
                    f"SCC could not confirm the message ({clean(verification.reason, 200)}): the isolation is kept "
                    "(fail safe); nothing destructive ran and nothing was written back"
                )
            # Only "vouches" and "refutes" are answers: anything else (a 403, a 5xx, a timeout, a name the adapter
            # refuses) is a failure. Redelivery verifies again: it then finishes the job (what waited for SCC) or, if
            # SCC refutes the message, undoes the isolation. A failure that will not heal (403 on SCC) ends in the
            # dead letter, visible, never acknowledged as handled.
            return results, True
        return results, retry

    def _report(self, event: Event, settled: Settled, investigation: Investigation, evidence: Evidence) -> Outcome:
        """Settle the outcome (the one rule, ``report.outcome.settle``), tell the owners, record the progress in
        SCC's marks, and write the decision record.

        The owners' report goes out first (it is built from the settled outcome, so it says what a person must do);
        the marks last, with the outcome this delivery ends in, so that they never claim more than happened. A report
        that could not reach the owners of an uncontained pod, or marks that could not be written, make the delivery
        a retry: nobody would otherwise be told, or the next delivery could not tell what this one did.
        """
        plan, verification, results = settled.plan, settled.verification, settled.results
        decided, code, reason = decide(event.verdict, plan, verification)
        settlement = settle(plan, verification, results, settled.retry, profile=event.profile)
        not_contained = not_contained_prefix(event.profile)

        def record(writebacks: list[ActionResult], ends: Settlement) -> DecisionRecord:
            return event.record(
                decided,
                code,
                f"{not_contained}{ends.why}" if ends.outcome == "not_contained" and ends.why else reason,
                actions=results,
                writebacks=writebacks,
                rule=plan.rule,
                skipped=list(plan.skipped),
                enrichment=investigation.summary(),
                verification=verification_info(verification),
                outcome=ends.outcome,
                **({"left": ends.why} if ends.outcome == "retry" and ends.why else {}),
            )

        outcome = event.outcome(
            record([], settlement),
            plan=plan,
            investigation=investigation,
            evidence=evidence,
            contained_at=settled.contained_at if decided is Verdict.ACT else None,
        )
        if verification.vouch is Vouch.REFUTED:
            return outcome  # owners are not paged with a forger's content, nor is SCC's record of the name touched
        deps = self.deps
        notified = notify(deps.publisher, deps.policy.defaults, outcome, results)
        if settlement.outcome == "not_contained" and _failed(notified):
            settlement = Settlement("retry", f"the owners' report did not go out: {notified[0].reason}")
        pod_uid = event.pod.uid if event.pod is not None else None
        marked = write_back(
            deps.findings_api,
            deps.policy.defaults,
            deps.clock,
            event.finding,
            plan,
            results,
            verification,
            settlement.outcome,
            pod_uid,
        )
        if settlement.outcome != "retry" and _failed([m for m in marked if m.action == "mark"]):
            settlement = Settlement("retry", "the progress marks were not written to SCC: the next delivery redoes")
        outcome.record = record(marked + notified, settlement)
        if settlement.outcome == "done" and decided is Verdict.ACT and not plan.dry_run:
            self.recall.remember(event.finding.name, verification, written_marks(marked))
        return outcome


def _rollback(event: Event, plan: Plan, results: list[ActionResult], own_namespace: str) -> ActionResult | None:
    """Undo the refuted message's quarantine of the pod, whichever delivery put it there (this one's ``results``, or
    an earlier one's, kept fail safe while SCC could not answer: the pod's record names this finding), and the
    identity quarantine with it; None when there is nothing of it to undo, or nothing may be written (a dry run, no
    cluster)."""
    pod = event.pod
    if event.connection is None or pod is None or plan.dry_run:
        return None
    earlier = pod.annotations.get(FINDING_ANNOTATION) == event.finding.name
    did = any(r.status is Status.SUCCEEDED and undone_by_rollback(r.action) for r in results)
    if not earlier and not did and not identity_left(event.connection.kube, own_namespace, pod):
        return None
    return undo_quarantine(event.connection.kube, pod, event.finding.name, own_namespace)


def _failed(results: list[ActionResult]) -> bool:
    return any(r.status is Status.FAILED for r in results)


def _decode(payload: bytes) -> Finding:
    return to_finding(parse_notification(payload))
