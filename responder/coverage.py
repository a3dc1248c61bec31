"""Coverage: whether a finding is this deployment's to contain, decided before any cluster is reached.

Two kinds of finding are recorded and left alone, each only on SCC's word (``responder.intake.scope`` says which
findings they are; this module asks SCC and writes the record):

- the deployment's own **canary**, a finding under ``RESPONDER_CANARY_SOURCE`` that the canary job writes on a
  schedule to prove the whole path (SCC's filter, its publisher binding, the push, this function). Recognised right
  after the notification is parsed and before triage, because its resource name and source properties are whatever
  the job writes (no pod, no cluster) and triage would reject or ignore it for that. ``ignore``/``canary``, INFO,
  nothing touched: no cluster, no marks, no report. The alert on its absence counts these records, so a message SCC
  does not hold under that name is a suspected forgery, never a canary: a forger must not be able to keep that
  alert quiet while the real path is broken.
- a finding in a cluster **outside the fleet** (``RESPONDER_FLEET``), after triage (its cluster is known and
  validated) and before the connection: ``ignore``/``outside_fleet``, WARNING, nothing touched. SCC is asked first
  (one read, only for these), so that ``outside_fleet`` always means a real shell in a cluster somebody forgot: an
  unvouched message naming an outside cluster ends exactly as any forgery does (``reject``/``suspected_forgery``,
  ERROR), and cannot pass a forgery off as a low-urgency WARNING that sends someone to add a cluster.

SCC unreachable is a retry for both, as for any message that cannot be verified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from responder.config import Mode, Settings
from responder.containment.verification import Verification, Vouch, verify, verify_canary
from responder.event import Event
from responder.intake.findings import Finding
from responder.intake.scope import CANARY, OUTSIDE_FLEET, Scope, canary_reason, outside_fleet_reason
from responder.intake.triage import Triage, Verdict
from responder.ports import FindingsAPI
from responder.report.outcome import Outcome
from responder.report.record import DeliveryInfo, verification_info
from responder.startup import ImportGate

# What SCC's answer must be for the message to be taken at its word: it vouched, or the operator turned checking off.
_TRUSTED = (Vouch.VERIFIED, Vouch.DISABLED)


@dataclass(frozen=True)
class Coverage:
    """The deployment's scope, and what it needs to ask SCC (its own read: none of this waits for containment)."""

    scope: Scope
    findings_api: FindingsAPI | None
    verify_finding: bool
    gate: ImportGate | None = None

    @classmethod
    def of(
        cls, settings: Settings, findings_api: FindingsAPI | None, verify_finding: bool, gate: ImportGate | None
    ) -> Coverage:
        """From the settings; :class:`~responder.errors.ConfigError` for a bad fleet entry or canary source."""
        return cls(Scope.of(settings.fleet, settings.canary_source), findings_api, verify_finding, gate)

    def canary(self, finding: Finding, delivery: DeliveryInfo, mode: Mode) -> Outcome | None:
        """The outcome for a finding under the canary source (None for any other finding)."""
        source = self.scope.canary_source
        if source is None or not self.scope.is_canary(finding.name):
            return None
        self._warm()
        reason = canary_reason(source)
        event = Event(finding, Triage(Verdict.IGNORE, CANARY, reason), delivery, mode, list(finding.warnings))
        answer = verify_canary(self.findings_api, finding, self.verify_finding)
        if answer.vouch not in _TRUSTED:
            # Without SCC (a local replay) nothing can vouch for it either: retried, never counted as a canary.
            return unvouched(event, _held(answer, "the finding is under the canary source"), Verdict.IGNORE)
        return event.outcome(event.record(Verdict.IGNORE, CANARY, reason, verification=verification_info(answer)))

    def outside_fleet(self, event: Event) -> Outcome | None:
        """The outcome for a finding whose cluster the fleet does not list (None when it does)."""
        cluster = event.target.cluster
        if self.scope.covers(cluster):
            return None
        self._warm()
        answer = event.scc_answer or verify(self.findings_api, event.finding, event.target, self.verify_finding)
        if answer.vouch in (Vouch.REFUTED, Vouch.UNREACHABLE):
            return unvouched(event, _held(answer, f"cluster {cluster.path} is outside the fleet"))
        reason = outside_fleet_reason(cluster, event.finding.category)
        if answer.vouch is Vouch.UNAVAILABLE:
            # Nothing is touched either way; the record only must not claim what SCC was not asked.
            reason = f"{reason} (if genuine: {answer.reason})"
        record = event.record(Verdict.IGNORE, OUTSIDE_FLEET, reason, verification=verification_info(answer))
        return event.outcome(record)

    def _warm(self) -> None:
        # Nothing will be written for this event, so no write is waiting for the CPU: SCC's client may load now.
        if self.gate is not None:
            self.gate.open()


def _held(answer: Verification, what: str) -> Verification:
    """SCC's answer, its reason saying what waits on it when SCC could not give one."""
    if answer.vouch is Vouch.REFUTED:
        return answer
    return replace(answer, reason=f"{what}, and SCC could not vouch for it ({answer.reason}): nothing done, will retry")


def unvouched(event: Event, answer: Verification, unverified: Verdict = Verdict.ACT) -> Outcome:
    """SCC refuted the message (a suspected forgery: rejected and acknowledged, nothing done), or could not answer
    (``unverified``: retried, since a message nobody vouched for must neither be acted on nor dropped)."""
    forged = answer.vouch is Vouch.REFUTED
    record = event.record(
        Verdict.REJECT if forged else unverified,
        "suspected_forgery" if forged else "unverified",
        answer.reason,
        verification=verification_info(answer),
        outcome="done" if forged else "retry",
    )
    return event.outcome(record)
