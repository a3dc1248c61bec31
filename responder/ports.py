"""Interfaces to the outside world, and the plain data that crosses them.

The core (triage, policy, actions, enrichment, report) only talks to these Protocols. ``responder/adapters`` implements
them with the real SDKs; unit tests implement them with hand-written fakes. Adapters translate SDK errors into
``responder.errors``: ``NotFound``, ``Conflict``, ``Forbidden``, ``TransientError`` (5xx, 429, timeouts),
``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from responder.intake.findings import Finding
from responder.intake.identifiers import ClusterRef


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


# ----------------------------------------------------------------------------------------------------- Kubernetes


class OwnerRef(_View):
    """A metadata.ownerReferences entry."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False


class ContainerView(_View):
    """A container of a pod, with its runtime status when known."""

    name: str
    image: str | None = None
    image_id: str | None = None
    ready: bool | None = None
    running: bool = False
    restart_count: int = 0
    privileged: bool = False
    run_as_user: int | None = None
    allow_privilege_escalation: bool | None = None


class PodView(_View):
    """The facts about a pod that containment and the report need."""

    namespace: str
    name: str
    uid: str
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owners: tuple[OwnerRef, ...] = ()
    node_name: str | None = None
    host_network: bool = False
    host_pid: bool = False
    service_account: str | None = None
    phase: str | None = None
    start_time: datetime | None = None
    created: datetime | None = None
    deleting: bool = False
    containers: tuple[ContainerView, ...] = ()
    manifest: dict[str, Any] = Field(default_factory=dict)  # the API object as JSON, kept as evidence

    @property
    def controller(self) -> OwnerRef | None:
        """The managing controller (ReplicaSet, StatefulSet, DaemonSet, Job), if any."""
        return next((o for o in self.owners if o.controller), None)


class WorkloadView(_View):
    """An object in a pod's owner chain (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob)."""

    kind: str
    namespace: str
    name: str
    uid: str
    owners: tuple[OwnerRef, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    replicas: int | None = None
    ready_replicas: int | None = None


class LabelSelectorRequirement(_View):
    """One matchExpressions entry."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(_View):
    """A Kubernetes label selector; the empty selector selects every pod."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes selector semantics (AND of all terms)."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            value = labels.get(req.key)
            ok = {
                "In": present and value in req.values,
                "NotIn": not present or value not in req.values,
                "Exists": present,
                "DoesNotExist": not present,
            }[req.operator]
            if not ok:
                return False
        return True


class NetworkPolicyView(_View):
    """A NetworkPolicy, reduced to what isolation reasons about."""

    namespace: str
    name: str
    resource_version: str | None = None
    pod_selector: LabelSelector = LabelSelector()
    policy_types: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)  # the whole spec as API JSON (rules included), to judge content


class ExecOutput(_View):
    """What one command printed inside a container (stdout and stderr interleaved) and how it ended. The text is the
    container's, so how it ended is kept apart from it, where the container cannot write."""

    text: str
    exit_code: int | None = None  # from the exec status channel: 0 on success; None when no status was read
    failure: str | None = None  # the status channel's message when the command failed (non-zero exit, or no start)
    truncated_at: int | None = None  # the byte cap, when the output reached it: the rest was never read
    stopped_after_s: float | None = None  # the deadline, when it passed before the command ended


class NodeView(_View):
    """A node: labels (pool, zone) and annotations (``container.googleapis.com/instance_id``)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class NamespaceView(_View):
    """A namespace's labels and annotations (owner / team contacts)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ServiceAccountView(_View):
    """A pod's service account: its annotations name its Google identity (Workload Identity); ``secrets`` are the
    Secrets its ``secrets`` field names (legacy Secret-based tokens, which no pod is bound to), by name only."""

    namespace: str
    name: str
    annotations: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    automount_token: bool | None = None  # automountServiceAccountToken; None: not set (pods mount a token)


class LeaseView(_View):
    """A coordination.k8s.io Lease used as a shared counter; ``annotations`` carry the data."""

    namespace: str
    name: str
    resource_version: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class ConfigMapView(_View):
    """A ConfigMap the responder keeps (the identity quarantine's parameter); ``data`` is its whole content."""

    namespace: str
    name: str
    resource_version: str | None = None
    data: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KubeRead:
    """One KubePort read, named by its method and given that method's arguments: for :meth:`KubePort.read_together`."""

    method: str  # get_pod, list_network_policies, get_config_map, get_namespace, list_objects, ...
    args: tuple[Any, ...] = ()


class KubePort(Protocol):
    """One cluster's Kubernetes API, as the responder uses it."""

    def get_pod(self, namespace: str, name: str) -> PodView: ...

    def read_together(self, reads: Sequence[KubeRead]) -> list[Future[Any]]:
        """Several reads in one round from the calling thread, none handed to another thread: each read's answer, or
        the error it would have raised alone, in a completed future, in order. A read whose first attempt fails
        transiently is made again alone, with the retries it has alone."""
        ...

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        """Merge-patch labels/annotations (None removes a key); the UID is a precondition (Conflict if replaced), and
        so is ``resource_version`` when given (Conflict if the pod changed since it was read): writes that restore a
        pod's state (rollback, release, detach) must not undo what a concurrent writer did in between."""
        ...

    def delete_pod(self, namespace: str, name: str, uid: str, grace_period_s: int | None) -> None:
        """Delete with a UID precondition, so a same-named replacement is never hit."""
        ...

    def get_workload(self, namespace: str, owner: OwnerRef) -> WorkloadView: ...

    def list_network_policies(self, namespace: str) -> list[NetworkPolicyView]: ...

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> NetworkPolicyView:
        """Create; raises Conflict if it already exists."""
        ...

    def set_network_policy_selector(
        self, namespace: str, name: str, selector: LabelSelector, resource_version: str | None
    ) -> NetworkPolicyView:
        """Replace spec.podSelector, optimistic on resourceVersion (Conflict if the policy changed)."""
        ...

    def replace_network_policy(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> NetworkPolicyView:
        """Replace the whole spec and the labels (a patch: no ``update`` right needed), optimistic on
        resourceVersion (Conflict if the policy changed)."""
        ...

    def list_pods(self, namespace: str | None, label_selector: str) -> list[PodView]:
        """Pods matching ``label_selector`` in ``namespace`` (every namespace when None). Only the operator commands
        (``status``, ``release``) call it, with the operator's rights: the function's RBAC has no ``pods: list``."""
        ...

    def delete_network_policy(self, namespace: str, name: str, resource_version: str | None) -> None:
        """Delete, with resourceVersion as precondition (Conflict if the policy changed since it was judged)."""
        ...

    def read_log(
        self,
        namespace: str,
        name: str,
        container: str | None,
        tail_lines: int,
        limit_bytes: int,
        *,
        expected_uid: str | None = None,
    ) -> str:
        """The container's log tail. ``expected_uid``: bound to that pod, as :meth:`exec` is."""
        ...

    def exec(
        self,
        namespace: str,
        name: str,
        container: str | None,
        argv: list[str],
        timeout_s: float,
        limit_bytes: int,
        *,
        expected_uid: str | None = None,
    ) -> ExecOutput:
        """Run argv in the container without a shell; at most ``limit_bytes`` of output and ``timeout_s`` seconds.
        A command that fails is an output too (its exit code and the status message). Raises Unavailable when exec
        cannot reach a container, Forbidden without the right.

        ``expected_uid``: the output is returned only if the pod by that name still has that UID once the command
        has ended (else PodReplaced). The apiserver resolves exec and logs by name alone, and a same-named
        replacement may stand there now; the caller's own earlier read of the pod with that UID is the check
        before, so one read after brackets the command: a UID is never reused and a name belongs to one pod at a
        time. A failure is checked too (its reason would be the replacement's)."""
        ...

    def get_node(self, name: str) -> NodeView: ...

    def get_namespace(self, name: str) -> NamespaceView: ...

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountView: ...

    def get_lease(self, namespace: str, name: str) -> LeaseView: ...

    def create_lease(self, namespace: str, name: str, annotations: Mapping[str, str]) -> LeaseView: ...

    def update_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], resource_version: str | None
    ) -> LeaseView: ...

    def get_config_map(self, namespace: str, name: str) -> ConfigMapView: ...

    def served_group_versions(self) -> frozenset[str]:
        """Every ``group/version`` the apiserver serves (API discovery: ``/apis``), cached for the connection's life
        (a few minutes at most): which kinds of cluster-scoped network policy the cluster has."""
        ...

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of an API kind as the apiserver stored it (JSON), cluster-wide or in ``namespace``: the
        cluster-scoped network policies, judged by content. NotFound when the kind is not served."""
        ...

    def create_object(self, group: str, version: str, plural: str, namespace: str | None, body: dict[str, Any]) -> None:
        """Create an object of an API kind (``release`` recreating a revoked RoleBinding, with the operator's
        rights); Conflict when one of that name exists."""
        ...

    def delete_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str, uid: str, resource_version: str
    ) -> None:
        """Delete with preconditions on ``uid`` and ``resource_version``: only the object that was judged (a binding
        revoked), never one changed or recreated since; Conflict when it moved, NotFound when it is gone."""
        ...

    def get_admission_binding(self, name: str) -> tuple[str, ...]:
        """The validationActions of the ValidatingAdmissionPolicyBinding ``name`` (NotFound when the cluster has
        none): whether an admission policy the responder relies on is in force there."""
        ...

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> ConfigMapView:
        """Create; raises Conflict if it already exists."""
        ...

    def update_config_map(
        self, namespace: str, name: str, data: Mapping[str, str], resource_version: str | None
    ) -> ConfigMapView:
        """Replace the whole ``data``, optimistic on resourceVersion (Conflict if it moved since it was read)."""
        ...

    def patch_config_map_data(self, namespace: str, name: str, data: Mapping[str, str | None]) -> ConfigMapView:
        """Merge-patch ``data`` key by key (None removes a key): concurrent writers of different keys never conflict.
        NotFound when the ConfigMap does not exist."""
        ...


# --------------------------------------------------------------------------------------------------------- Google


class ClusterInfo(_View):
    """GKE cluster metadata from the container API."""

    name: str
    location: str
    status: str | None = None
    version: str | None = None
    endpoint: str | None = None  # Cluster.endpoint as the API gives it: the private IP behind a private endpoint
    public_endpoint: str | None = None  # the public IP endpoint, from the fields that name it (never `endpoint`)
    private_endpoint: str | None = None
    dns_endpoint: str | None = None
    dns_endpoint_external: bool = False  # the DNS-based endpoint accepts traffic from outside the VPC
    ca_certificate: str | None = None  # base64 PEM, as the API returns it
    labels: dict[str, str] = Field(default_factory=dict)
    network_policy_enabled: bool = False
    datapath_provider: str | None = None
    autopilot: bool = False
    self_link: str | None = None

    @property
    def network_policy_enforced(self) -> bool:
        """NetworkPolicy works with the Calico add-on or with Dataplane V2 (ADVANCED_DATAPATH)."""
        return self.network_policy_enabled or self.datapath_provider == "ADVANCED_DATAPATH"


class ClusterAPI(Protocol):
    """The GKE container API."""

    def get_cluster(self, ref: ClusterRef) -> ClusterInfo: ...


class Connection(_View):
    """A cluster's Kubernetes API and, on GKE, the cluster metadata read to reach it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kube: Any  # KubePort; Any because pydantic cannot validate a Protocol
    info: ClusterInfo | None = None


class ClusterConnector(Protocol):
    """Gives a :class:`Connection` for a cluster (GKE endpoint + token, or one kubeconfig for every cluster)."""

    def connect(self, ref: ClusterRef) -> Connection:
        """Raises Unavailable when there are no credentials for the cluster."""
        ...


class LogEntry(_View):
    """One Cloud Logging entry, payload rendered to bounded text."""

    timestamp: datetime | None = None
    severity: str | None = None
    log_name: str | None = None
    text: str = ""
    resource_labels: dict[str, str] = Field(default_factory=dict)


class LogsAPI(Protocol):
    """Cloud Logging entries.list."""

    def search(self, project: str, filter_: str, limit: int) -> list[LogEntry]:
        """Newest first; at most ``limit`` entries."""
        ...


class SccFinding(_View):
    """A finding as SCC reports it now (for verification, write-back and the progress its marks record).

    ``pods`` are the (namespace, name) pairs SCC's own record names, from its ``kubernetes.pods[]`` and from its
    ``sourceProperties`` (``Pod_Namespace``/``Pod_Name``): what the message's pod is checked against. ``severity``
    and ``event_time`` are what the message's are compared with, or taken from when the message lacks them.
    """

    name: str
    state: str | None = None
    mute: str | None = None
    category: str | None = None
    severity: str | None = None
    event_time: datetime | None = None
    resource_name: str | None = None
    pods: tuple[tuple[str, str], ...] = ()
    marks: dict[str, str] = Field(default_factory=dict)
    # SCC's whole record read the way a notification is read: the source of every other field that steers the
    # response (node pool, container, the connection, Responder_Sample). The real adapter always fills it; None (a
    # fake that keeps only the fields above) means those fields are neither compared nor taken from SCC.
    steering: Finding | None = None


class FindingsAPI(Protocol):
    """Security Command Center, v1 or v2 chosen from the finding name."""

    def get_finding(self, name: str) -> SccFinding | None:
        """``list_findings`` filtered by name under the finding's source; None when SCC does not know it."""
        ...

    def update_marks(self, name: str, marks: Mapping[str, str]) -> None:
        """Set exactly these mark keys (field mask ``marks.<key>``), leaving other marks alone."""
        ...

    def set_state(self, name: str, state: Literal["ACTIVE", "INACTIVE"], when: datetime) -> None: ...


class Publisher(Protocol):
    """Pub/Sub publishing (incident reports to owners)."""

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Returns the message ID once the server has it."""
        ...
