"""Decide act / ignore / reject for a finding, with a precise reason.

Order matters: cheap, certain reasons to ignore come first (wrong class, category, resource, state, mute) so that a
Cloud Run "Reverse Shell" or an inactive finding is ignored rather than rejected for lacking pod fields. Only then are
identifiers validated, because only then are they about to reach an API path or a log filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from responder.errors import InvalidIdentifier
from responder.intake import categories as profiles
from responder.intake import identifiers as ids
from responder.intake.categories import DEFAULT_CATEGORIES, normalise_category
from responder.intake.findings import Finding
from responder.intake.identifiers import ClusterRef
from responder.intake.sanitize import clean

# CTD began in 2020; an event before that, or more than a day ahead of our clock, is not a real detection. Such times
# would also decide wrongly whether a pod is the one that ran the shell or a later replacement.
EARLIEST_EVENT = datetime(2020, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)


class Verdict(StrEnum):
    """The three outcomes of the decision record contract."""

    ACT = "act"
    IGNORE = "ignore"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Target:
    """A validated pod in a validated cluster: safe to put in API paths, filters and commands."""

    cluster: ClusterRef
    namespace: str
    pod: str
    container: str | None
    node: str | None


@dataclass(frozen=True, slots=True)
class Triage:
    """The verdict, a machine code, a human reason, and the target when acting."""

    verdict: Verdict
    code: str
    reason: str
    target: Target | None = None


def _ignore(code: str, reason: str) -> Triage:
    return Triage(Verdict.IGNORE, code, reason)


def _reject(code: str, reason: str) -> Triage:
    return Triage(Verdict.REJECT, code, reason)


def _implausible_time(finding: Finding, now: datetime) -> str | None:
    for label, moment in (("eventTime", finding.event_time), ("createTime", finding.create_time)):
        if moment is None:
            continue
        if moment < EARLIEST_EVENT or moment > now + CLOCK_SKEW:
            return (
                f"{label} {moment.isoformat()} is outside the plausible window "
                f"[{EARLIEST_EVENT.date().isoformat()}, now + {CLOCK_SKEW.days} day]"
            )
    return None


def triage(finding: Finding, categories: Iterable[str] = DEFAULT_CATEGORIES, now: datetime | None = None) -> Triage:
    """Classify one finding (``now`` bounds the event time; default: the clock).

    ``categories`` are the handled ones; a category is acted on only when it also has a profile (the settings and
    the policy refuse a handled category without one, so that is a second lock, not the first)."""
    handled = {normalise_category(c) for c in categories}
    if finding.finding_class and finding.finding_class != "THREAT":
        return _ignore("not_threat", f"finding class is {clean(finding.finding_class, 40)}, not THREAT")
    profile = profiles.get(finding.category)
    if profile is None or normalise_category(finding.category) not in handled:
        return _ignore("category", f"category {clean(finding.category, 100)!r} is not handled")
    if not ids.is_gke_resource(finding.resource_name, finding.resource_type):
        return _ignore("not_gke", f"resource {clean(finding.resource_name, 160)!r} is not a GKE cluster")
    if finding.state != "ACTIVE":
        return _ignore("not_active", f"finding state is {clean(finding.state or 'STATE_UNSPECIFIED', 40)}")
    if finding.mute == "MUTED":
        return _ignore("muted", "finding is muted")
    if not finding.name:
        return _reject("no_name", "finding has no name")
    try:
        # Only a name SCC can be asked about can ever be vouched for: anything else is refused before any action.
        ids.finding_name(finding.name)
    except InvalidIdentifier as exc:
        return _reject("bad_name", clean(exc, 200))
    if finding.contradictions:
        return _reject("inconsistent", "; ".join(finding.contradictions))
    bad_time = _implausible_time(finding, now or datetime.now(UTC))
    if bad_time:
        return _reject("bad_time", bad_time)
    if not finding.pod_namespace or not finding.pod_name:
        return _reject("no_pod", "finding names no pod (no kubernetes.pods[] and no Pod_Namespace/Pod_Name)")
    try:
        target = Target(
            cluster=ids.parse_cluster_resource(finding.resource_name or ""),
            namespace=ids.namespace(finding.pod_namespace),
            pod=ids.pod_name(finding.pod_name),
            container=ids.container_name(finding.container) if finding.container else None,
            node=ids.node_name(finding.node) if finding.node else None,
        )
    except InvalidIdentifier as exc:
        return _reject("bad_identifier", clean(exc, 200))
    return Triage(Verdict.ACT, profile.code, f"active {clean(finding.category, 60)} finding on a GKE pod", target)
