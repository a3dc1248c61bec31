"""Reaching the finding's cluster, or saying why not in the terms containment needs (a :class:`Blocker`)."""

from __future__ import annotations

from responder.containment.base import Status
from responder.containment.runner import Blocker
from responder.errors import Forbidden, NotFound, ResponderError, TransientError, Unavailable
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.ports import ClusterConnector, Connection


def connect(connector: ClusterConnector | None, target: Target) -> tuple[Connection | None, str | None, Blocker | None]:
    """The cluster, or why not: (connection, why enrichment is unavailable, what that means for containment)."""
    if connector is None:
        why = "no cluster credentials configured (RESPONDER_KUBECONFIG or GKE access)"
        return None, why, Blocker(why, Status.SKIPPED, retry=False, fails_when_enforcing=True)
    try:
        return connector.connect(target.cluster), None, None
    except NotFound as exc:  # the cluster is gone: nothing left to contain
        why = f"cluster {target.cluster.path} not found: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.SKIPPED, retry=False)
    except Unavailable as exc:  # credentials or kubeconfig missing or unusable: an operator must look
        why = f"cluster {target.cluster.path} not reachable: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.SKIPPED, retry=False, fails_when_enforcing=True)
    except Forbidden as exc:
        why = f"forbidden (check IAM: container.clusters.get on {target.cluster.path}): {clean(exc, 200)}"
        return None, why, Blocker(why, Status.FAILED, retry=True)
    except TransientError:
        raise  # nothing was written yet: the whole delivery is retried
    except ResponderError as exc:
        why = f"cluster {target.cluster.path} could not be reached: {clean(exc, 200)}"
        return None, why, Blocker(why, Status.FAILED, retry=True)
