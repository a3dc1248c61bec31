"""Reaching the finding's cluster and its pod, or saying why not in the terms containment needs (a :class:`Blocker`)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from responder.containment.base import Status
from responder.errors import Forbidden, NotFound, ResponderError, TransientError, Unavailable
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.ports import ClusterConnector, Connection, PodView


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why no step can run (cluster or pod unavailable), and whether that is a failure to redeliver.

    ``fails_when_enforcing``: harmless for a plan (dry-run replays decide without a cluster), but when the plan was
    to act it means the pod was never contained, so it is a failure and the delivery is redelivered.
    """

    reason: str
    status: Status
    retry: bool
    fails_when_enforcing: bool = False


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


def read_pod(
    connection: Connection, target: Target, started: Future[PodView] | None = None
) -> tuple[PodView | None, Blocker | None]:
    """The pod, or why containment cannot start. Only a 404 means the pod is gone; a 403 or any other failure
    is a failure (retried), never "already gone". ``started``: that read, already under way (shared)."""
    where = f"{target.namespace}/{target.pod}"
    try:
        pod: PodView = (
            started.result() if started is not None else connection.kube.get_pod(target.namespace, target.pod)
        )
        return pod, None
    except NotFound:
        return None, Blocker(f"pod {where} not found (404): already gone", Status.SKIPPED, retry=False)
    except Forbidden as exc:
        why = f"forbidden (check RBAC: pods get in {target.namespace}): {clean(exc, 200)}"
        return None, Blocker(why, Status.FAILED, retry=True)
    except ResponderError as exc:
        kind = "transient failure, will retry on redelivery" if isinstance(exc, TransientError) else "failed"
        return None, Blocker(f"could not read pod {where} ({kind}): {clean(exc, 200)}", Status.FAILED, retry=True)
