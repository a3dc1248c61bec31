"""Investigation: the cluster, node, pod, owner and log facts a responder would look up by hand (runbook steps 2–4).

Branches run concurrently with containment and never delay it; they share one deadline (``timeout_s`` from the
start), and a failed, slow or unavailable branch is recorded with its reason rather than failing the event.

Log searches (step 4) need only the validated target, so they start at once, next to the Kubernetes reads; the node's
serial console needs the numeric instance ID from the node's annotation, so that search starts as soon as the node
branch answers, and the writes made with the pod's identity need its service account, so that one starts with the
reads of the account and of what it may do (``rights``) as soon as the pod branch answers. Each filter is kept
verbatim in the investigation, also when the search failed or Logging is not configured here, so the report can
always show the human what to run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from responder.errors import NotFound, ResponderError, Unavailable
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.investigation import logfilters, rights
from responder.investigation.logfilters import LogWindow
from responder.investigation.rights import Rights
from responder.ports import (
    ClusterInfo,
    Connection,
    KubePort,
    LogEntry,
    LogsAPI,
    NamespaceView,
    NodeView,
    OwnerRef,
    PodView,
    ServiceAccountView,
    WorkloadView,
)

T = TypeVar("T")
PodFacts = Future[tuple[object, float]]  # (PodView, owner chain), elapsed ms: see Investigator.pod_facts
INSTANCE_ID_ANNOTATION = "container.googleapis.com/instance_id"
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
DEFAULT_MAX_ENTRIES = 50

LogKind = Literal["container", "audit", "serial_console", "identity_writes"]
LOG_KINDS: tuple[LogKind, ...] = ("container", "audit", "serial_console", "identity_writes")
LOG_TITLES: dict[LogKind, str] = {
    "container": "Pod container logs",
    "audit": "Cluster audit logs (Admin Activity) for the pod",
    "serial_console": "Node serial console (port 1)",
    "identity_writes": "Writes made with the pod's service account since the event (Admin Activity: writes only)",
}


class Branch(BaseModel):
    """How one investigation branch went."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    status: Literal["ok", "unavailable", "failed", "timeout"]
    detail: str | None = None
    duration_ms: float = 0.0


class LogSearch(BaseModel):
    """One of the runbook's log searches: its filter (verbatim, also when not run) and the newest entries found."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: LogKind
    title: str
    project: str
    filter: str | None = None  # None only when it cannot be built (the serial console without an instance ID)
    limit: int = DEFAULT_MAX_ENTRIES
    entries: tuple[LogEntry, ...] = ()

    @property
    def branch(self) -> str:
        """The key of this search in :attr:`Investigation.branches`."""
        return f"logs.{self.kind}"


class Investigation(BaseModel):
    """Everything gathered about the incident; fields are None when their branch did not succeed."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    cluster: ClusterInfo | None = None
    node: NodeView | None = None
    instance_id: str | None = None
    node_pool: str | None = None
    zone: str | None = None
    pod: PodView | None = None
    owner_chain: tuple[WorkloadView, ...] = ()
    namespace: NamespaceView | None = None
    service_account: ServiceAccountView | None = None  # the pod's (its Google identity, for the report)
    rights: Rights | None = None  # what that account may do: the RBAC bindings naming it
    log_window: LogWindow | None = None
    logs: tuple[LogSearch, ...] = ()
    branches: dict[str, Branch] = Field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        """Branch → status (with reason), for the decision record."""
        return {k: b.status if not b.detail else f"{b.status}: {b.detail}" for k, b in self.branches.items()}

    def log(self, kind: LogKind) -> LogSearch | None:
        """The search of that kind, if it was planned."""
        return next((s for s in self.logs if s.kind == kind), None)


class Investigator:
    """Runs the branches on a pool, all bounded by one deadline of ``timeout_s``."""

    def __init__(
        self,
        logs: LogsAPI | None,
        timeout_s: float,
        pool: ThreadPoolExecutor,
        log_window_min: int = 30,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.logs = logs
        self.timeout_s = timeout_s
        self.pool = pool
        self.log_window_min = log_window_min
        self.max_entries = max(0, max_entries)
        self.clock = clock or (lambda: datetime.now(UTC))

    def investigate(
        self,
        finding: Finding,
        target: Target,
        connection: Connection | None,
        unavailable_reason: str | None = None,
        pod_facts: PodFacts | None = None,
    ) -> Investigation:
        """Gather facts; never raises for a dependency failure. ``pod_facts``: see :meth:`pod_facts`."""
        run = _Gathering(self, finding, target, connection, unavailable_reason, pod_facts)
        return run.collect()

    @staticmethod
    def pod_facts(
        kube: KubePort, target: Target, pod_read: Future[PodView], since: float | None = None
    ) -> tuple[object, float]:
        """The pod and its owner chain, timed: the ``pod`` branch, run by the caller so that its result is shared
        with evidence capture (read once). ``pod_read``: containment's own read of the pod, not a second read;
        ``since``: when that read started (``time.monotonic``), so that the branch's duration includes it."""
        start = time.monotonic() if since is None else since
        value = _pod_facts(kube, target, pod_read)
        return value, round((time.monotonic() - start) * 1000, 1)


class _Gathering:
    """One investigation: its futures, their branch names, and the results so far."""

    def __init__(
        self,
        owner: Investigator,
        finding: Finding,
        target: Target,
        connection: Connection | None,
        unavailable_reason: str | None,
        pod_facts: PodFacts | None = None,
    ) -> None:
        self.inv = owner
        self.pod_facts = pod_facts
        self.target = target
        self.connection = connection
        self.kube: KubePort | None = connection.kube if connection else None
        self.why = unavailable_reason or "no cluster access"
        self.started = time.monotonic()
        self.deadline = self.started + owner.timeout_s
        self.pending: dict[Future[tuple[object, float]], str] = {}
        self.values: dict[str, object] = {}
        self.branches: dict[str, Branch] = {}
        self.window = logfilters.log_window(finding.event_time, owner.log_window_min, now=owner.clock())
        self.searches: dict[LogKind, LogSearch] = {}
        self.serial_decided = False
        self.writes_decided = False
        self.finding = finding

    # ----------------------------------------------------------------------------------------------- scheduling
    def submit(self, name: str, fn: Callable[[], object]) -> None:
        self.pending[self.inv.pool.submit(_timed, fn)] = name

    def start(self) -> None:
        kube, target = self.kube, self.target
        if kube is not None:
            if self.pod_facts is not None:
                self.pending[self.pod_facts] = "pod"
            else:
                self.submit("pod", lambda: _pod_facts(kube, target))
            node_name = target.node
            if node_name:
                self.submit("node", lambda: kube.get_node(node_name))
            else:
                self.branches["node"] = Branch(status="unavailable", detail="the finding names no node")
            self.submit("namespace", lambda: kube.get_namespace(target.namespace))
        else:
            for name in ("pod", "node", "namespace"):
                self.branches[name] = Branch(status="unavailable", detail=self.why)
        cluster = self.connection.info if self.connection else None
        self.branches["cluster"] = (
            Branch(status="ok")
            if cluster
            else Branch(
                status="unavailable", detail=self.why if not self.connection else "not a GKE connection (kubeconfig)"
            )
        )
        self.plan_search("container", lambda: logfilters.container_filter(target, self.window))
        self.plan_search("audit", lambda: logfilters.audit_filter(target, self.window))
        if self.kube is None or not target.node:
            # No node branch will answer, so the instance ID (and with it the serial-console filter) stays unknown.
            reason = self.why if self.kube is None else "the finding names no node"
            self.decide_serial(None, f"instance ID unknown: {reason}")

    def plan_search(self, kind: LogKind, build: Callable[[], str]) -> None:
        """Build the filter, record it, and run the search when Logging is available."""
        branch = f"logs.{kind}"
        project = self.target.cluster.project
        try:
            filter_ = build()
        except ResponderError as exc:  # InvalidIdentifier: a value that must not reach a filter
            self.searches[kind] = LogSearch(kind=kind, title=LOG_TITLES[kind], project=project)
            self.branches[branch] = Branch(status="failed", detail=f"filter not built: {clean(exc, 200)}")
            return
        self.searches[kind] = LogSearch(
            kind=kind, title=LOG_TITLES[kind], project=project, filter=filter_, limit=self.inv.max_entries
        )
        logs = self.inv.logs
        if logs is None:
            self.branches[branch] = Branch(
                status="unavailable", detail="Cloud Logging is not configured here; run the filter by hand"
            )
            return
        limit = self.inv.max_entries
        self.submit(branch, lambda: _search(logs, project, filter_, limit))

    def decide_serial(self, instance_id: str | None, reason: str | None) -> None:
        """Plan the serial-console search once the instance ID is known (or known to be unknowable)."""
        if self.serial_decided:
            return
        self.serial_decided = True
        if instance_id is None:
            self.searches["serial_console"] = LogSearch(
                kind="serial_console", title=LOG_TITLES["serial_console"], project=self.target.cluster.project
            )
            self.branches["logs.serial_console"] = Branch(status="unavailable", detail=reason)
            return
        self.plan_search("serial_console", lambda: logfilters.serial_console_filter(instance_id, self.window))

    # ------------------------------------------------------------------------------------------------- collecting
    def collect(self) -> Investigation:
        self.start()
        while self.pending:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            done, _ = wait(list(self.pending), timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                name = self.pending.pop(future)
                self.record(name, future)
                if name == "node":
                    self.after_node()
                elif name == "pod":
                    self.after_pod()
        for future, name in self.pending.items():
            future.cancel()  # not started yet: don't start it; running ones finish in the background
            self.branches[name] = Branch(status="timeout", detail=f"no answer within {self.inv.timeout_s:g}s")
        if not self.serial_decided:
            node = self.branches.get("node")
            self.decide_serial(None, f"instance ID unknown: node branch {node.status if node else 'did not run'}")
        if not self.writes_decided:
            pod = self.branches.get("pod")
            self.decide_writes(None, f"service account unknown: pod branch {pod.status if pod else 'did not run'}")
        return self.result()

    def record(self, name: str, future: Future[tuple[object, float]]) -> None:
        try:
            self.values[name], elapsed = future.result()
            self.branches[name] = Branch(status="ok", duration_ms=elapsed)
        except Unavailable as exc:
            self.branches[name] = Branch(status="unavailable", detail=clean(exc, 200))
        except NotFound as exc:
            self.branches[name] = Branch(status="failed", detail=f"not found: {clean(exc, 200)}")
        except ResponderError as exc:
            self.branches[name] = Branch(status="failed", detail=clean(exc, 200))
        except Exception as exc:  # a bug in one branch must not cost the others or the containment
            self.branches[name] = Branch(status="failed", detail=f"{type(exc).__name__}: {clean(exc, 200)}")

    def after_pod(self) -> None:
        """The pod names its service account: read it (its annotations name its Google identity), what RBAC lets it
        do, and search for the writes made with it."""
        facts, kube = self.values.get("pod"), self.kube
        pod = facts[0] if isinstance(facts, tuple) and facts and isinstance(facts[0], PodView) else None
        if pod is None or kube is None:
            for name in ("service_account", "rights"):
                self.branches[name] = Branch(status="unavailable", detail="the pod could not be read")
            self.decide_writes(None, "service account unknown: the pod could not be read")
            return
        namespace, account = pod.namespace, pod.service_account or "default"
        self.submit("service_account", lambda: kube.get_service_account(namespace, account))
        self.submit("rights", lambda: rights.gather(kube, namespace, account))
        self.decide_writes(account, None)

    def decide_writes(self, account: str | None, reason: str | None) -> None:
        """Plan the search of the account's writes once the pod names the account (or cannot)."""
        if self.writes_decided:
            return
        self.writes_decided = True
        if account is None:
            kind: LogKind = "identity_writes"
            self.searches[kind] = LogSearch(kind=kind, title=LOG_TITLES[kind], project=self.target.cluster.project)
            self.branches["logs.identity_writes"] = Branch(status="unavailable", detail=reason)
            return
        since = logfilters.since_event(self.window, self.finding.event_time, self.inv.clock())
        namespace = self.target.namespace
        self.plan_search(
            "identity_writes", lambda: logfilters.identity_writes_filter(self.target, namespace, account, since)
        )

    def after_node(self) -> None:
        node = self.values.get("node")
        if not isinstance(node, NodeView):
            status = self.branches["node"]
            self.decide_serial(None, f"instance ID unknown: node branch {status.status}")
            return
        instance_id = node.annotations.get(INSTANCE_ID_ANNOTATION)
        if not instance_id:
            self.decide_serial(None, f"node {node.name} has no {INSTANCE_ID_ANNOTATION} annotation")
            return
        self.decide_serial(instance_id, None)

    def result(self) -> Investigation:
        pod_facts = self.values.get("pod")
        pod, owners = pod_facts if isinstance(pod_facts, tuple) else (None, ())
        node = self.values.get("node")
        node_view = node if isinstance(node, NodeView) else None
        namespace = self.values.get("namespace")
        logs = []
        for kind in LOG_KINDS:
            search = self.searches.get(kind)
            if search is None:
                continue
            entries = self.values.get(search.branch)
            if isinstance(entries, tuple):
                search = search.model_copy(update={"entries": entries})
            logs.append(search)
        labels = node_view.labels if node_view else {}
        return Investigation(
            cluster=self.connection.info if self.connection else None,
            node=node_view,
            instance_id=node_view.annotations.get(INSTANCE_ID_ANNOTATION) if node_view else None,
            node_pool=labels.get(NODE_POOL_LABEL),
            zone=next((labels[k] for k in ZONE_LABELS if labels.get(k)), None),
            pod=pod,
            owner_chain=tuple(owners),
            namespace=namespace if isinstance(namespace, NamespaceView) else None,
            service_account=account
            if isinstance(account := self.values.get("service_account"), ServiceAccountView)
            else None,
            rights=found if isinstance(found := self.values.get("rights"), Rights) else None,
            log_window=self.window,
            logs=tuple(logs),
            branches=self.branches,
        )


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    value = fn()
    return value, round((time.monotonic() - start) * 1000, 1)


def _search(logs: LogsAPI, project: str, filter_: str, limit: int) -> tuple[LogEntry, ...]:
    """Newest first and at most ``limit``, whatever the adapter returned."""
    if limit <= 0:
        return ()
    entries = logs.search(project, filter_, limit)
    dated = sorted((e for e in entries if e.timestamp is not None), key=_sort_key, reverse=True)
    undated = [e for e in entries if e.timestamp is None]
    return tuple([*dated, *undated][:limit])


def _sort_key(entry: LogEntry) -> datetime:
    assert entry.timestamp is not None
    ts = entry.timestamp
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _pod_facts(
    kube: KubePort, target: Target, pod_read: Future[PodView] | None = None
) -> tuple[PodView, list[WorkloadView]]:
    pod = pod_read.result() if pod_read is not None else kube.get_pod(target.namespace, target.pod)
    chain, error = owner_chain(kube, target.namespace, pod.controller)
    if error is not None:
        raise error
    return pod, chain


MAX_OWNER_DEPTH = 5  # real chains are two deep; the bound keeps a malformed (cyclic) chain from looping


def owner_chain(
    kube: KubePort, namespace: str, owner: OwnerRef | None
) -> tuple[list[WorkloadView], ResponderError | None]:
    """The pod's owner chain (ReplicaSet → Deployment, Job → CronJob, ...), walked the same way by the investigation
    and evidence capture: follow controller references from ``owner``; the chain read so far and the error that
    stopped it."""
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
