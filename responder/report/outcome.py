"""What handling one delivery produced: the decision record and everything the report is built from."""

from __future__ import annotations

from dataclasses import dataclass

from responder.containment.base import Evidence
from responder.containment.plan import Plan
from responder.errors import PermanentError
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Triage, Verdict
from responder.investigation.investigator import Investigation
from responder.report.record import DecisionRecord, DeliveryInfo, make_record


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

    @property
    def not_contained(self) -> bool:
        """True when the delivery ends (acknowledged) with an attacker possibly still connected: a person must act."""
        return self.record.outcome == "not_contained"


def rejected(exc: PermanentError, delivery: DeliveryInfo) -> Outcome:
    """The outcome of invalid input: a delivery that never became a notification, or a notification that is not a
    finding we can trust (the error says which, by its record code)."""
    return Outcome(record=make_record(Verdict.REJECT, exc.code, clean(exc, 300), delivery=delivery))
