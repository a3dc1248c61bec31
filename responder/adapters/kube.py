"""KubePort on the official ``kubernetes`` client (connections to clusters: ``kube_connect``).

Every call goes through ``kube_errors.call``: SDK errors become ``responder.errors``, and 5xx, 429 and timeouts are
retried with backoff inside a deadline, then surface as :class:`TransientError` so Pub/Sub redelivers. The SDK is
imported lazily: a cold start that only ignores a finding never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

from responder.adapters.kube_errors import call as _call
from responder.adapters.kube_errors import is_uid_mismatch as _is_uid_mismatch
from responder.adapters.kube_errors import translate as _translate
from responder.errors import Conflict, Forbidden, NotFound, PermanentError, Unavailable
from responder.intake.sanitize import clean
from responder.ports import (
    ContainerView,
    LabelSelector,
    LabelSelectorRequirement,
    LeaseView,
    NamespaceView,
    NetworkPolicyView,
    NodeView,
    OwnerRef,
    PodView,
    WorkloadView,
)

T = TypeVar("T")
REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read
_WORKLOAD_READERS = {
    "ReplicaSet": ("apps", "read_namespaced_replica_set"),
    "Deployment": ("apps", "read_namespaced_deployment"),
    "StatefulSet": ("apps", "read_namespaced_stateful_set"),
    "DaemonSet": ("apps", "read_namespaced_daemon_set"),
    "Job": ("batch", "read_namespaced_job"),
    "CronJob": ("batch", "read_namespaced_cron_job"),
}


def _selector(raw: Any) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    return LabelSelector(
        match_labels=dict(raw.match_labels or {}),
        match_expressions=tuple(
            LabelSelectorRequirement(key=e.key, operator=e.operator, values=tuple(e.values or ()))
            for e in raw.match_expressions or ()
        ),
    )


def _owners(meta: Any) -> tuple[OwnerRef, ...]:
    return tuple(
        OwnerRef(api_version=o.api_version, kind=o.kind, name=o.name, uid=o.uid, controller=bool(o.controller))
        for o in meta.owner_references or ()
    )


class KubeAdapter:
    """:class:`responder.ports.KubePort` over one ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.net = client.NetworkingV1Api(api_client)
        self.coord = client.CoordinationV1Api(api_client)

    # -------------------------------------------------------------------------------------------------- pods
    def _pod_view(self, pod: Any) -> PodView:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        statuses = {s.name: s for s in (status.container_statuses or [])} if status else {}
        containers = []
        for c in spec.containers or []:
            st = statuses.get(c.name)
            sc = c.security_context
            containers.append(
                ContainerView(
                    name=c.name,
                    image=c.image,
                    image_id=st.image_id if st else None,
                    ready=st.ready if st else None,
                    running=bool(st and st.state and st.state.running),
                    restart_count=st.restart_count if st else 0,
                    privileged=bool(sc and sc.privileged),
                    run_as_user=sc.run_as_user if sc else None,
                    allow_privilege_escalation=sc.allow_privilege_escalation if sc else None,
                )
            )
        return PodView(
            namespace=meta.namespace,
            name=meta.name,
            uid=meta.uid,
            resource_version=meta.resource_version,
            labels=dict(meta.labels or {}),
            annotations=dict(meta.annotations or {}),
            owners=_owners(meta),
            node_name=spec.node_name,
            host_network=bool(spec.host_network),
            host_pid=bool(spec.host_pid),
            service_account=spec.service_account_name,
            phase=status.phase if status else None,
            start_time=status.start_time if status else None,
            created=meta.creation_timestamp,
            deleting=meta.deletion_timestamp is not None,
            containers=tuple(containers),
            manifest=self._api.sanitize_for_serialization(pod),
        )

    def get_pod(self, namespace: str, name: str) -> PodView:
        """Read a pod."""
        pod = _call(
            f"get pod {namespace}/{name}",
            lambda: self.core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        return self._pod_view(pod)

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
    ) -> PodView:
        """Strategic-merge patch of metadata; the UID in the patch is a precondition.

        A real apiserver answers a patch whose ``metadata.uid`` differs from the stored pod's with 422 (the field is
        immutable), not 409: that is the same-named replacement case, so it is reported as Conflict (replaced).
        """
        body = {"metadata": {"uid": uid, "labels": dict(labels), "annotations": dict(annotations)}}
        what = f"patch pod {namespace}/{name}"
        try:
            pod = _call(
                what,
                lambda: self.core.patch_namespaced_pod(
                    name,
                    namespace,
                    body,
                    _content_type="application/strategic-merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except PermanentError as exc:
            if _is_uid_mismatch(exc.__cause__):
                raise Conflict(f"{what}: the pod was replaced (uid {uid} no longer matches)") from exc
            raise
        return self._pod_view(pod)

    def delete_pod(self, namespace: str, name: str, uid: str, grace_period_s: int | None) -> None:
        """Delete with preconditions.uid."""
        from kubernetes import client

        options = client.V1DeleteOptions(
            grace_period_seconds=grace_period_s, preconditions=client.V1Preconditions(uid=uid)
        )
        _call(
            f"delete pod {namespace}/{name}",
            lambda: self.core.delete_namespaced_pod(name, namespace, body=options, _request_timeout=REQUEST_TIMEOUT),
        )

    def get_workload(self, namespace: str, owner: OwnerRef) -> WorkloadView:
        """Read an owner (ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, CronJob)."""
        reader = _WORKLOAD_READERS.get(owner.kind)
        if reader is None:
            raise NotFound(f"owner kind {clean(owner.kind, 40)} is not followed")
        api = self.apps if reader[0] == "apps" else self.batch
        obj = _call(
            f"get {owner.kind} {namespace}/{owner.name}",
            lambda: getattr(api, reader[1])(owner.name, namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        spec, status = getattr(obj, "spec", None), getattr(obj, "status", None)
        return WorkloadView(
            kind=owner.kind,
            namespace=namespace,
            name=obj.metadata.name,
            uid=obj.metadata.uid,
            owners=_owners(obj.metadata),
            labels=dict(obj.metadata.labels or {}),
            annotations=dict(obj.metadata.annotations or {}),
            replicas=getattr(spec, "replicas", None),
            ready_replicas=getattr(status, "ready_replicas", None) or getattr(status, "number_ready", None),
        )

    # ---------------------------------------------------------------------------------------- network policy
    def _np_view(self, obj: Any) -> NetworkPolicyView:
        return NetworkPolicyView(
            namespace=obj.metadata.namespace,
            name=obj.metadata.name,
            resource_version=obj.metadata.resource_version,
            pod_selector=_selector(obj.spec.pod_selector),
            policy_types=tuple(obj.spec.policy_types or ()),
            labels=dict(obj.metadata.labels or {}),
            annotations=dict(obj.metadata.annotations or {}),
            spec=self._api.sanitize_for_serialization(obj.spec) or {},
        )

    def list_network_policies(self, namespace: str) -> list[NetworkPolicyView]:
        """All policies in the namespace."""
        items = _call(
            f"list networkpolicies in {namespace}",
            lambda: self.net.list_namespaced_network_policy(namespace, _request_timeout=REQUEST_TIMEOUT),
        ).items
        return [self._np_view(p) for p in items]

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> NetworkPolicyView:
        """Create; Conflict when it exists."""
        obj = _call(
            f"create networkpolicy in {namespace}",
            lambda: self.net.create_namespaced_network_policy(namespace, body, _request_timeout=REQUEST_TIMEOUT),
        )
        return self._np_view(obj)

    def set_network_policy_selector(
        self, namespace: str, name: str, selector: LabelSelector, resource_version: str | None
    ) -> NetworkPolicyView:
        """JSON merge patch replacing spec.podSelector; resourceVersion makes it optimistic."""
        body: dict[str, Any] = {
            "metadata": {"resourceVersion": resource_version} if resource_version else {},
            "spec": {
                "podSelector": {
                    "matchLabels": dict(selector.match_labels) or None,
                    "matchExpressions": [
                        {"key": e.key, "operator": e.operator, "values": list(e.values) or None}
                        for e in selector.match_expressions
                    ]
                    or None,
                }
            },
        }

        def patch() -> Any:
            # A JSON merge patch replaces lists wholesale, which is what we want for matchExpressions.
            return self.net.patch_namespaced_network_policy(
                name,
                namespace,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )

        return self._np_view(_call(f"patch networkpolicy {namespace}/{name}", patch))

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

        def patch() -> Any:
            return self.net.patch_namespaced_network_policy(
                name, namespace, ops, _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT
            )

        return self._np_view(_call(f"replace networkpolicy {namespace}/{name}", patch))

    def delete_network_policy(self, namespace: str, name: str, resource_version: str | None) -> None:
        """Delete with preconditions.resourceVersion: only the version that was judged is removed."""
        from kubernetes import client

        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=resource_version))
        _call(
            f"delete networkpolicy {namespace}/{name}",
            lambda: self.net.delete_namespaced_network_policy(
                name, namespace, body=options, _request_timeout=REQUEST_TIMEOUT
            ),
        )

    def list_pods(self, namespace: str | None, label_selector: str) -> list[PodView]:
        """Pods by label selector, in one namespace or all (operator commands only; see KubePort)."""
        if namespace is None:
            items = _call(
                f"list pods ({label_selector})",
                lambda: self.core.list_pod_for_all_namespaces(
                    label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
                ),
            ).items
        else:
            items = _call(
                f"list pods in {namespace} ({label_selector})",
                lambda: self.core.list_namespaced_pod(
                    namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
                ),
            ).items
        return [self._pod_view(p) for p in items]

    # ------------------------------------------------------------------------------------------ logs and exec
    def read_log(self, namespace: str, name: str, container: str | None, tail_lines: int, limit_bytes: int) -> str:
        """Container log tail; Unavailable when no kubelet can serve it."""
        try:
            text = _call(
                f"logs of {namespace}/{name}",
                lambda: self.core.read_namespaced_pod_log(
                    name,
                    namespace,
                    container=container,
                    tail_lines=tail_lines,
                    limit_bytes=limit_bytes,
                    timestamps=True,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except PermanentError as exc:
            raise Unavailable(f"container logs unavailable: {exc}") from exc
        return str(text) if text else ""  # a pod that never ran answers 200 with no body

    def exec(
        self, namespace: str, name: str, container: str | None, argv: list[str], timeout_s: float, limit_bytes: int
    ) -> str:
        """Run argv (no shell) over the exec websocket; stream stdout/stderr until exit, the deadline or the cap.

        The container is the attacker's: it decides how much ``ps`` prints and how slowly. So output is consumed
        frame by frame and the stream is closed as soon as ``limit_bytes`` are held or ``timeout_s`` has passed;
        memory stays at the cap plus one websocket frame whatever the container does.
        """
        from kubernetes.stream import stream

        try:
            resp = stream(
                self.core.connect_get_namespaced_pod_exec,
                name,
                namespace,
                command=argv,
                container=container,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            translated = _translate(exc, f"exec in {namespace}/{name}")
            if isinstance(translated, NotFound | Forbidden):
                raise translated from exc
            raise Unavailable(f"exec unavailable: {clean(exc, 200)}") from exc
        output: list[str] = []
        held = 0
        ending = ""
        deadline = time.monotonic() + timeout_s
        try:
            while resp.is_open():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    ending = f"\n[stopped after {timeout_s:g} s: deadline]"
                    break
                resp.update(timeout=min(remaining, 1.0))
                for chunk in (
                    resp.read_stdout() if resp.peek_stdout() else "",
                    resp.read_stderr() if resp.peek_stderr() else "",
                ):
                    if chunk:
                        take = chunk[: max(limit_bytes - held, 0)]
                        output.append(take)
                        held += len(take)
                if held >= limit_bytes:
                    ending = f"\n[truncated at {limit_bytes} bytes]"
                    break
        finally:
            resp.close()
        return "".join(output) + ending

    # ------------------------------------------------------------------------------------- nodes, namespaces
    def get_node(self, name: str) -> NodeView:
        """Read a node."""
        obj = _call(f"get node {name}", lambda: self.core.read_node(name, _request_timeout=REQUEST_TIMEOUT))
        return NodeView(
            name=obj.metadata.name,
            labels=dict(obj.metadata.labels or {}),
            annotations=dict(obj.metadata.annotations or {}),
        )

    def get_namespace(self, name: str) -> NamespaceView:
        """Read a namespace."""
        obj = _call(f"get namespace {name}", lambda: self.core.read_namespace(name, _request_timeout=REQUEST_TIMEOUT))
        return NamespaceView(
            name=obj.metadata.name,
            labels=dict(obj.metadata.labels or {}),
            annotations=dict(obj.metadata.annotations or {}),
        )

    # ------------------------------------------------------------------------------------------------ leases
    @staticmethod
    def _lease_view(obj: Any) -> LeaseView:
        return LeaseView(
            namespace=obj.metadata.namespace,
            name=obj.metadata.name,
            resource_version=obj.metadata.resource_version,
            annotations=dict(obj.metadata.annotations or {}),
        )

    def get_lease(self, namespace: str, name: str) -> LeaseView:
        """Read a Lease."""
        return self._lease_view(
            _call(
                f"get lease {namespace}/{name}",
                lambda: self.coord.read_namespaced_lease(name, namespace, _request_timeout=REQUEST_TIMEOUT),
            )
        )

    def create_lease(self, namespace: str, name: str, annotations: Mapping[str, str]) -> LeaseView:
        """Create a Lease; Conflict when another instance did first."""
        body = {
            "metadata": {
                "name": name,
                "annotations": dict(annotations),
                "labels": {"app.kubernetes.io/managed-by": "reverse-shell-responder"},
            },
            "spec": {},
        }
        return self._lease_view(
            _call(
                f"create lease {namespace}/{name}",
                lambda: self.coord.create_namespaced_lease(namespace, body, _request_timeout=REQUEST_TIMEOUT),
            )
        )

    def update_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], resource_version: str | None
    ) -> LeaseView:
        """Replace the Lease's annotations; resourceVersion makes it optimistic (Conflict if it moved)."""
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": resource_version,
                "annotations": dict(annotations),
                "labels": {"app.kubernetes.io/managed-by": "reverse-shell-responder"},
            },
            "spec": {},
        }
        return self._lease_view(
            _call(
                f"update lease {namespace}/{name}",
                lambda: self.coord.replace_namespaced_lease(name, namespace, body, _request_timeout=REQUEST_TIMEOUT),
            )
        )


# ---------------------------------------------------------------------------------------------------- connectors
