"""What handling one delivery produced: the decision record and everything the report is built from."""

from __future__ import annotations

from dataclasses import dataclass

from responder.containment.base import Evidence
from responder.containment.plan import Plan
from responder.intake.findings import Finding
from responder.intake.triage import Triage
from responder.investigation.investigator import Investigation
from responder.report.record import DecisionRecord


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
