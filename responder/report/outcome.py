"""What handling one delivery produced: the decision record and everything the report is built from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from responder.containment import registry
from responder.containment.context import Evidence
from responder.containment.plan import Plan
from responder.containment.results import ActionResult, Status
from responder.containment.verification import Verification, Vouch
from responder.errors import PermanentError
from responder.intake.categories import CategoryProfile
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Triage, Verdict
from responder.investigation.investigator import Investigation
from responder.report.record import DecisionRecord, DeliveryInfo, RecordOutcome, destroyed, isolated, make_record


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


def not_contained_prefix(profile: CategoryProfile) -> str:
    """How a not_contained record's reason begins: the alert's subject and the report's first line read the same
    words, the category's own (``NOT CONTAINED: an attacker may still be connected; ...`` for a reverse shell)."""
    return f"NOT CONTAINED: {profile.danger}; a person must act: "


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a delivery ends, by the one rule (:func:`settle`), and what is left or what a person must do."""

    outcome: RecordOutcome
    why: str | None = None


def settle(
    plan: Plan,
    verification: Verification,
    results: Sequence[ActionResult],
    retry: bool,
    profile: CategoryProfile,
) -> Settlement:
    """The one rule for how a delivery ends. **Acknowledged means contained, or rightly left alone.**

    - ``done``: the pod is contained (isolated, with the live session cut when the category's threat is one; or
      deleted, or gone by other hands), or was rightly left alone (refuted and rolled back; no SCC to vouch for a
      dry-run plan; a sample SCC vouches for; a category whose profile does not page when the configuration leaves
      it alone, and it did).
    - ``retry``: a failure that can heal (5xx, 429, timeout, a concurrent writer, a crash, SCC unreachable or not
      asked in enforce mode, a forged isolation not yet rolled back): raised so Pub/Sub redelivers.
    - ``not_contained``: SCC vouches for the finding and the pod is not contained, for a reason that will not heal by
      itself (dry-run, a protected namespace, an exemption, ``live_session: report`` on a dataplane that does not
      cut the session, a guard, the budget, a 403): acknowledged, at ERROR, and its own alert pages. For a category
      whose profile says ``left_alone_pages: false`` only a containment the plan asked for and did not get pages
      (see :class:`~responder.intake.categories.CategoryProfile`).
    """
    vouch = verification.vouch
    if vouch is Vouch.REFUTED:
        undone = [r for r in results if r.action == "rollback" and r.status is Status.FAILED]
        if undone:
            return Settlement("retry", f"the forged message's isolation is not rolled back yet: {undone[0].reason}")
        return Settlement("done")
    if retry:
        return Settlement("retry", _left(results) or "a step failed in a way that may heal")
    if vouch is Vouch.UNREACHABLE:
        return Settlement("retry", f"SCC could not vouch for the message: {clean(verification.reason, 200)}")
    vouched = vouch in (Vouch.VERIFIED, Vouch.DISABLED)
    if not vouched:  # UNAVAILABLE: no SCC here (a local replay)
        if plan.dry_run or not plan.steps:
            return Settlement("done")
        return Settlement(
            "retry",
            f"SCC was not asked ({clean(verification.reason, 160)}): not verified, so "
            f"{_left(results) or 'nothing that waits for SCC ran'}; replay with Google APIs on",
        )
    if _contained(results, profile):
        return Settlement("done")
    if plan.hold == "sample":
        return Settlement("done")  # SCC itself holds it as a harmless sample
    if not profile.left_alone_pages and _left_alone(plan):
        return Settlement("done")  # the configuration chose to report it only, and its category does not page for that
    return Settlement("not_contained", _why_open(plan, results))


def _contained(results: Sequence[ActionResult], profile: CategoryProfile) -> bool:
    """The pod is deleted, gone by other hands, or isolated: on a dataplane that cut its established connections
    when the category's threat is a live session, by the isolation's own writes otherwise."""
    if destroyed(results) or any(r.details.get("gone") for r in results):
        return True
    cut = [
        r
        for r in results
        if registry.traits(r.action).isolating
        and not r.details.get("reopened")  # a cluster-scoped allow lets its traffic through: not isolated
        and (r.details.get("session_survives") is False or not profile.live_session)
    ]
    return isolated(cut)


def _left_alone(plan: Plan) -> bool:
    """The configuration planned nothing that contains the pod (report-only, protected, exempt, dry-run, or only
    evidence): as opposed to a containment it planned and could not carry out."""
    return plan.dry_run or not any(registry.traits(s.action).contains for s in plan.steps)


def _left(results: Sequence[ActionResult]) -> str:
    """The steps that did not finish, with their reasons (for a retry's record)."""
    return "; ".join(
        f"{r.action}: {clean(r.reason, 160)}" for r in results if r.status is not Status.SUCCEEDED and not r.dry_run
    )


def _why_open(plan: Plan, results: Sequence[ActionResult]) -> str:
    """Why a vouched finding's pod is not contained, from the plan's hold and the containing steps that did not get
    there."""
    if plan.dry_run:
        return "the responder runs in dry-run: nothing was done to the pod"
    if not plan.steps:
        return clean(plan.skipped[0] if plan.skipped else plan.hold or "the policy plans no containment", 300)
    reasons = [f"{r.action}: {clean(r.reason, 200)}" for r in results if registry.traits(r.action).contains]
    return "; ".join(reasons) or "no containing step ran"
