"""The sample world of the investigation and report tests: the shared samples' finding and target, and the cluster
they describe (a Deployment's pod on a node, in a namespace with an owner), seeded into the one in-memory fake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from responder.intake.findings import Finding, to_finding
from responder.intake.identifiers import ClusterRef
from responder.intake.notification import parse_notification
from responder.intake.triage import Target, triage
from responder.ports import (
    ClusterInfo,
    Connection,
    ContainerView,
    LogEntry,
    NamespaceView,
    NodeView,
    OwnerRef,
    PodView,
    ServiceAccountView,
    WorkloadView,
)
from tests.unit.fakes import FakeKube

SAMPLES = Path(__file__).resolve().parents[1] / "corpus"  # copies of the shared samples, inside the repo
REGIONAL = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")
ZONAL = ClusterRef(project="example-bank-prod", location="asia-northeast1-a", name="ledger-gke")
EVENT_TIME = datetime(2026, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
INSTANCE_ID = "4412896150022334455"


def sample_finding(name: str = "reverse_shell_v1.json") -> Finding:
    """A shared sample notification, reduced to a :class:`Finding`."""
    return to_finding(parse_notification((SAMPLES / name).read_bytes()))


def sample_target(name: str = "reverse_shell_v1.json") -> Target:
    """The validated target triage derives from a shared sample."""
    verdict = triage(sample_finding(name))
    assert verdict.target is not None, verdict.reason
    return verdict.target


def make_target(
    cluster: ClusterRef = REGIONAL,
    namespace: str = "storefront",
    pod: str = "cart-api-5c8d7b9f4-q7w2z",
    container: str | None = "api",
    node: str | None = "gke-retail-gke-default-pool-3f9c1a2b-x7kq",
) -> Target:
    """A target built directly (tests of the defensive checks pass values triage would have rejected)."""
    return Target(cluster=cluster, namespace=namespace, pod=pod, container=container, node=node)


def ReportKube(
    target: Target, *, instance_id: str | None = INSTANCE_ID, owner_label: str | None = "payments"
) -> FakeKube:
    """The shared in-memory cluster, seeded as one Deployment's pod on a node, in a namespace with an owner."""
    kube = FakeKube()
    rs = OwnerRef(api_version="apps/v1", kind="ReplicaSet", name="cart-api-5c8d7b9f4", uid="rs-1", controller=True)
    dep = OwnerRef(api_version="apps/v1", kind="Deployment", name="cart-api", uid="dep-1", controller=True)
    kube.pods[(target.namespace, target.pod)] = PodView(
        namespace=target.namespace,
        name=target.pod,
        uid="pod-uid-1",
        resource_version="7",
        labels={"app": "cart-api", "pod-template-hash": "5c8d7b9f4"},
        annotations={"kubectl.kubernetes.io/restartedAt": "2026-03-13T22:00:00Z"},
        owners=(rs,),
        node_name=target.node,
        service_account="cart-api",
        phase="Running",
        start_time=datetime(2026, 3, 13, 22, 4, 11, tzinfo=UTC),
        containers=(
            ContainerView(
                name=target.container or "api",
                image="us-docker.pkg.dev/example-retail-prod/apps/cart-api:1.42.0",
                image_id="us-docker.pkg.dev/example-retail-prod/apps/cart-api@sha256:" + "3c" * 32,
                ready=True,
                running=True,
                restart_count=2,
                privileged=True,
                run_as_user=0,
            ),
        ),
        manifest={"kind": "Pod", "metadata": {"name": target.pod}},
    )
    kube.service_accounts[(target.namespace, "cart-api")] = ServiceAccountView(
        namespace=target.namespace,
        name="cart-api",
        annotations={"iam.gke.io/gcp-service-account": "cart-api@example-retail-prod.iam.gserviceaccount.com"},
    )
    kube.workloads[(target.namespace, "ReplicaSet", "cart-api-5c8d7b9f4")] = WorkloadView(
        kind="ReplicaSet", namespace=target.namespace, name="cart-api-5c8d7b9f4", uid="rs-1", owners=(dep,)
    )
    kube.workloads[(target.namespace, "Deployment", "cart-api")] = WorkloadView(
        kind="Deployment", namespace=target.namespace, name="cart-api", uid="dep-1", replicas=3, ready_replicas=3
    )
    node = target.node or "node-1"
    kube.nodes[node] = NodeView(
        name=node,
        labels={"cloud.google.com/gke-nodepool": "default-pool", "topology.kubernetes.io/zone": "us-east1-b"},
        annotations={"container.googleapis.com/instance_id": instance_id} if instance_id else {},
    )
    kube.namespaces[target.namespace] = NamespaceView(
        name=target.namespace, labels={"team": owner_label} if owner_label else {}
    )
    kube.logs_text = "GET /cart 200\nPOST /cart 201\n"
    kube.ps_text = "  PID COMMAND\n    1 /app/server\n 4242  \\_ bash -i\n"
    return kube


def cluster_info(ref: ClusterRef = REGIONAL, *, owner: str | None = None, netpol: bool = True) -> ClusterInfo:
    """GKE metadata as the container API would report it."""
    return ClusterInfo(
        name=ref.name,
        location=ref.location,
        status="RUNNING",
        version="1.30.5-gke.1014001",
        labels={"owner": owner} if owner else {},
        network_policy_enabled=netpol,
    )


def connection(kube: FakeKube, info: ClusterInfo | None = None) -> Connection:
    """A connection as the GKE connector returns it."""
    return Connection(kube=kube, info=info)


def entry(minute: int, text: str, severity: str = "INFO") -> LogEntry:
    """A log entry at 09:<minute> on the event day."""
    return LogEntry(timestamp=datetime(2026, 3, 14, 9, minute, tzinfo=UTC), severity=severity, text=text)
