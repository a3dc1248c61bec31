"""The pipeline: delivery → finding → triage → plan → contain ∥ investigate → report → one decision record.

Errors: invalid input is permanent (recorded, acknowledged, never retried); a transient failure is recorded and then
raised so Pub/Sub redelivers; every step is idempotent because delivery is at-least-once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from responder.config import Settings
from responder.containment.base import ActionResult, Evidence, Prefetched, Status, WritesOut, done, now
from responder.containment.connect import connect
from responder.containment.duplicate import already_contained, carries_quarantine, released
from responder.containment.isolate import ensure_deny_all
from responder.containment.plan import Plan
from responder.containment.runner import Blocker, Runner, RunRules, Slot, crashed, read_pod
from responder.containment.undo import undo_quarantine
from responder.containment.verification import Verification, Vouch, fill_gaps, verify
from responder.errors import (
    InvalidEnvelope,
    InvalidFinding,
    PermanentError,
    ResponderError,
    TransientError,
)
from responder.intake.envelope import Delivery
from responder.intake.findings import Finding, to_finding
from responder.intake.notification import parse_notification
from responder.intake.sanitize import clean
from responder.intake.triage import Target, Triage, Verdict, triage
from responder.investigation.investigator import Investigator
from responder.policy.rules import PolicyEngine
from responder.ports import (
    ClusterConnector,
    Connection,
    FindingsAPI,
    ImportGate,
    LogsAPI,
    NetworkPolicyView,
    PodView,
    Publisher,
)
from responder.report.outcome import Outcome
from responder.report.record import (
    DecisionRecord,
    DeliveryInfo,
    PodRef,
    VerificationInfo,
    contained,
    make_record,
    timed,
)
from responder.report.writeback import HANDLED_MARK, notify, write_back

T = TypeVar("T")
HANDLED_MEMORY = 4096  # finding names remembered per instance (a few hundred KiB at most)


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
class RoundOne:
    """What an event has once round one is back: the cluster (or why not), the pod (or what blocks containment),
    and the reads and writes that went out with the pod read."""

    connection: Connection | None
    unavailable: str | None  # why the investigation has no cluster, when it has none
    blocker: Blocker | None
    pod: PodView | None
    pod_read: Future[PodView] | None  # the pod read itself, when it went out in round one
    pod_read_at: float | None  # when it went out (time.monotonic), for the pod branch's duration
    prefetched: Prefetched


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
        self.runner = Runner(
            self.workers, self.coordinators, rules, deps.clock, settle=self._warm, when_warm=self._when_warm
        )
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._handled_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------- entry
    def respond(self, delivery: Delivery) -> Outcome:
        """Handle one delivery; never raises for input problems (the record says why)."""
        started = time.monotonic()
        info = DeliveryInfo(
            shape=delivery.shape,
            event_id=delivery.event_id,
            message_id=delivery.message_id,
            delivery_attempt=delivery.delivery_attempt,
        )
        try:
            finding = to_finding(parse_notification(delivery.payload))
        except PermanentError as exc:
            record = make_record(Verdict.REJECT, _code(exc), clean(exc, 300), delivery=info)
            return Outcome(record=timed(record, started))
        outcome = self._respond_to(finding, info)
        outcome.record = timed(outcome.record, started, outcome.contained_at)
        return outcome

    @staticmethod
    def reject_envelope(exc: InvalidEnvelope, shape: str | None = None) -> Outcome:
        """The record for a delivery that never became a notification."""
        return Outcome(
            record=make_record(Verdict.REJECT, "bad_envelope", clean(exc, 300), delivery=DeliveryInfo(shape=shape))
        )

    # ------------------------------------------------------------------------------------------------ stages
    def _respond_to(self, finding: Finding, info: DeliveryInfo) -> Outcome:
        engine = self.deps.policy
        verdict = triage(finding, engine.defaults.categories)
        common: dict[str, Any] = {
            "finding": finding.name,
            "category": finding.category,
            "delivery": info,
            "warnings": list(finding.warnings),
            "mode": engine.defaults.mode,
        }
        if verdict.target is None:
            record = make_record(verdict.verdict, verdict.code, verdict.reason, **common)
            return Outcome(record=record, finding=finding, triage=verdict)
        target = verdict.target
        common |= {"cluster": target.cluster.path, "pod": PodRef(namespace=target.namespace, name=target.pod)}
        event_time = finding.event_time.isoformat() if finding.event_time else ""
        if event_time and finding.security_marks.get(HANDLED_MARK) == event_time:
            record = make_record(
                Verdict.IGNORE,
                "own_writeback",
                "already handled this occurrence (our own security-marks write-back)",
                **common,
            )
            return Outcome(record=record, finding=finding, triage=verdict)

        try:
            return self._act(finding, verdict, target, common)
        except TransientError as exc:
            record = make_record(
                Verdict.ACT,
                "transient",
                f"transient failure before containment, will retry on redelivery: {clean(exc, 200)}",
                outcome="retry",
                **common,
            )
            return Outcome(record=record, finding=finding, triage=verdict)

    def _act(self, finding: Finding, verdict: Triage, target: Target, common: dict[str, Any]) -> Outcome:
        try:
            filled = fill_gaps(self.deps.findings_api, finding, target, self.deps.policy.defaults.verify_finding)
            if filled.warning:
                common["warnings"] = [*common["warnings"], filled.warning]
            if filled.stop and filled.answer is not None:  # refuted, or SCC could not supply what the message lacks
                forged = filled.answer.vouch is Vouch.REFUTED
                record = make_record(
                    Verdict.REJECT if forged else Verdict.ACT,
                    "suspected_forgery" if forged else "unverified",
                    filled.answer.reason,
                    verification=_verification_info(filled.answer),
                    outcome="done" if forged else "retry",
                    **common,
                )
                return Outcome(record=record, finding=finding, triage=verdict)
            return self._handle(filled.finding, verdict, target, common, filled.answer)
        finally:
            self._warm()  # whatever happened, this instance's containment no longer needs the CPU to itself

    def _warm(self) -> None:
        """Let the SDK loads that a cold instance held back go ahead (see :class:`responder.ports.ImportGate`)."""
        if self.deps.gate is not None:
            self.deps.gate.open()

    def _when_warm(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` once the instance is warm (at once, unless this is a cold instance's first containment)."""
        if self.deps.gate is not None:
            self.deps.gate.wait()
        return fn(*args)

    def _handle(
        self,
        finding: Finding,
        verdict: Triage,
        target: Target,
        common: dict[str, Any],
        asked: Verification | None = None,
    ) -> Outcome:
        engine = self.deps.policy
        info: DeliveryInfo = common["delivery"]
        # A redelivery (or a finding this instance already handled) is checked against the cluster before anything
        # else starts: when its containment still holds, that check is the whole event. Anything else is presumed new,
        # and round one of isolation goes out with the pod read.
        suspect = self._seen(finding.name) or (info.delivery_attempt or 0) > 1
        connection, unavailable, blocker = connect(self.deps.connector, target)
        if connection is None:
            self._warm()  # nothing to write here: the investigation may load what it needs now
        pod: PodView | None = None
        pod_read: Future[PodView] | None = None
        pod_read_at: float | None = None
        listed: Future[list[NetworkPolicyView]] | None = None
        if suspect and connection is not None:
            # One read at a time, in this thread: the pod first, and the policies only if the pod still carries this
            # finding's quarantine. A duplicate then costs two plain reads and no thread hand-off; anything else
            # costs no more rounds than before (round one still goes out next, with the policies in it).
            pod, blocker = read_pod(connection, target)
            if pod is not None and (gone := self._released(finding, verdict, pod, common)) is not None:
                return gone
            if pod is not None and carries_quarantine(finding.name, pod):
                listed = now(connection.kube.list_network_policies, target.namespace)
                duplicate = self._duplicate(finding, verdict, target, pod, listed, common)
                if duplicate is not None:
                    return duplicate
        prefetched = Prefetched()
        if connection is not None:
            # Round one of isolation: the pod read, the namespace's policies, and the deny-all policy when the
            # finding's own labels already tell that this pod will be isolated in enforce mode. The deny-all selects
            # only quarantine-labelled pods, so creating it early changes nothing for any other pod.
            if pod is None and blocker is None:
                pod_read_at = time.monotonic()
                pod_read = self.workers.submit(connection.kube.get_pod, target.namespace, target.pod)
            early = engine.plan(finding, target, pod.labels if pod else finding.pod_labels)
            isolating = not early.dry_run and any(s.action == "isolate" for s in early.steps)
            if early.dry_run:
                self._warm()  # a dry run writes nothing: no write to keep the CPU for
            listed = listed or self.workers.submit(connection.kube.list_network_policies, target.namespace)
            ensuring = (
                self.workers.submit(ensure_deny_all, connection.kube, target.namespace, listed) if isolating else None
            )
            prefetched = Prefetched(policies=listed, deny_all=ensuring)
            if pod_read is not None:
                pod, blocker = read_pod(connection, target, pod_read)
                if pod is not None and (gone := self._released(finding, verdict, pod, common)) is not None:
                    return gone  # the deny-all ensured meanwhile selects only quarantined pods: nothing changed
                duplicate = self._duplicate(finding, verdict, target, pod, prefetched.policies, common)
                if duplicate is not None:
                    return duplicate  # recognised by the pod read: no investigation, capture or log search started
        # Not a duplicate. SCC is asked whether it vouches for the message (destructive steps and write-backs wait for
        # its answer, the isolation does not). The investigation starts, but its reads (and, on a cold instance, its
        # SDK loads) go out behind the isolating writes, not ahead of or alongside them (ActionContext.writes_out).
        # The pod's owner chain is read once, for both the investigation and the evidence capture.
        start = RoundOne(connection, unavailable, blocker, pod, pod_read, pod_read_at, prefetched)
        writes_out = WritesOut()
        try:
            return self._contain(finding, verdict, target, common, start, writes_out, asked)
        finally:
            writes_out.open()  # whatever happened, what was queued behind the writes must not wait forever

    def _contain(
        self,
        finding: Finding,
        verdict: Triage,
        target: Target,
        common: dict[str, Any],
        start: RoundOne,
        writes_out: WritesOut,
        asked: Verification | None = None,
    ) -> Outcome:
        connection, pod, blocker, prefetched = start.connection, start.pod, start.blocker, start.prefetched
        engine = self.deps.policy
        enabled = engine.defaults.verify_finding
        verifying = (
            done(asked)
            if asked is not None
            else writes_out.later(self.workers, verify, self.deps.findings_api, finding, target, enabled)
        )
        cold = self.deps.gate is not None and not self.deps.gate.is_open
        pod_facts = None
        if connection is not None and pod is not None and not cold:
            read = start.pod_read if start.pod_read is not None else done(pod)
            pod_facts = writes_out.later(
                self.workers, self.investigator.pod_facts, connection.kube, target, read, start.pod_read_at
            )
            prefetched = Prefetched(policies=prefetched.policies, deny_all=prefetched.deny_all, pod_facts=pod_facts)
        investigation_future = writes_out.later(
            self.coordinators,
            self._when_warm,
            self.investigator.investigate,
            finding,
            target,
            connection,
            start.unavailable,
            pod_facts,
        )
        labels = pod.labels if pod else finding.pod_labels
        plan = engine.plan(finding, target, labels)
        slots: list[Slot] = []
        evidence = Evidence()
        try:
            retry = self.runner.contain(
                finding, target, plan, connection, pod, blocker, prefetched, verifying, slots, evidence, writes_out
            )
        except Exception as exc:  # a bug mid-containment: keep what was done, say what broke, ask for redelivery
            slots.append(crashed("contain", exc, plan.dry_run))
            retry = True
        writes_out.open()  # the writes are done, or never came: what was queued behind them starts now
        contained_at = time.monotonic() if contained(slots) else None
        self._warm()  # and on a cold instance, the verification and the investigation may load their SDKs now
        verification = verifying.result()
        written = [slot for slot in slots if isinstance(slot, ActionResult)]
        # Write back as soon as the last write to the cluster is done: evidence capture and the investigation may
        # still be reading meanwhile (the marks record what was done to the workload, which reads do not change).
        write_back = self.workers.submit(self._write_back, finding, plan, written, verification)
        results: list[ActionResult] = []
        for slot in slots:
            if isinstance(slot, ActionResult):
                results.append(slot)
            else:
                result, transient = slot.result()
                results.append(result)
                retry = retry or transient
        if contained_at is None and contained(results):  # a delete that waited for SCC's word
            contained_at = time.monotonic()
        if verification.vouch is Vouch.REFUTED and connection is not None and pod is not None and not plan.dry_run:
            if any(r.action in ("isolate", "label") and r.status is Status.SUCCEEDED for r in results):
                undone = undo_quarantine(connection.kube, pod, finding.name)
                results.append(undone)
                retry = retry or undone.status is Status.FAILED
        elif verification.vouch is Vouch.UNREACHABLE and not plan.dry_run and plan.steps:
            wrote = any(r.status is Status.SUCCEEDED for r in results)
            if wrote:  # fail safe: the isolation stays, and the record says it rests on an unconfirmed message
                common["warnings"] = [
                    *common["warnings"],
                    f"SCC could not confirm the message ({clean(verification.reason, 200)}): the isolation is kept "
                    "(fail safe); nothing destructive ran and nothing was written back",
                ]
            # Only "vouches" and "refutes" are answers: anything else (a 403, a 5xx, a timeout, a name the adapter
            # refuses) is a failure. Redelivery verifies again: it then finishes the job (what waited for SCC) or, if
            # SCC refutes the message, undoes the isolation. A failure that will not heal (403 on SCC) ends in the
            # dead letter, visible, never acknowledged as handled.
            retry = True
        results += write_back.result()
        investigation = investigation_future.result()

        if verification.vouch is Vouch.REFUTED:
            decided, code, reason = Verdict.REJECT, "suspected_forgery", verification.reason
        elif not plan.steps and plan.hold:
            decided, code, reason = Verdict.IGNORE, plan.hold, plan.skipped[0] if plan.skipped else plan.hold
        else:
            decided, code, reason = Verdict.ACT, verdict.code, verdict.reason

        def record(actions: list[ActionResult]) -> DecisionRecord:
            return make_record(
                decided,
                code,
                reason,
                actions=actions,
                rule=plan.rule,
                skipped=list(plan.skipped),
                enrichment=investigation.summary(),
                verification=_verification_info(verification),
                outcome="retry" if retry else "done",
                **common,
            )

        if decided is Verdict.ACT and not retry and not plan.dry_run:
            self._remember(finding.name)
        outcome = Outcome(
            record=record(results),
            finding=finding,
            triage=verdict,
            plan=plan,
            investigation=investigation,
            evidence=evidence,
            contained_at=contained_at if decided is Verdict.ACT else None,
        )
        if verification.vouch is Vouch.REFUTED:
            return outcome  # owners are not paged with a forger's content; the ERROR record is the alert
        # The report is built from the complete outcome, so owners see every action; the publish result is then
        # added to the decision record (the report cannot contain its own delivery).
        notified = self._notify(outcome, results)
        if notified:
            outcome.record = record(results + notified)
        return outcome

    # ---------------------------------------------------------------------------------------------- duplicates
    def _seen(self, name: str | None) -> bool:
        with self._handled_lock:
            return bool(name) and name in self._handled

    def _remember(self, name: str | None) -> None:
        """Findings this instance contained, newest last (bounded): their redeliveries are checked first."""
        if not name:
            return
        with self._handled_lock:
            self._handled[name] = None
            self._handled.move_to_end(name)
            while len(self._handled) > HANDLED_MEMORY:
                self._handled.popitem(last=False)

    def _duplicate(
        self,
        finding: Finding,
        verdict: Triage,
        target: Target,
        pod: PodView | None,
        policies: Future[list[NetworkPolicyView]] | None,
        common: dict[str, Any],
    ) -> Outcome | None:
        """The outcome of a delivery whose containment already holds (one record, nothing else), or None."""
        if pod is None or policies is None:
            return None
        plan = self.deps.policy.plan(finding, target, pod.labels)
        if plan.dry_run or not plan.steps:
            return None
        try:
            listed = policies.result()
        except ResponderError:
            return None  # cannot tell: handle it in full, which reads (and retries) again
        reason = already_contained(finding.name, plan, pod, listed)
        if reason is None:
            return None
        self._remember(finding.name)
        record = make_record(Verdict.IGNORE, "duplicate", reason, rule=plan.rule, **common)
        return Outcome(record=record, finding=finding, triage=verdict, plan=plan)

    def _released(self, finding: Finding, verdict: Triage, pod: PodView, common: dict[str, Any]) -> Outcome | None:
        """The outcome of a delivery for a pod released after the finding's event (see :func:`released`), or None."""
        reason = released(finding, pod, self.deps.clock())
        if reason is None:
            return None
        record = make_record(Verdict.IGNORE, "released", reason, **common)
        return Outcome(record=record, finding=finding, triage=verdict)

    # ------------------------------------------------------------------------------------------------ report
    def _write_back(
        self, finding: Finding, plan: Plan, results: list[ActionResult], verification: Verification
    ) -> list[ActionResult]:
        deps = self.deps
        return write_back(deps.findings_api, deps.policy.defaults, deps.clock, finding, plan, results, verification)

    def _notify(self, outcome: Outcome, results: list[ActionResult]) -> list[ActionResult]:
        return notify(self.deps.publisher, self.deps.policy.defaults, outcome, results)


def _verification_info(verification: Verification) -> VerificationInfo:
    return VerificationInfo(
        status=verification.vouch.value, reason=verification.reason, mismatches=list(verification.mismatches)
    )


def _code(exc: Exception) -> str:
    if isinstance(exc, InvalidEnvelope):
        return "bad_envelope"
    if isinstance(exc, InvalidFinding):
        return "bad_finding"
    return "bad_input"
