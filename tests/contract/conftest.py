"""One set of cases, two implementations of ``KubePort``: ``FakeKube`` and ``KubeAdapter`` on the local apiserver.

Every contract test takes the ``side`` fixture, parametrised over both. A side is the port under test plus the few
ways to arrange what the port itself cannot create (pods, namespaces, nodes, a Deployment and its ReplicaSet): on the
fake they seed its dictionaries, on the real apiserver they create the objects with the admin client. The cases then
act and read back only through the port, so a behaviour the fake gets wrong fails on the fake's run of the case.

The real adapter runs as cluster-admin here, on purpose: these cases pin the API's semantics (404, 409, preconditions,
merge rules), and the responder's RBAC has its own suite (tests/integration/test_least_authority.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from responder.ports import KubePort, NamespaceView, NodeView, OwnerRef, PodView
from tests.support.common import unique
from tests.unit.fakes import FakeKube

REAL = "real"
FAKE = "fake"


class Side(Protocol):
    """The port under test, and how to arrange objects the port cannot create."""

    namespace: str  # a namespace that exists and is this test's alone

    @property
    def name(self) -> str:
        """FAKE or REAL."""
        ...

    @property
    def kube(self) -> KubePort:
        """The implementation under test."""
        ...

    def add_pod(self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> PodView:
        """A standalone pod (on the real apiserver: unscheduled, Pending)."""
        ...

    def replace_pod(self, name: str) -> PodView:
        """Delete the pod and create another under the same name (a new UID), as a controller's replacement."""
        ...

    def add_namespace(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        """Another namespace, with these labels and annotations; returns its name."""
        ...

    def add_node(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        """A node object (on the real apiserver: unschedulable, no kubelet); returns its name."""
        ...

    def add_deployment(self, name: str) -> tuple[OwnerRef, OwnerRef]:
        """A Deployment with zero replicas and its ReplicaSet: (the Deployment's reference, the ReplicaSet's)."""
        ...


# ------------------------------------------------------------------------------------------------------ the fake


@dataclass
class FakeSide:
    kube: FakeKube = field(default_factory=FakeKube)
    name: str = FAKE
    namespace: str = "shop"

    def __post_init__(self) -> None:
        self.kube.namespaces[self.namespace] = NamespaceView(name=self.namespace)

    def add_pod(self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> PodView:
        # Not running, as the real side's pods are: they do not tolerate the node's taint and stay Pending.
        pod = self.kube.add_pod(self.namespace, name, labels, controller=None, running=False)
        if annotations:
            pod = pod.model_copy(update={"annotations": dict(annotations)})
            self.kube.pods[(self.namespace, name)] = pod
        return pod

    def replace_pod(self, name: str) -> PodView:
        old = self.kube.pods.pop((self.namespace, name))
        return self.add_pod(name, old.labels, old.annotations)

    def add_namespace(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        name = unique("other")
        self.kube.namespaces[name] = NamespaceView(name=name, labels=dict(labels), annotations=dict(annotations))
        return name

    def add_node(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        name = unique("node")
        self.kube.nodes[name] = NodeView(name=name, labels=dict(labels), annotations=dict(annotations))
        return name

    def add_deployment(self, name: str) -> tuple[OwnerRef, OwnerRef]:
        rs = f"{name}-5d9c"
        self.kube.add_workload(self.namespace, "Deployment", name, ready=0)
        self.kube.add_workload(self.namespace, "ReplicaSet", rs, ready=0, owner=("Deployment", name))
        return (
            OwnerRef(api_version="apps/v1", kind="Deployment", name=name, uid=f"uid-{name}", controller=True),
            OwnerRef(api_version="apps/v1", kind="ReplicaSet", name=rs, uid=f"uid-{rs}", controller=True),
        )


# ----------------------------------------------------------------------------------------- the real apiserver


@dataclass
class RealSide:
    admin: Any  # kubernetes.client.ApiClient, cluster-admin
    namespace: str
    kube: KubePort
    name: str = REAL
    cleanups: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) of cluster-scoped leftovers

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.admin)

    def add_pod(self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> PodView:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations or {})},
            # A scheduler that does not exist: the pod stays Pending and nothing writes its status behind the
            # test's back (the real node's scheduler would mark it Unschedulable, moving its resourceVersion).
            "spec": {
                "schedulerName": "rsr-contract-none",
                "containers": [{"name": "api", "image": "registry.invalid/shop/web:1.0"}],
            },
        }
        self.core.create_namespaced_pod(self.namespace, body)
        return self.kube.get_pod(self.namespace, name)

    def replace_pod(self, name: str) -> PodView:
        from kubernetes import client

        old = self.kube.get_pod(self.namespace, name)
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # an unscheduled pod goes at once; wait for the store to say so
            try:
                self.core.read_namespaced_pod(name, self.namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    break
                raise
            time.sleep(0.1)
        return self.add_pod(name, old.labels, old.annotations)

    def add_namespace(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        from tests.support.kube import TEST_NAMESPACE_LABEL

        name = unique("rsr-c")
        meta = {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true", **labels}, "annotations": dict(annotations)}
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        self.cleanups.append(("namespace", name))
        return name

    def add_node(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        name = unique("rsr-contract-node")
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations)},
            # Never a home for a pod: no kubelet stands behind this object.
            "spec": {"unschedulable": True, "taints": [{"key": "rsr.dev/contract", "effect": "NoSchedule"}]},
        }
        self.core.create_node(body)
        self.cleanups.append(("node", name))
        return name

    def add_deployment(self, name: str) -> tuple[OwnerRef, OwnerRef]:
        from kubernetes import client

        labels = {"app": name}
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "api", "image": "registry.invalid/shop/web:1.0"}]},
                },
            },
        }
        apps = client.AppsV1Api(self.admin)
        made = apps.create_namespaced_deployment(self.namespace, body)
        deployment = OwnerRef(
            api_version="apps/v1", kind="Deployment", name=name, uid=made.metadata.uid, controller=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the controller-manager makes the ReplicaSet
            for rs in apps.list_namespaced_replica_set(self.namespace, label_selector=f"app={name}").items:
                return deployment, OwnerRef(
                    api_version="apps/v1",
                    kind="ReplicaSet",
                    name=rs.metadata.name,
                    uid=rs.metadata.uid,
                    controller=True,
                )
            time.sleep(0.2)
        raise AssertionError(f"no ReplicaSet for Deployment {name} after 30 s")

    def close(self) -> None:
        from kubernetes import client

        for kind, name in reversed(self.cleanups):
            with contextlib.suppress(client.ApiException):
                if kind == "node":
                    self.core.delete_node(name)
                else:
                    self.core.delete_namespace(name, propagation_policy="Background")


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(params=[FAKE, REAL])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    """The port under test: FakeKube, or KubeAdapter on the local apiserver (as cluster-admin)."""
    if request.param == FAKE:
        yield FakeSide()
        return
    from responder.adapters.kube import KubeAdapter

    admin = request.getfixturevalue("kube_admin")
    real = RealSide(admin=admin, namespace=request.getfixturevalue("kube_namespace"), kube=KubeAdapter(admin))
    try:
        yield real
    finally:
        real.close()


LOG_LINE = "shop api listening on 8080"


@pytest.fixture(params=[FAKE, REAL])
def running_side(request: pytest.FixtureRequest) -> Iterator[tuple[Side, str]]:
    """A side holding one running pod (container ``api``, which logged LOG_LINE): exec and logs reach it. On the
    real apiserver it runs on the real node (root only); returns (side, the pod's name)."""
    if request.param == FAKE:
        fake = FakeSide()
        fake.kube.add_pod(fake.namespace, "web-1", {"app": "web"}, controller=None, running=True)
        fake.kube.logs_text = f"2026-12-03T10:00:00.000000000Z {LOG_LINE}\n"
        yield fake, "web-1"
        return
    from kubernetes import client

    from responder.adapters.kube import KubeAdapter
    from tests.support import workloads

    request.getfixturevalue("kube_node")
    admin = request.getfixturevalue("kube_admin")
    real = RealSide(admin=admin, namespace=request.getfixturevalue("kube_namespace"), kube=KubeAdapter(admin))
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": workloads.runnable_spec(f"echo {LOG_LINE}; exec sleep 3600"),
    }
    client.CoreV1Api(admin).create_namespaced_pod(real.namespace, body)
    workloads.wait_for_running(admin, real.namespace, 1, "app=web")
    try:
        yield real, "web-1"
    finally:
        real.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real side asks for the cluster only when it runs (``getfixturevalue``); naming ``kube_env`` here lets
    tests/support/kube.py see, before the first test, that the session needs a cluster (it builds the binaries then,
    outside any test's timeout)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        names: Any = getattr(item, "fixturenames", None)
        real = callspec is not None and REAL in (callspec.params.get("side"), callspec.params.get("running_side"))
        if real and isinstance(names, list):
            # A new list: the parametrised items of one function share the old one, and the fake's must not change.
            item.fixturenames = [*names, "kube_env"]  # type: ignore[attr-defined]
