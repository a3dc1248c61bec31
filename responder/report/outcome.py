"""What handling one delivery produced: the decision record and everything the report is built from."""

from __future__ import annotations

from dataclasses import dataclass

from responder.containment.base import Evidence
from responder.containment.plan import Plan
from responder.containment.verification import Verification, Vouch
from responder.intake.findings import Finding
from responder.intake.triage import Triage, Verdict
from responder.investigation.investigator import Investigation
from responder.report.record import DecisionRecord, VerificationInfo


@dataclass
class Outcome:
    """What handling one delivery produced."""

    record: DecisionRecord
    finding: Finding | None = None
    triage: Triage | None = None
    plan: Plan | None = None
    investigation: Investigation | None = None
    evidence: Evidence | None = None
    contained_at: float | None = None  # time.monotonic() when the first containing write was accepted

    @property
    def retry(self) -> bool:
        """True when the handler must raise so Pub/Sub redelivers."""
        return self.record.outcome == "retry"


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
