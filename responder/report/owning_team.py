"""The owning team: who to contact about a workload (runbook step 7), from namespace or cluster labels.

Not to be confused with Kubernetes ownerReferences (``responder.investigation.investigator.owner_chain``): this is
about people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from responder.intake.sanitize import clean
from responder.ports import ClusterInfo, NamespaceView
from responder.report.models import OwningTeam


def find_owning_team(
    keys: Iterable[str], namespace: NamespaceView | None, cluster: ClusterInfo | None
) -> OwningTeam | None:
    """The first of ``keys`` on the namespace (labels, then annotations), else on the cluster's labels."""
    keys = tuple(keys)
    # Namespace first, key by key (labels before annotations): the team owning the namespace is closer to the
    # workload than whoever owns the cluster.
    if namespace is not None:
        for key in keys:
            for source, values in (
                ("namespace label", namespace.labels),
                ("namespace annotation", namespace.annotations),
            ):
                found = _owner_value(values, key, source)
                if found:
                    return found
    if cluster is not None:
        for key in keys:
            found = _owner_value(cluster.labels, key, "cluster label")
            if found:
                return found
    return None


def _owner_value(values: Mapping[str, str], key: str, source: str) -> OwningTeam | None:
    value = (values.get(key) or "").strip()
    return OwningTeam(value=clean(value, 200), key=clean(key, 100), source=source) if value else None
