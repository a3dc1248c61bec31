"""Bound evidence: does SCC's own record of the finding vouch for what the message says?

Anyone who can publish to the findings topic can write a message. So a message is only trusted as far as SCC's record
of the finding, read by name, agrees with it: the same category, the same cluster, the pod among those SCC names,
ACTIVE and not muted. A message that reuses a real finding's name for another pod, cluster or category, or names a
finding SCC does not know, is a suspected forgery: nothing destructive runs, nothing is written back to that finding,
and what this delivery did to the pod is undone.

Only "SCC vouches" and "SCC refutes" are answers. A lookup that ends any other way (a 403, a 5xx, a timeout, a name
the adapter cannot parse, a bug) is ``unreachable``: the isolation stays (it is reversible and fail-safe), nothing that
waits for SCC runs, and the delivery is redelivered until SCC answers or it reaches the dead letter.

Fields that steer the response are the vouched ones: SCC's severity and event time are compared with the message's (a
lowered severity, or an event SCC has not recorded yet, is a mismatch), and when the message lacks one, SCC's is used
(:func:`vouched`), never a default. So are the node pool (a rule may match on it: a message naming another pool than
the one SCC's record names is a mismatch) and ``Responder_Sample`` (a genuine finding passed off as a harmless
sample is a mismatch). What SCC may have updated since the message was sent (the shell recurred: another container,
another connection) is taken from SCC's record once it vouched: the container evidence is captured in, the connection
the report looks for, and the security marks, which record the responder's own progress and are never read from a
message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from responder.errors import InvalidIdentifier, ResponderError, TransientError
from responder.intake import identifiers as ids
from responder.intake.categories import normalise_category
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.ports import FindingsAPI, SccFinding


class Vouch(StrEnum):
    """What SCC said about the message."""

    VERIFIED = "verified"  # SCC's record matches the message
    REFUTED = "refuted"  # SCC does not know the finding, or its record disagrees: suspected forgery
    UNREACHABLE = "unreachable"  # the lookup failed: neither confirmed nor refuted
    UNAVAILABLE = "unavailable"  # no SCC access configured here (local replay)
    DISABLED = "disabled"  # verify_finding is off (operator's choice)


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking one message against SCC."""

    vouch: Vouch
    reason: str
    mismatches: tuple[str, ...] = ()
    transient: bool = False  # UNREACHABLE because of a failure that may heal (any UNREACHABLE is redelivered)
    record: SccFinding | None = None  # SCC's record, when it vouched: the source of the fields that steer
    recalled: bool = False  # the record is what SCC told this instance earlier (containment.recall), not a read now

    @property
    def allows_destructive(self) -> bool:
        """Only a verified message (or an operator who turned verification off) may delete anything."""
        return self.vouch in (Vouch.VERIFIED, Vouch.DISABLED)

    def allows_evidence(self, dry_run: bool) -> bool:
        """Exec and log reads run in the container the message names: only once SCC vouched for it (or an operator
        turned verification off). A dry run without SCC (a local replay) still reads logs; it never execs."""
        return self.allows_destructive or (dry_run and self.vouch is Vouch.UNAVAILABLE)

    @property
    def allows_write_back(self) -> bool:
        """Marks and state changes go to the finding named by the message: only when SCC confirmed it is this one."""
        return self.vouch in (Vouch.VERIFIED, Vouch.DISABLED)


_TIMESTAMP_ROUNDING = timedelta(milliseconds=1)  # SCC keeps nanoseconds; the message's time may be rounded


def mismatches(record: SccFinding, finding: Finding, target: Target) -> list[str]:
    """The fields on which SCC's record and the message disagree (empty: SCC vouches for the message)."""
    out: list[str] = []
    if normalise_category(record.category) != normalise_category(finding.category):
        out.append(f"category (SCC: {clean(record.category, 80)!r}, message: {clean(finding.category, 80)!r})")
    try:
        cluster = ids.parse_cluster_resource(record.resource_name or "").path
    except InvalidIdentifier:
        cluster = None
    if cluster != target.cluster.path:
        out.append(f"cluster (SCC: {clean(record.resource_name, 160)!r}, message: {target.cluster.path!r})")
    if (target.namespace, target.pod) not in record.pods:
        scc_pods = ", ".join(f"{clean(ns, 63)}/{clean(name, 100)}" for ns, name in record.pods[:5]) or "none"
        out.append(f"pod (SCC: {scc_pods}; message: {target.namespace}/{target.pod})")
    if finding.severity and record.severity and finding.severity != record.severity:
        out.append(f"severity (SCC: {clean(record.severity, 20)}, message: {clean(finding.severity, 20)})")
    if finding.event_time and record.event_time and finding.event_time > record.event_time + _TIMESTAMP_ROUNDING:
        # SCC moves eventTime forward when the detection recurs, so an older time is a late delivery of an earlier
        # occurrence; a later one is an occurrence SCC never recorded (it would steer the "replacement pod" guard).
        out.append(
            f"eventTime (SCC: {record.event_time.isoformat()}, message: {finding.event_time.isoformat()} is later)"
        )
    steering = record.steering
    # Compared when both name a pool: a record without kubernetes.nodePools (SCC does not always fill it) leaves the
    # message's pool compared with nothing, rather than refuting a genuine finding.
    if steering is not None and finding.node_pool and steering.node_pool and finding.node_pool != steering.node_pool:
        out.append(
            f"node pool (SCC: {clean(steering.node_pool or 'none', 60)!r}, message: {clean(finding.node_pool, 60)!r})"
        )
    if steering is not None and finding.sample != steering.sample:
        out.append(f"Responder_Sample (SCC: {steering.sample}, message: {finding.sample})")
    if record.state != "ACTIVE":
        out.append(f"state (SCC: {clean(record.state or 'STATE_UNSPECIFIED', 30)})")
    if record.mute == "MUTED":
        out.append("mute (SCC: MUTED)")
    return out


def _lookup(api: FindingsAPI | None, finding: Finding, enabled: bool) -> SccFinding | Verification:
    """SCC's record of the finding, read by name; or the answer that ends the check without one."""
    if not enabled:
        return Verification(Vouch.DISABLED, "SCC verification is turned off (verify_finding: false)")
    if api is None or not finding.name:
        return Verification(Vouch.UNAVAILABLE, "SCC is not reachable from here (no Google APIs configured)")
    try:
        record = api.get_finding(finding.name)
    except ResponderError as exc:
        return Verification(
            Vouch.UNREACHABLE,
            f"SCC lookup failed: {clean(exc, 200)}",
            transient=isinstance(exc, TransientError),
        )
    except Exception as exc:  # a bug is not an answer either: the delivery must come back, not pass unverified
        return Verification(Vouch.UNREACHABLE, f"SCC lookup crashed: {type(exc).__name__}: {clean(exc, 200)}")
    if record is None:
        return Verification(
            Vouch.REFUTED,
            f"SCC does not know finding {clean(finding.name, 200)}: suspected forgery",
            ("finding (unknown to SCC)",),
        )
    return record


def verify_canary(api: FindingsAPI | None, finding: Finding, enabled: bool) -> Verification:
    """A canary names no pod to compare: SCC vouches for it when it holds a finding of that name (under the
    deployment's own source, where only the canary's identity writes), of the message's category, with no later
    event time than the message claims."""
    record = _lookup(api, finding, enabled)
    if isinstance(record, Verification):
        return record
    wrong = []
    if normalise_category(record.category) != normalise_category(finding.category):
        wrong.append(f"category (SCC: {clean(record.category, 80)!r}, message: {clean(finding.category, 80)!r})")
    if finding.event_time and record.event_time and finding.event_time > record.event_time + _TIMESTAMP_ROUNDING:
        wrong.append(f"eventTime (SCC: {record.event_time.isoformat()}, message is later)")
    if wrong:
        reason = f"SCC's record of {clean(finding.name, 200)} does not match the message (suspected forgery): "
        return Verification(Vouch.REFUTED, reason + "; ".join(wrong), tuple(wrong))
    return Verification(Vouch.VERIFIED, "SCC holds the canary finding (category, event time)", record=record)


def verify(api: FindingsAPI | None, finding: Finding, target: Target, enabled: bool) -> Verification:
    """Read the finding from SCC by name and compare it with the message."""
    record = _lookup(api, finding, enabled)
    if isinstance(record, Verification):
        return record
    return judge(record, finding, target)


def judge(record: SccFinding, finding: Finding, target: Target) -> Verification:
    """SCC's answer about the message, from its record of the finding (read now, or remembered: ``recall``)."""
    wrong = mismatches(record, finding, target)
    if wrong:
        return Verification(
            Vouch.REFUTED,
            f"SCC's record of {clean(finding.name, 200)} does not match the message (suspected forgery): "
            + "; ".join(wrong),
            tuple(wrong),
        )
    return Verification(
        Vouch.VERIFIED,
        "SCC's record matches the message (category, cluster, pod, severity, event time, ACTIVE, unmuted)",
        record=record,
    )


# Taken from SCC's record once it vouched (see the module's docstring): the message's value never steers them.
_FROM_SCC = ("container", "image_uri", "remote", "local", "processes", "mitre")


def vouched(finding: Finding, verification: Verification) -> Finding:
    """The finding as SCC vouches for it: the steering fields the message lacked, every field SCC may have updated
    since, and SCC's security marks, taken from SCC's record (unchanged when SCC has not vouched)."""
    record = verification.record
    if record is None:
        return finding
    filled: dict[str, object] = {
        "event_time": finding.event_time or record.event_time,
        "severity": finding.severity or record.severity,
        "security_marks": dict(record.marks),
    }
    if record.steering is not None:
        filled |= {key: getattr(record.steering, key) for key in _FROM_SCC}
        filled["node_pool"] = record.steering.node_pool or finding.node_pool
    return finding.model_copy(update=filled)


def vouched_target(target: Target, finding: Finding) -> Target:
    """The target with the container SCC's record names (validated like every identifier from a finding); the
    message's when SCC names none or names one that is not a valid container name."""
    if not finding.container or finding.container == target.container:
        return target
    try:
        container = ids.container_name(finding.container)
    except InvalidIdentifier:
        return target
    return replace(target, container=container)


def gaps(finding: Finding) -> list[str]:
    """Steering fields the message lacks: SCC must supply them before the message can steer anything."""
    return [name for name, value in (("eventTime", finding.event_time), ("severity", finding.severity)) if not value]


@dataclass(frozen=True, slots=True)
class Filled:
    """A message checked for the steering fields it lacks: the finding to act on, SCC's answer when it was asked
    (``None``: nothing was missing), and the warning for the record."""

    finding: Finding
    answer: Verification | None = None
    warning: str | None = None

    @property
    def stop(self) -> bool:
        """SCC refuted the message, or could not supply what it lacks: nothing may be done."""
        return self.answer is not None and self.answer.vouch in (Vouch.REFUTED, Vouch.UNREACHABLE)


def fill_gaps(api: FindingsAPI | None, finding: Finding, target: Target, enabled: bool) -> Filled:
    """A message that lacks a steering field (its event time tells the pod that ran the shell from a later
    replacement; its severity picks the rule) is checked with SCC before anything is done, and what it lacks is
    taken from SCC's record, never defaulted. A genuine notification carries both, so this costs nothing then."""
    missing = gaps(finding)
    if not missing:
        return Filled(finding)
    answer = verify(api, finding, target, enabled)
    lacks = f"the message lacks {', '.join(missing)}"
    if answer.vouch is Vouch.VERIFIED:
        return Filled(vouched(finding, answer), answer, f"{lacks}: taken from SCC's record of the finding")
    if answer.vouch is Vouch.UNREACHABLE:
        why = f"{lacks} and SCC could not supply them ({answer.reason}): nothing done, will retry on redelivery"
        return Filled(finding, Verification(Vouch.UNREACHABLE, why, transient=answer.transient))
    if answer.vouch is Vouch.REFUTED:
        return Filled(finding, answer)
    # No SCC here, or verification turned off: the message is all there is, and nothing is assumed for what it
    # lacks (without an event time the runner leaves the pod alone).
    return Filled(finding, answer, f"{lacks} and SCC was not asked ({answer.vouch.value})")
