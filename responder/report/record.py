"""The decision record: exactly one structured log line per handled event.

Cloud Logging parses a JSON line on stdout into a structured entry (``severity`` and ``message`` are special); the
other fields land in ``jsonPayload`` where alerting and dashboards can query them. The contract fields (``verdict``,
``reason``, ``finding``, ``cluster``, ``pod``, ``actions``) are always present, null when unknown.
"""

from __future__ import annotations

import sys
from typing import Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from responder.containment.base import ActionResult, Status
from responder.intake.sanitize import clean
from responder.intake.triage import Verdict


class PodRef(BaseModel):
    """``{"namespace", "name"}`` of the pod the finding names."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str


class DeliveryInfo(BaseModel):
    """Which delivery this record is about (for correlating redeliveries)."""

    model_config = ConfigDict(frozen=True)

    shape: str | None = None
    event_id: str | None = None
    message_id: str | None = None
    delivery_attempt: int | None = None


class VerificationInfo(BaseModel):
    """What SCC's own record said about the message (see ``responder.containment.verification``)."""

    model_config = ConfigDict(frozen=True)

    status: str
    reason: str
    mismatches: list[str] = Field(default_factory=list)


class DecisionRecord(BaseModel):
    """One decision about one delivery."""

    model_config = ConfigDict(frozen=True)

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
    mode: str | None = None
    rule: str | None = None
    skipped: list[str] = Field(default_factory=list)
    enrichment: dict[str, str] = Field(default_factory=dict)
    verification: VerificationInfo | None = None
    outcome: Literal["done", "retry"] = "done"
    warnings: list[str] = Field(default_factory=list)
    delivery: DeliveryInfo = DeliveryInfo()
    duration_ms: float | None = None

    def to_json(self) -> str:
        """The log line (no newline)."""
        return self.model_dump_json()


def session_left_alive(actions: list[ActionResult]) -> bool:
    """Isolation was enforced but cannot cut an established connection, and no delete ended the pod: the reverse
    shell may still be connected (``live_session: report``, or an escalation the guards or budget refused)."""
    isolated = any(a.action == "isolate" and not a.dry_run and a.details.get("session_survives") for a in actions)
    deleted = any(a.action == "delete" and a.status is Status.SUCCEEDED and not a.dry_run for a in actions)
    return isolated and not deleted


def severity_for(verdict: Verdict, actions: list[ActionResult], outcome: str) -> str:
    """Cloud Logging severity: a reject or failed action needs eyes; acting is a NOTICE; ignoring is INFO."""
    if outcome == "retry" or verdict is Verdict.REJECT:
        return "ERROR"
    if any(a.status is Status.FAILED for a in actions) or session_left_alive(actions):
        return "WARNING"
    if verdict is Verdict.ACT:
        return "NOTICE"
    return "INFO"


def make_record(
    verdict: Verdict,
    code: str,
    reason: str,
    *,
    finding: str | None = None,
    category: str | None = None,
    cluster: str | None = None,
    pod: PodRef | None = None,
    actions: list[ActionResult] | None = None,
    outcome: Literal["done", "retry"] = "done",
    **extra: object,
) -> DecisionRecord:
    """Build a record; every value that came from the finding is sanitised here."""
    actions = actions or []
    summary = ", ".join(f"{a.action}={a.status.value}" for a in actions) or "no actions"
    return DecisionRecord.model_validate(
        {
            "severity": severity_for(verdict, actions, outcome),
            "message": clean(f"{verdict.value}: {reason} [{summary}]", 600),
            "verdict": verdict,
            "code": code,
            "reason": clean(reason, 600),
            "finding": clean(finding, 300) if finding else None,
            "category": clean(category, 100) if category else None,
            "cluster": cluster,
            "pod": pod,
            "actions": actions,
            "outcome": outcome,
            **extra,
        }
    )


def emit(record: DecisionRecord, stream: TextIO | None = None) -> None:
    """Write the record as one line; flushed, because the instance may be frozen right after the response."""
    out = stream or sys.stdout
    out.write(record.to_json() + "\n")
    out.flush()
