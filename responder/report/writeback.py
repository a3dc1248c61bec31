"""What the responder tells the outside after containment: SCC's security marks, INACTIVE, the incident report.

Each of these runs once the delivery's outcome is settled and can only fail on its own: its failure becomes a result
in the record's ``writebacks`` (``failed``, with the reason), never an exception that would lose what containment did.
The marks are the response's progress (``responder.containment.progress``), written once per delivery with the
outcome the delivery ends in; a delivery whose marks could not be written is retried (the service decides), since
the next delivery could not otherwise tell what this one did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from responder.containment.plan import Plan
from responder.containment.progress import EVENT_MARK, STATUS_MARK, marks_for
from responder.containment.recall import MARKS_DETAIL
from responder.containment.results import ActionResult, Status
from responder.containment.verification import Verification, Vouch
from responder.errors import ResponderError
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.policy.rules import Defaults
from responder.ports import FindingsAPI, Publisher
from responder.report.outcome import Outcome
from responder.report.record import destroyed, status_word

HANDLED_MARK = EVENT_MARK  # eventTime of the occurrence we handled: our own write-back re-sends the notification


def write_back(  # noqa: PLR0913 - what the marks record, each named at the call
    api: FindingsAPI | None,
    defaults: Defaults,
    clock: Callable[[], datetime],
    finding: Finding,
    plan: Plan,
    results: list[ActionResult],
    verification: Verification,
    outcome: str,
    pod_uid: str | None,
) -> list[ActionResult]:
    """Security marks recording what was done and how the delivery ends, and INACTIVE after a successful delete
    (enforce only).

    Both write to the finding the message names, so only when SCC confirmed the message is about that finding:
    a forged message reusing a real finding's name must not mark it, let alone set it INACTIVE.
    """
    if plan.dry_run or api is None or not finding.name or verification.vouch is Vouch.REFUTED:
        return []
    if not verification.allows_write_back:
        if not defaults.write_marks:
            return []
        why = f"not written: SCC did not confirm the finding ({clean(verification.reason, 160)})"
        return [ActionResult(action="mark", status=Status.SKIPPED, reason=why)]
    name = finding.name
    out: list[ActionResult] = []
    if defaults.write_marks:
        # A step an earlier delivery finished stays finished in the progress (this delivery skipped it for that).
        actions = ",".join(f"{r.action}:{'succeeded' if r.details.get('earlier') else r.status.value}" for r in results)
        marks = marks_for(finding, outcome, status_word(results), actions, pod_uid, clock())
        done = f"security marks set: rsr_status={marks[STATUS_MARK]}"
        out.append(_attempt("mark", lambda: api.update_marks(name, marks), done, {MARKS_DETAIL: marks}))
    # Hiding a finding needs SCC's own confirmation, not merely verification switched off.
    if defaults.set_inactive and destroyed(results) and verification.vouch is Vouch.VERIFIED:
        out.append(
            _attempt(
                "set_inactive",
                lambda: api.set_state(name, "INACTIVE", clock()),
                "finding set INACTIVE after the pod was deleted",
            )
        )
    return out


def notify(
    publisher: Publisher | None, defaults: Defaults, outcome: Outcome, results: list[ActionResult]
) -> list[ActionResult]:
    """Publish the incident report for owners (routing attributes: severity, project, cluster, verdict, owner)."""
    topic = defaults.report_topic
    if not topic or publisher is None:
        return []
    from responder.report.builder import build_report

    report = build_report(outcome, owner_keys=defaults.owner_keys)
    target = outcome.triage.target if outcome.triage else None
    attributes = {
        "severity": (outcome.finding.severity if outcome.finding else None) or "UNKNOWN",
        "project": target.cluster.project if target else "",
        "cluster": target.cluster.path if target else "",
        "verdict": outcome.record.verdict.value,
        "status": status_word(results),
        "owner": report.owner or "",
    }
    data = report.model_dump_json().encode("utf-8")
    return [
        _attempt("notify", lambda: publisher.publish(topic, data, attributes), f"incident report published to {topic}")
    ]


def _attempt(
    action: str, fn: Callable[[], object], success: str, details: dict[str, Any] | None = None
) -> ActionResult:
    """Run a write-back; its failure is recorded, never fatal (containment already happened). ``details``: what
    was written, kept on success (the marks: the record shows them, and ``containment.recall`` keeps them)."""
    try:
        fn()
    except ResponderError as exc:
        return ActionResult(action=action, status=Status.FAILED, reason=clean(exc, 200))
    return ActionResult(action=action, status=Status.SUCCEEDED, reason=success, details=details or {})
