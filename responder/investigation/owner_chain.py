"""The owner chain of a pod (ReplicaSet → Deployment, Job → CronJob, ...), walked once the same way everywhere."""

from __future__ import annotations

from responder.errors import ResponderError
from responder.ports import KubePort, OwnerRef, WorkloadView

MAX_OWNER_DEPTH = 5  # real chains are two deep; the bound keeps a malformed (cyclic) chain from looping


def walk(kube: KubePort, namespace: str, owner: OwnerRef | None) -> tuple[list[WorkloadView], ResponderError | None]:
    """Follow controller references from ``owner``; returns the chain read so far and the error that stopped it."""
    chain: list[WorkloadView] = []
    for _ in range(MAX_OWNER_DEPTH):
        if owner is None:
            break
        try:
            workload = kube.get_workload(namespace, owner)
        except ResponderError as exc:
            return chain, exc
        chain.append(workload)
        owner = next((o for o in workload.owners if o.controller), None)
    return chain, None
