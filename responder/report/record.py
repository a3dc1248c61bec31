"""The decision record: exactly one structured log line per handled event.

Cloud Logging parses a JSON line on stdout into a structured entry (``severity`` and ``message`` are special); the
other fields land in ``jsonPayload`` where alerting and dashboards can query them. The contract fields (``verdict``,
``reason``, ``finding``, ``cluster``, ``pod``, ``actions``, ``writebacks``) are always present, null (or empty) when
unknown. ``actions`` are what was done to the workload; ``writebacks`` what was told outside the cluster afterwards
(SCC's security marks, INACTIVE, the incident report), kept apart so that a count of cluster actions never counts
a mark.

The line is ASCII (everything else JSON-escaped): Cloud Logging reads the escapes, and an operator's terminal
running ``replay`` cannot be steered by a C1 control or a bidi override in any field. A record that cannot be
serialised at all (a bug that let unencodable text in) still becomes one line: :func:`fallback_line`. Either line
stays under Cloud Logging's entry limit whatever the record holds, saying what it left out (:mod:`.bounds`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from responder.containment import registry
from responder.containment.plan import Plan
from responder.containment.results import ActionResult, Status
from responder.containment.verification import Verification, Vouch
from responder.intake import categories
from responder.intake.categories import UNPROFILED, CategoryProfile
from responder.intake.sanitize import clean
from responder.intake.triage import Triage, Verdict
from responder.report import bounds

RecordOutcome = Literal["done", "retry", "not_contained"]


class PodRef(BaseModel):
    """``{"namespace", "name"}`` of the pod the finding names."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    namespace: str
    name: str


class DeliveryInfo(BaseModel):
    """Which delivery this record is about (for correlating redeliveries)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    shape: str | None = None
    event_id: str | None = None
    message_id: str | None = None
    delivery_attempt: int | None = None


class VerificationInfo(BaseModel):
    """What SCC's own record said about the message (see ``responder.containment.verification``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    status: str
    reason: str
    mismatches: list[str] = Field(default_factory=list)


class DecisionRecord(BaseModel):
    """One decision about one delivery."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    severity: str
    message: str
    verdict: Verdict
    code: str
    reason: str
    finding: str | None = None
    category: str | None = None
    cluster: str | None = None
    pod: PodRef | None = None
    actions: list[ActionResult] = Field(default_factory=list)
    writebacks: list[ActionResult] = Field(default_factory=list)
    mode: str | None = None
    rule: str | None = None
    skipped: list[str] = Field(default_factory=list)
    enrichment: dict[str, str] = Field(default_factory=dict)
    verification: VerificationInfo | None = None
    # done: contained (isolated with the live session cut, or deleted) or rightly left alone; retry: a failure that can
    # heal, raised so Pub/Sub redelivers; not_contained: terminal (acknowledged) with an attacker possibly still
    # connected, at ERROR, paging a person (the rule: responder.report.outcome).
    outcome: RecordOutcome = "done"
    left: str | None = None  # with outcome retry: what is left for a redelivery (or a replay) to finish
    warnings: list[str] = Field(default_factory=list)
    delivery: DeliveryInfo = DeliveryInfo()
    duration_ms: float | None = None
    # Receipt to the first containing write (isolate or delete) the cluster accepted, in ms; null when this delivery
    # contained nothing. The log-based metric of time to containment is a distribution of this field.
    contained_ms: float | None = None

    def to_json(self) -> str:
        """The log line (no newline, ASCII only), within Cloud Logging's entry limit (:mod:`.bounds`)."""
        return bounds.fit(self.model_dump_json(ensure_ascii=True))


def session_left_alive(actions: list[ActionResult], profile: CategoryProfile) -> bool:
    """Isolation was enforced but cannot cut an established connection, and no delete ended the pod: the reverse
    shell may still be connected (``live_session: report``, or an escalation the guards or budget refused). Never
    for a category whose threat is not a live session: its connections are not what the finding is about."""
    if not profile.live_session:
        return False
    isolated = any(_isolates(a.action) and not a.dry_run and a.details.get("session_survives") for a in actions)
    return isolated and not destroyed(actions)


def isolated(actions: Sequence[ActionResult]) -> bool:
    """An isolating action left the pod isolated, by this delivery's writes or as it found it (not planned in a dry
    run, not failed, not blocked before it could judge the pod)."""
    return any(
        _isolates(a.action) and not a.dry_run and a.status is not Status.FAILED and "session_survives" in a.details
        for a in actions
    )


def destroyed(actions: Sequence[ActionResult]) -> bool:
    """An action that ends the pod (a delete) was carried out and accepted: the pod is gone, not merely planned."""
    return any(_ends_pod(a.action) and a.status is Status.SUCCEEDED and not a.dry_run for a in actions)


def replaced(actions: Sequence[ActionResult]) -> bool:
    """What an action ended, the pod's controller replaces (the next steps ask the reader to confirm it)."""
    return any(
        registry.traits(a.action).replaced_by_controller and a.status is Status.SUCCEEDED and not a.dry_run
        for a in actions
    )


def took_effect(result: ActionResult) -> bool:
    """The action changed what happened to the workload: an isolation that holds (by this delivery's writes or as
    found, see :func:`isolated`), or any other action carried out and accepted; never a dry run's plan."""
    if _isolates(result.action):
        return isolated([result])
    return result.status is Status.SUCCEEDED and not result.dry_run


def status_word(results: Sequence[ActionResult]) -> str:
    """One word for what happened to the workload (the ``rsr_status`` mark, the report's routing attribute): the
    word of the action that took effect, an action that ends the pod before any other; else failed or reported."""
    effective = [r for r in results if registry.traits(r.action).status_word and took_effect(r)]
    effective.sort(key=lambda r: not registry.traits(r.action).ends_pod)  # stable: plan order otherwise
    if effective:
        return registry.traits(effective[0].action).status_word or "reported"
    if any(r.status is Status.FAILED for r in results):
        return "failed"
    return "reported"


# Left alone, rightly, and still someone must look: a real finding in a cluster this deployment does not cover.
WARNING_CODES = frozenset({"outside_fleet"})


def severity_for(
    verdict: Verdict,
    actions: list[ActionResult],
    outcome: str,
    writebacks: Sequence[ActionResult] = (),
    profile: CategoryProfile = UNPROFILED,
    code: str = "",
) -> str:
    """Cloud Logging severity: a reject or failed action or write-back needs eyes; acting is a NOTICE; ignoring is
    INFO, unless its ``code`` is one someone must look at. ``profile``: the finding's category's (without one, a
    surviving session is taken to matter)."""
    if outcome in ("retry", "not_contained") or verdict is Verdict.REJECT:
        return "ERROR"
    failed = any(a.status is Status.FAILED for a in [*actions, *writebacks])
    if failed or code in WARNING_CODES or session_left_alive(actions, profile):
        return "WARNING"
    if verdict is Verdict.ACT:
        return "NOTICE"
    return "INFO"


def make_record(  # noqa: PLR0913 - keyword-only fields of the record contract, each named at the call
    verdict: Verdict,
    code: str,
    reason: str,
    *,
    finding: str | None = None,
    category: str | None = None,
    cluster: str | None = None,
    pod: PodRef | None = None,
    actions: list[ActionResult] | None = None,
    writebacks: list[ActionResult] | None = None,
    outcome: RecordOutcome = "done",
    **extra: object,
) -> DecisionRecord:
    """Build a record; every value that came from the finding is sanitised here."""
    actions, writebacks = actions or [], writebacks or []
    summary = ", ".join(f"{a.action}={a.status.value}" for a in actions) or "no actions"
    if writebacks:
        summary += "; written back: " + ", ".join(f"{a.action}={a.status.value}" for a in writebacks)
    return DecisionRecord.model_validate(
        {
            "severity": severity_for(verdict, actions, outcome, writebacks, categories.of(category), code),
            "message": clean(f"{verdict.value}: {reason} [{summary}]", 600),
            "verdict": verdict,
            "code": code,
            "reason": clean(reason, 600),
            "finding": clean(finding, 300) if finding else None,
            "category": clean(category, 100) if category else None,
            "cluster": cluster,
            "pod": pod,
            "actions": actions,
            "writebacks": writebacks,
            "outcome": outcome,
            **extra,
        }
    )


def emit(record: DecisionRecord, stream: TextIO | None = None) -> None:
    """Write the record as one line; flushed, because the instance may be frozen right after the response.

    Never raises for what the record holds: a record that cannot be serialised is written as :func:`fallback_line`.
    """
    try:
        line = record.to_json()
    except Exception as exc:  # any serialisation failure: the event still gets its one line
        line = fallback_line(record, exc)
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()


def fallback_line(record: DecisionRecord, error: BaseException) -> str:
    """The contract fields of ``record``, each cleaned, as one JSON line, plus why the full record could not be
    written. Used when serialising the record itself failed; says so at ERROR, so the bug is seen."""
    try:
        pod = (
            {"namespace": clean(record.pod.namespace, 80), "name": clean(record.pod.name, 300)} if record.pod else None
        )
        document: dict[str, object] = {
            "severity": "ERROR",
            "message": clean(f"{record.verdict.value}: {record.reason} [record written in fallback form]", 600),
            "verdict": clean(record.verdict.value, 10),
            "code": clean(record.code, 60),
            "reason": clean(record.reason, 600),
            "finding": clean(record.finding, 300) if record.finding else None,
            "category": clean(record.category, 100) if record.category else None,
            "cluster": clean(record.cluster, 300) if record.cluster else None,
            "pod": pod,
            "actions": _fallback_results(record.actions),
            "writebacks": _fallback_results(record.writebacks),
            "outcome": record.outcome,
        }
    except Exception:  # a record broken beyond reading: keep the contract with nulls rather than lose the line
        document = {
            "severity": "ERROR",
            "message": "reject: decision record unreadable [record written in fallback form]",
            "verdict": "reject",
            "code": "record_error",
            "reason": "decision record unreadable",
            "finding": None,
            "category": None,
            "cluster": None,
            "pod": None,
            "actions": [],
            "writebacks": [],
            "outcome": "retry",
        }
    document["record_error"] = clean(f"{type(error).__name__}: {error}", 300)
    return bounds.bounded_line(document)


def _fallback_results(results: list[ActionResult]) -> list[dict[str, str]]:
    return [
        {"action": clean(a.action, 40), "status": clean(a.status.value, 20), "reason": clean(a.reason, 300)}
        for a in results
    ]


def timed(record: DecisionRecord, started: float, contained_at: float | None = None) -> DecisionRecord:
    """The record with its handling time and, when something was contained, the time to the containing write."""
    update = {"duration_ms": round((time.monotonic() - started) * 1000, 1)}
    if contained_at is not None:
        update["contained_ms"] = round((contained_at - started) * 1000, 1)
    return record.model_copy(update=update)


def contained(entries: Sequence[object]) -> bool:
    """Whether an action that counts as containing the pod (an isolate, a delete) was written and accepted (not
    planned in a dry run, not skipped)."""
    return any(
        isinstance(s, ActionResult)
        and registry.traits(s.action).contains
        and s.status is Status.SUCCEEDED
        and not s.dry_run
        for s in entries
    )


def _isolates(action: str) -> bool:
    return registry.traits(action).isolating


def _ends_pod(action: str) -> bool:
    return registry.traits(action).ends_pod


def decide(verdict: Triage, plan: Plan, verification: Verification) -> tuple[Verdict, str, str]:
    """The record's verdict, code and reason once containment is over (a pure function of what was decided)."""
    if verification.vouch is Vouch.REFUTED:
        return Verdict.REJECT, "suspected_forgery", verification.reason
    if not plan.steps and plan.hold:
        return Verdict.IGNORE, plan.hold, plan.skipped[0] if plan.skipped else plan.hold
    return Verdict.ACT, verdict.code, verdict.reason


def verification_info(verification: Verification) -> VerificationInfo:
    """SCC's answer, as the record shows it."""
    return VerificationInfo(
        status=verification.vouch.value, reason=verification.reason, mismatches=list(verification.mismatches)
    )
