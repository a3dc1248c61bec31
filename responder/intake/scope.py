"""What this deployment covers: the clusters of its fleet, and the SCC source its own canary writes to.

Pure: the two settings validated as identifiers (a bad entry refuses the whole configuration, never half of it), and
the two questions the pipeline (``responder/coverage.py``) and ``plan`` ask of a finding. Neither answer is trusted
on the message's word: the pipeline asks SCC before it records a canary or a cluster outside the fleet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from responder.errors import ConfigError, InvalidIdentifier
from responder.intake import identifiers as ids
from responder.intake.identifiers import ClusterRef
from responder.intake.sanitize import clean

CANARY = "canary"  # the record's code for a canary SCC vouched for
OUTSIDE_FLEET = "outside_fleet"  # the record's code for a vouched finding in a cluster the fleet does not list


@dataclass(frozen=True, slots=True)
class Scope:
    """``fleet``: the canonical paths of the clusters covered (empty: every cluster, as before fleets existed);
    ``canary_source``: the SCC source whose findings are the deployment's canary (None: no canary)."""

    fleet: frozenset[str] = frozenset()
    canary_source: str | None = None

    @classmethod
    def of(cls, fleet: Iterable[str] | None, canary_source: str | None) -> Scope:
        """From the settings' values; :class:`ConfigError` names every bad entry."""
        problems: list[str] = []
        paths: set[str] = set()
        for entry in fleet or ():
            try:
                paths.add(ids.cluster_path(entry).path)
            except InvalidIdentifier as exc:
                problems.append(f"RESPONDER_FLEET: {clean(exc, 200)}")
        source = None
        if canary_source:
            try:
                source = ids.source_name(canary_source)
            except InvalidIdentifier as exc:
                problems.append(f"RESPONDER_CANARY_SOURCE: {clean(exc, 200)}")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))
        return cls(frozenset(paths), source)

    def covers(self, cluster: ClusterRef) -> bool:
        """Whether the fleet lists ``cluster`` (every cluster is covered when no fleet is set)."""
        return not self.fleet or cluster.path in self.fleet

    def is_canary(self, finding_name: str | None) -> bool:
        """Whether the finding's name is under the canary source (``<source>[/locations/L]/findings/ID``). Only the
        name says so, and only a validated one: it is what SCC is then asked about."""
        if self.canary_source is None or not finding_name:
            return False
        try:
            ids.finding_name(finding_name)
        except InvalidIdentifier:
            return False
        match = ids.FINDING_NAME.fullmatch(finding_name)
        return match is not None and f"{match['scope']}/sources/{match['source']}" == self.canary_source


def outside_fleet_reason(cluster: ClusterRef, category: str | None) -> str:
    """Why a vouched finding in ``cluster`` was left alone: a real one, in a cluster somebody forgot."""
    return (
        f"cluster {cluster.path} is not in this deployment's fleet (RESPONDER_FLEET): a real "
        f"{clean(category or 'finding', 60)} finding in a cluster this deployment does not cover, so nothing was "
        "done to it; add the cluster to the fleet (with the responder's access) or have the deployment that covers "
        "it respond, and contain the pod by hand meanwhile"
    )


def canary_reason(source: str) -> str:
    """Why a vouched canary was left alone."""
    return f"the deployment's own canary (SCC vouches for it under {source}): the path works; nothing touched"
