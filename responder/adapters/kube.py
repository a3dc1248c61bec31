"""KubePort over the Kubernetes API as raw JSON (``kube_http``), with the official client for the exec websocket.

Every call goes through ``kube_errors.call``: HTTP errors become ``responder.errors``, and 5xx, 429 and timeouts are
retried with backoff inside a deadline, then surface as :class:`TransientError` so Pub/Sub redelivers. The
``kubernetes`` package is imported only for exec (and by ``kube_connect`` to read a kubeconfig): the pod read and the
isolating writes, the cold path of the function, never wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from responder.adapters import kube_json as js
from responder.adapters import kube_reads as reads
from responder.adapters.kube_errors import call as _call
from responder.adapters.kube_errors import is_uid_mismatch as _is_uid_mismatch
from responder.adapters.kube_http import KubeHttp
from responder.adapters.kube_http import segment as _seg
from responder.adapters.kube_objects import ObjectCalls
from responder.adapters.kube_reads import TogetherReads
from responder.adapters.kube_reads import config_map_path as _config_map_path
from responder.adapters.kube_reads import np_path as _np_path
from responder.adapters.kube_reads import np_view as _np_view
from responder.adapters.kube_reads import pod_path as _pod_path
from responder.errors import Conflict, NotFound, PermanentError, PodReplaced, ResponderError, Unavailable
from responder.intake.sanitize import clean
from responder.ports import (
    ConfigMapView,
    ExecOutput,
    LabelSelector,
    LeaseView,
    NamespaceView,
    NetworkPolicyView,
    NodeView,
    OwnerRef,
    PodView,
    ServiceAccountView,
    WorkloadView,
)
from responder.startup import ImportGate, first_load

T = TypeVar("T")
_WORKLOAD_PATHS = {
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
    "CronJob": "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
}
_MANAGED_BY = {"app.kubernetes.io/managed-by": "reverse-shell-responder"}


def _lease_path(namespace: str, name: str = "") -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{_seg(namespace)}/leases"
    return f"{base}/{_seg(name)}" if name else base


class KubeAdapter(ObjectCalls, TogetherReads):
    """:class:`responder.ports.KubePort` over one apiserver.

    Built from a :class:`KubeHttp` (GKE: endpoint, CA, token) or from a ``kubernetes.client.ApiClient`` (a loaded
    kubeconfig). ``api_client`` builds the official client on demand, for exec and for callers that want typed APIs.
    """

    def __init__(
        self,
        api_client: Any = None,
        *,
        http: KubeHttp | None = None,
        api_client_factory: Callable[[], Any] | None = None,
        gate: ImportGate | None = None,
    ) -> None:
        if http is None:
            if api_client is None:
                raise ValueError("KubeAdapter needs an ApiClient or a KubeHttp")
            http = KubeHttp.from_configuration(api_client.configuration, dict(api_client.default_headers))
        self.http = http
        self._api_client = api_client
        self._api_client_factory = api_client_factory
        self._gate = gate
        self._lock = threading.Lock()
        self._discovered: tuple[frozenset[str], float] | None = None

    # ------------------------------------------------------------------------------- the official client, lazily
    @property
    def api_client(self) -> Any:
        """The ``kubernetes`` ApiClient for this apiserver (imported and built on first use)."""
        if self._api_client is None:
            with self._lock:
                if self._api_client is None:
                    if self._api_client_factory is None:
                        raise Unavailable("no Kubernetes client configuration for this connection")
                    if self._gate is not None:
                        self._gate.wait()  # a cold instance loads the client after its isolating writes
                    with first_load("kubernetes.client"):  # once per process, without the garbage collector
                        self._api_client = self._api_client_factory()
        return self._api_client

    @property
    def core(self) -> Any:
        """``CoreV1Api`` of the official client (exec, and callers that want typed objects)."""
        api_client = self.api_client  # first: on a cold instance this waits before anything is imported
        from kubernetes import client

        return client.CoreV1Api(api_client)

    # -------------------------------------------------------------------------------------------------- pods
    def get_pod(self, namespace: str, name: str) -> PodView:
        """Read a pod."""
        return self._read(reads.pod(namespace, name))

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        """Strategic-merge patch of metadata; the UID in the patch is a precondition, and so is ``resource_version``
        when given (the apiserver answers 409 when the stored object has moved on).

        A real apiserver answers a patch whose ``metadata.uid`` differs from the stored pod's with 422 (the field is
        immutable), not 409: that is the same-named replacement case, so it is reported as Conflict (replaced).
        """
        metadata: dict[str, object] = {"uid": uid, "labels": dict(labels), "annotations": dict(annotations)}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        body = {"metadata": metadata}
        what = f"patch pod {namespace}/{name}"
        try:
            pod = _call(
                what,
                lambda: self.http.request(
                    "PATCH",
                    _pod_path(namespace, name),
                    body=body,
                    content_type="application/strategic-merge-patch+json",
                ),
            )
        except PermanentError as exc:
            if _is_uid_mismatch(exc.__cause__):
                raise Conflict(f"{what}: the pod was replaced (uid {uid} no longer matches)") from exc
            raise
        return js.pod_view(pod)

    def delete_pod(self, namespace: str, name: str, uid: str, grace_period_s: int | None) -> None:
        """Delete with preconditions.uid."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        if grace_period_s is not None:
            options["gracePeriodSeconds"] = grace_period_s
        _call(
            f"delete pod {namespace}/{name}",
            lambda: self.http.request("DELETE", _pod_path(namespace, name), body=options),
        )

    def get_workload(self, namespace: str, owner: OwnerRef) -> WorkloadView:
        """Read an owner (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob)."""
        template = _WORKLOAD_PATHS.get(owner.kind)
        if template is None:
            raise NotFound(f"owner kind {clean(owner.kind, 40)} is not followed")
        path = template.format(ns=_seg(namespace), name=_seg(owner.name))
        return js.workload_view(owner.kind, namespace, self._get(f"get {owner.kind} {namespace}/{owner.name}", path))

    # ---------------------------------------------------------------------------------------- network policy
    def list_network_policies(self, namespace: str) -> list[NetworkPolicyView]:
        """All policies in the namespace."""
        return self._read(reads.network_policies(namespace))

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> NetworkPolicyView:
        """Create; Conflict when it exists."""
        obj = _call(
            f"create networkpolicy in {namespace}",
            lambda: self.http.request("POST", _np_path(namespace), body=body),
        )
        return _np_view(obj, namespace)

    def set_network_policy_selector(
        self, namespace: str, name: str, selector: LabelSelector, resource_version: str | None
    ) -> NetworkPolicyView:
        """JSON patch replacing spec.podSelector whole; resourceVersion makes it optimistic.

        Not a merge patch: that would merge ``matchLabels`` (a map) with what is stored, so a key the new selector
        drops would stay. The rest of the spec, the labels and the annotations are untouched."""
        value: dict[str, Any] = {}
        if selector.match_labels:
            value["matchLabels"] = dict(selector.match_labels)
        if selector.match_expressions:
            value["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in selector.match_expressions
            ]
        ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec/podSelector", "value": value}]
        if resource_version:
            ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
        obj = _call(
            f"patch networkpolicy {namespace}/{name}",
            lambda: self.http.request(
                "PATCH", _np_path(namespace, name), body=ops, content_type="application/json-patch+json"
            ),
        )
        return _np_view(obj, namespace)

    def replace_network_policy(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> NetworkPolicyView:
        """JSON patch replacing ``spec`` and ``metadata.labels`` wholesale; resourceVersion makes it optimistic."""
        ops: list[dict[str, Any]] = [
            {"op": "replace", "path": "/spec", "value": spec},
            {"op": "add", "path": "/metadata/labels", "value": dict(labels)},
        ]
        if resource_version:
            ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
        obj = _call(
            f"replace networkpolicy {namespace}/{name}",
            lambda: self.http.request(
                "PATCH", _np_path(namespace, name), body=ops, content_type="application/json-patch+json"
            ),
        )
        return _np_view(obj, namespace)

    def delete_network_policy(self, namespace: str, name: str, resource_version: str | None) -> None:
        """Delete with preconditions.resourceVersion: only the version that was judged is removed."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": resource_version}}
        _call(
            f"delete networkpolicy {namespace}/{name}",
            lambda: self.http.request("DELETE", _np_path(namespace, name), body=options),
        )

    def list_pods(self, namespace: str | None, label_selector: str) -> list[PodView]:
        """Pods by label selector, in one namespace or all (operator commands only; see KubePort)."""
        where = "/api/v1/pods" if namespace is None else _pod_path(namespace)
        listed = self._get(
            f"list pods in {namespace or 'all namespaces'} ({label_selector})", where, labelSelector=label_selector
        )
        return [js.pod_view(p) for p in listed.get("items") or ()]

    # ------------------------------------------------------------------------------------------ logs and exec
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
        """Container log tail; Unavailable when no kubelet can serve it; with ``expected_uid``, bound to that pod
        (see :meth:`responder.ports.KubePort.exec`)."""
        try:
            text = _call(
                f"logs of {namespace}/{name}",
                lambda: self.http.request(
                    "GET",
                    _pod_path(namespace, name) + "/log",
                    query={
                        "container": container,
                        "tailLines": tail_lines,
                        "limitBytes": limit_bytes,
                        "timestamps": True,
                    },
                    raw=True,
                ),
            )
        except PermanentError as exc:
            failed = Unavailable(f"container logs unavailable: {exc}")
            self._bound(namespace, name, expected_uid, failed)
            raise failed from exc
        self._bound(namespace, name, expected_uid)
        return str(text) if text else ""  # a pod that never ran answers 200 with no body

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
        """Run argv (no shell) over the exec websocket, capped at ``limit_bytes`` and ``timeout_s`` (``kube_exec``);
        with ``expected_uid``, bound to that pod (see :meth:`responder.ports.KubePort.exec`). Through an HTTP proxy
        (a kubeconfig's proxy-url) the official client's stream is used instead."""
        if self._gate is not None:
            self._gate.wait()  # a cold instance captures after its isolating writes
        from responder.adapters import kube_exec

        try:
            if self.http.proxy:
                core = self.core  # first: on a cold instance this waits until the isolating writes are done
                out = kube_exec.run_via_client(core, namespace, name, container, argv, timeout_s, limit_bytes)
            else:
                out = kube_exec.run(self.http, namespace, name, container, argv, timeout_s, limit_bytes)
        except Unavailable as exc:
            self._bound(namespace, name, expected_uid, exc)
            raise
        self._bound(namespace, name, expected_uid)
        return out

    def _bound(self, namespace: str, name: str, expected_uid: str | None, failed: Exception | None = None) -> None:
        """After a read by name: PodReplaced unless the pod by that name still has ``expected_uid`` (None: unbound).

        After a failed read (``failed``) only a replacement is reported, and a read that cannot be made leaves the
        read's own error standing; after a successful one the output is refused when the pod cannot be re-read,
        since nothing then binds it to the pod."""
        if expected_uid is None:
            return
        try:
            uid: str | None = self.get_pod(namespace, name).uid
        except NotFound:
            uid = None
        except ResponderError as exc:
            if failed is not None:
                return
            raise Unavailable(
                f"could not confirm that pod {namespace}/{name} is still uid {expected_uid}: {clean(exc, 200)}"
            ) from exc
        if uid != expected_uid and (failed is None or uid is not None):
            raise PodReplaced(namespace, name, expected_uid, uid) from failed

    # ------------------------------------------------------------------------------------- nodes, namespaces
    def get_node(self, name: str) -> NodeView:
        """Read a node."""
        meta = self._get(f"get node {name}", f"/api/v1/nodes/{_seg(name)}").get("metadata") or {}
        return NodeView(name=meta["name"], labels=meta.get("labels") or {}, annotations=meta.get("annotations") or {})

    def get_namespace(self, name: str) -> NamespaceView:
        """Read a namespace."""
        return self._read(reads.namespace(name))

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountView:
        """Read a service account (its Workload Identity annotation, the Secret-based tokens its ``secrets`` name)."""
        path = f"/api/v1/namespaces/{_seg(namespace)}/serviceaccounts/{_seg(name)}"
        return js.service_account_view(namespace, name, self._get(f"get serviceaccount {namespace}/{name}", path))

    # ------------------------------------------------------------------------------------------------ leases
    def get_lease(self, namespace: str, name: str) -> LeaseView:
        """Read a Lease."""
        return js.lease_view(self._get(f"get lease {namespace}/{name}", _lease_path(namespace, name)))

    def create_lease(self, namespace: str, name: str, annotations: Mapping[str, str]) -> LeaseView:
        """Create a Lease; Conflict when another instance did first."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "annotations": dict(annotations), "labels": dict(_MANAGED_BY)},
            "spec": {},
        }
        return js.lease_view(
            _call(
                f"create lease {namespace}/{name}",
                lambda: self.http.request("POST", _lease_path(namespace), body=body),
            )
        )

    def update_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], resource_version: str | None
    ) -> LeaseView:
        """Replace the Lease's annotations; resourceVersion makes it optimistic (Conflict if it moved)."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": resource_version,
                "annotations": dict(annotations),
                "labels": dict(_MANAGED_BY),
            },
            "spec": {},
        }
        return js.lease_view(
            _call(
                f"update lease {namespace}/{name}",
                lambda: self.http.request("PUT", _lease_path(namespace, name), body=body),
            )
        )

    # -------------------------------------------------------------------------------------------- configmaps
    def get_config_map(self, namespace: str, name: str) -> ConfigMapView:
        """Read a ConfigMap (the identity quarantine's parameter)."""
        return self._read(reads.config_map(namespace, name))

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> ConfigMapView:
        """Create a ConfigMap; Conflict when another instance did first."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": dict(_MANAGED_BY)},
            "data": dict(data),
        }
        return js.config_map_view(
            _call(
                f"create configmap {namespace}/{name}",
                lambda: self.http.request("POST", _config_map_path(namespace), body=body),
            )
        )

    def patch_config_map_data(self, namespace: str, name: str, data: Mapping[str, str | None]) -> ConfigMapView:
        """JSON merge patch of the ConfigMap's data (None removes a key)."""
        body = {"data": dict(data)}
        return js.config_map_view(
            _call(
                f"patch configmap {namespace}/{name}",
                lambda: self.http.request(
                    "PATCH", _config_map_path(namespace, name), body=body, content_type="application/merge-patch+json"
                ),
            )
        )

    def update_config_map(
        self, namespace: str, name: str, data: Mapping[str, str], resource_version: str | None
    ) -> ConfigMapView:
        """Replace the ConfigMap's data; resourceVersion makes it optimistic (Conflict if it moved)."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": resource_version,
                "labels": dict(_MANAGED_BY),
            },
            "data": dict(data),
        }
        return js.config_map_view(
            _call(
                f"update configmap {namespace}/{name}",
                lambda: self.http.request("PUT", _config_map_path(namespace, name), body=body),
            )
        )
