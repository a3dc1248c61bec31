"""Investigation: the cluster, node, pod and owner facts a responder would look up by hand (runbook steps 2–4).

Branches run concurrently with containment and never delay it; each has a timeout, and a failed or unavailable
branch is recorded with its reason rather than failing the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from responder.errors import NotFound, ResponderError, Unavailable
from responder.findings import Finding
from responder.ports import (
    ClusterInfo,
    Connection,
    KubePort,
    LogsAPI,
    NamespaceView,
    NodeView,
    PodView,
    WorkloadView,
)
from responder.sanitize import clean
from responder.triage import Target

T = TypeVar("T")
INSTANCE_ID_ANNOTATION = "container.googleapis.com/instance_id"
MAX_OWNER_DEPTH = 5


class Branch(BaseModel):
    """How one investigation branch went."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "unavailable", "failed", "timeout"]
    detail: str | None = None
    duration_ms: float = 0.0


class Investigation(BaseModel):
    """Everything gathered about the incident; fields are None when their branch did not succeed."""

    model_config = ConfigDict(frozen=True)

    cluster: ClusterInfo | None = None
    node: NodeView | None = None
    instance_id: str | None = None
    pod: PodView | None = None
    owner_chain: tuple[WorkloadView, ...] = ()
    namespace: NamespaceView | None = None
    branches: dict[str, Branch] = Field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        """Branch → status (with reason), for the decision record."""
        return {k: b.status if not b.detail else f"{b.status}: {b.detail}" for k, b in self.branches.items()}


class Investigator:
    """Runs the branches with a pool and a per-branch timeout."""

    def __init__(self, logs: LogsAPI | None, timeout_s: float, pool: ThreadPoolExecutor) -> None:
        self.logs = logs
        self.timeout_s = timeout_s
        self.pool = pool

    def investigate(
        self, finding: Finding, target: Target, connection: Connection | None, unavailable_reason: str | None = None
    ) -> Investigation:
        """Gather facts; never raises for a dependency failure."""
        kube: KubePort | None = connection.kube if connection else None
        why = unavailable_reason or "no cluster access"
        jobs: dict[str, Future[tuple[object, float]]] = {}
        branches: dict[str, Branch] = {}
        started = time.monotonic()

        def submit(name: str, fn: Callable[[], object]) -> None:
            jobs[name] = self.pool.submit(_timed, fn)

        if kube is not None:
            node_name = target.node
            submit("pod", lambda: _pod_facts(kube, target))
            if node_name:
                submit("node", lambda: kube.get_node(node_name))
            submit("namespace", lambda: kube.get_namespace(target.namespace))
        else:
            for name in ("pod", "node", "namespace"):
                branches[name] = Branch(status="unavailable", detail=why)
        cluster = connection.info if connection else None
        branches["cluster"] = (
            Branch(status="ok")
            if cluster
            else Branch(status="unavailable", detail=why if not connection else "not a GKE connection (kubeconfig)")
        )

        values: dict[str, object] = {}
        for name, future in jobs.items():
            remaining = max(0.0, self.timeout_s - (time.monotonic() - started))
            try:
                outcome = future.result(timeout=remaining)
                assert isinstance(outcome, tuple)
                values[name], elapsed = outcome
                branches[name] = Branch(status="ok", duration_ms=elapsed)
            except FutureTimeout:
                branches[name] = Branch(status="timeout", detail=f"no answer within {self.timeout_s:g}s")
            except Unavailable as exc:
                branches[name] = Branch(status="unavailable", detail=clean(exc, 200))
            except NotFound as exc:
                branches[name] = Branch(status="failed", detail=f"not found: {clean(exc, 200)}")
            except ResponderError as exc:
                branches[name] = Branch(status="failed", detail=clean(exc, 200))
            except Exception as exc:  # a bug in one branch must not cost the others or the containment
                branches[name] = Branch(status="failed", detail=f"{type(exc).__name__}: {clean(exc, 200)}")

        pod_facts = values.get("pod")
        pod, owners = pod_facts if isinstance(pod_facts, tuple) else (None, ())
        node = values.get("node")
        node_view = node if isinstance(node, NodeView) else None
        namespace = values.get("namespace")
        return Investigation(
            cluster=cluster,
            node=node_view,
            instance_id=node_view.annotations.get(INSTANCE_ID_ANNOTATION) if node_view else None,
            pod=pod,
            owner_chain=tuple(owners),
            namespace=namespace if isinstance(namespace, NamespaceView) else None,
            branches=branches,
        )


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    value = fn()
    return value, round((time.monotonic() - start) * 1000, 1)


def _pod_facts(kube: KubePort, target: Target) -> tuple[PodView, list[WorkloadView]]:
    pod = kube.get_pod(target.namespace, target.pod)
    chain: list[WorkloadView] = []
    owner = pod.controller
    for _ in range(MAX_OWNER_DEPTH):
        if owner is None:
            break
        workload = kube.get_workload(target.namespace, owner)
        chain.append(workload)
        owner = next((o for o in workload.owners if o.controller), None)
    return pod, chain
