"""Bound evidence: does SCC's own record of the finding vouch for what the message says?

Anyone who can publish to the findings topic can write a message. So a message is only trusted as far as SCC's record
of the finding, read by name, agrees with it: the same category, the same cluster, the pod among those SCC names,
ACTIVE and not muted. A message that reuses a real finding's name for another pod, cluster or category, or names a
finding SCC does not know, is a suspected forgery: nothing destructive runs, nothing is written back to that finding,
and what this delivery did to the pod is undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from responder.errors import InvalidIdentifier, ResponderError, TransientError
from responder.intake import identifiers as ids
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target, normalise_category
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
    transient: bool = False  # UNREACHABLE because of a failure that may heal: redelivery can verify later

    @property
    def allows_destructive(self) -> bool:
        """Only a verified message (or an operator who turned verification off) may delete anything."""
        return self.vouch in (Vouch.VERIFIED, Vouch.DISABLED)

    @property
    def allows_write_back(self) -> bool:
        """Marks and state changes go to the finding named by the message: only when SCC confirmed it is this one."""
        return self.vouch in (Vouch.VERIFIED, Vouch.DISABLED)


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
    if record.state != "ACTIVE":
        out.append(f"state (SCC: {clean(record.state or 'STATE_UNSPECIFIED', 30)})")
    if record.mute == "MUTED":
        out.append("mute (SCC: MUTED)")
    return out


def verify(api: FindingsAPI | None, finding: Finding, target: Target, enabled: bool) -> Verification:
    """Read the finding from SCC by name and compare it with the message."""
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
    if record is None:
        return Verification(
            Vouch.REFUTED,
            f"SCC does not know finding {clean(finding.name, 200)}: suspected forgery",
            ("finding (unknown to SCC)",),
        )
    wrong = mismatches(record, finding, target)
    if wrong:
        return Verification(
            Vouch.REFUTED,
            f"SCC's record of {clean(finding.name, 200)} does not match the message (suspected forgery): "
            + "; ".join(wrong),
            tuple(wrong),
        )
    return Verification(Vouch.VERIFIED, "SCC's record matches the message (category, cluster, pod, ACTIVE, unmuted)")
