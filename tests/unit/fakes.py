"""Hand-written fakes of the ports: small in-memory worlds with the same rules as the real ones.

They enforce what the responder relies on (UID preconditions, resourceVersion conflicts, 404s), so unit tests assert
state ("the pod carries the label", "one policy exists") rather than calls.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Literal

from responder.errors import Conflict, NotFound, PermanentError, PodReplaced, TransientError, Unavailable
from responder.intake.findings import Finding
from responder.intake.identifiers import ClusterRef
from responder.ports import (
    ClusterInfo,
    ConfigMapView,
    Connection,
    ContainerView,
    ExecOutput,
    KubeRead,
    LabelSelector,
    LabelSelectorRequirement,
    LeaseView,
    LogEntry,
    NamespaceView,
    NetworkPolicyView,
    NodeView,
    OwnerRef,
    PodView,
    SccFinding,
    ServiceAccountView,
    WorkloadView,
)

TCP_TEXT = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0 100 0 0 10 0\n"
    "   1: 1102300A:CA16 4D6433C6:2329 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0 20 4 30 10 -1\n"
    "  sl  local_address                         remote_address                        st tx_queue rx_queue\n"
)


def _same(obj: Mapping[str, Any], namespace: str | None, name: object) -> bool:
    meta = obj.get("metadata") or {}
    return bool(meta.get("name") == name and (meta.get("namespace") or None) == namespace)


class FakeKube:
    """An in-memory cluster implementing ``KubePort``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self.pods: dict[tuple[str, str], PodView] = {}
        self.policies: dict[tuple[str, str], NetworkPolicyView] = {}
        self.workloads: dict[tuple[str, str, str], WorkloadView] = {}
        self.nodes: dict[str, NodeView] = {}
        self.namespaces: dict[str, NamespaceView] = {}
        self.leases: dict[tuple[str, str], LeaseView] = {}
        self.config_maps: dict[tuple[str, str], ConfigMapView] = {}
        self.service_accounts: dict[tuple[str, str], ServiceAccountView] = {}
        # Installed admission policy bindings and their validationActions (the identity guard's, as make kube-up has).
        self.admission_bindings: dict[str, tuple[str, ...]] = {"reverse-shell-responder-identity": ("Deny", "Audit")}
        # Served kinds beyond the core ones ((group, version, plural) -> objects as API JSON): the cluster-scoped
        # network policies, none served by default (a cluster without them); and RBAC, which every cluster serves
        # (empty here: no binding names anyone until a test adds one).
        self.custom_objects: dict[tuple[str, str, str], list[dict[str, Any]]] = {
            ("rbac.authorization.k8s.io", "v1", plural): []
            for plural in ("rolebindings", "clusterrolebindings", "roles", "clusterroles")
        }
        self.deleted: list[tuple[str, str, str]] = []
        self.writes: list[str] = []
        self.fail_next: dict[str, int] = {}  # method name -> transient failures to inject
        self.raise_on: dict[str, Exception] = {}  # method name -> raised on every call
        self.sleep_on: dict[str, float] = {}  # method name -> seconds slept first (timeouts)
        self.calls: list[str] = []
        self.execs: list[tuple[str, str]] = []  # ps axjf
        self.socket_reads: list[tuple[str, str]] = []  # cat /proc/net/tcp /proc/net/tcp6
        # The container's sockets: a listener on 8080 and the sample finding's shell, 10.48.2.17:51734 -> 198.51.100.77:9001
        self.tcp_text = TCP_TEXT
        self.logs_text: str | None = None
        # argv[0] -> (exit code, the status channel's message): how that command ends (default: exit 0)
        self.exec_exit: dict[str, tuple[int | None, str | None]] = {}
        self.during: dict[str, Callable[[], None]] = {}  # "exec" / "read_log" -> run while such a read is under way
        self.ps_text = "  PPID   PID  PGID   SID TTY      TPGID STAT   UID   TIME COMMAND\n    0     1     1     1 ?  -1 Ss 0 0:00 sh\n"

    def _maybe_fail(self, method: str) -> None:
        # Called before taking the lock, so a sleeping method does not stall the others.
        with self.lock:
            self.calls.append(method)
            if self.fail_next.get(method, 0) > 0:
                self.fail_next[method] -= 1
                raise TransientError(f"injected 503 on {method}")
        if self.sleep_on.get(method):
            time.sleep(self.sleep_on[method])
        if method in self.raise_on:
            raise self.raise_on[method]

    def rv(self) -> str:
        return str(next(self._rv))

    # ---------------------------------------------------------------------------------------------- seeding
    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        controller: tuple[str, str] | None = ("ReplicaSet", "web-5d9c"),
        host_network: bool = False,
        running: bool = True,
        container: str = "api",
    ) -> PodView:
        owners: tuple[OwnerRef, ...] = ()
        if controller:
            owners = (
                OwnerRef(
                    api_version="apps/v1",
                    kind=controller[0],
                    name=controller[1],
                    uid=f"uid-{controller[1]}",
                    controller=True,
                ),
            )
        pod = PodView(
            namespace=namespace,
            name=name,
            uid=f"pod-uid-{next(self._uid)}",
            resource_version=self.rv(),
            labels=dict(labels or {"app": "web"}),
            owners=owners,
            host_network=host_network,
            containers=(ContainerView(name=container, image="example/web:1", running=running),),
            node_name="gke-node-1",
            manifest={"kind": "Pod", "metadata": {"name": name}},
        )
        self.pods[(namespace, name)] = pod
        return pod

    def add_policy(
        self,
        namespace: str,
        name: str,
        selector: LabelSelector | None = None,
        *,
        policy_types: tuple[str, ...] = ("Ingress",),
        rules: bool = True,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """An allowing policy (one open ingress rule) unless ``rules`` is False."""
        selector = selector or LabelSelector()
        spec: dict[str, Any] = {"podSelector": selector_json(selector), "policyTypes": list(policy_types)}
        if rules:
            spec["ingress"] = [{}]
        self.policies[(namespace, name)] = NetworkPolicyView(
            namespace=namespace,
            name=name,
            resource_version=self.rv(),
            pod_selector=selector,
            policy_types=policy_types,
            labels=dict(labels or {}),
            spec=spec,
        )

    def add_web_deployment(self, namespace: str, *pods: str) -> None:
        """The tests' usual workload: Deployment ``web`` → ReplicaSet ``web-5d9c`` (the controller :meth:`add_pod`
        gives a pod by default), with ``pods`` (labelled ``app=web`` and the template hash) under it."""
        for name in pods:
            self.add_pod(namespace, name, {"app": "web", "pod-template-hash": "5d9c"})
        self.add_workload(namespace, "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
        self.add_workload(namespace, "Deployment", "web")

    def add_workload(
        self, namespace: str, kind: str, name: str, *, ready: int = 3, owner: tuple[str, str] | None = None
    ) -> None:
        owners = (
            (OwnerRef(api_version="apps/v1", kind=owner[0], name=owner[1], uid=f"uid-{owner[1]}", controller=True),)
            if owner
            else ()
        )
        self.workloads[(namespace, kind, name)] = WorkloadView(
            kind=kind,
            namespace=namespace,
            name=name,
            uid=f"uid-{name}",
            owners=owners,
            replicas=ready,
            ready_replicas=ready,
        )

    # ------------------------------------------------------------------------------------------------ port
    def read_together(self, reads: Sequence[KubeRead]) -> list[Future[Any]]:
        """Each read in turn (the fake has no round to save), its answer or error in a completed future."""
        out: list[Future[Any]] = []
        for read in reads:
            done: Future[Any] = Future()
            try:
                done.set_result(getattr(self, read.method)(*read.args))
            except Exception as exc:
                done.set_exception(exc)
            out.append(done)
        return out

    def get_pod(self, namespace: str, name: str) -> PodView:
        self._maybe_fail("get_pod")
        with self.lock:
            try:
                return self.pods[(namespace, name)]
            except KeyError:
                raise NotFound(f"pod {namespace}/{name}") from None

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        self._maybe_fail("patch_pod_metadata")
        with self.lock:
            pod = self.get_pod(namespace, name)
            if pod.uid != uid:
                raise Conflict("uid precondition")
            if resource_version and pod.resource_version != resource_version:
                raise Conflict("resourceVersion precondition: the pod changed since it was read")
            new_labels = {**pod.labels, **{k: v for k, v in labels.items() if v is not None}}
            new_ann = {**pod.annotations, **{k: v for k, v in annotations.items() if v is not None}}
            for k, v in labels.items():
                if v is None:
                    new_labels.pop(k, None)
            for k, v in annotations.items():
                if v is None:
                    new_ann.pop(k, None)
            if new_labels == pod.labels and new_ann == pod.annotations:
                return pod  # the apiserver skips a write that changes nothing: same resourceVersion
            self.writes.append(f"patch pod {name}")
            pod = pod.model_copy(update={"labels": new_labels, "annotations": new_ann, "resource_version": self.rv()})
            self.pods[(namespace, name)] = pod
            return pod

    def delete_pod(self, namespace: str, name: str, uid: str, grace_period_s: int | None) -> None:
        self._maybe_fail("delete_pod")
        with self.lock:
            pod = self.get_pod(namespace, name)
            if pod.uid != uid:
                raise Conflict("uid precondition")
            del self.pods[(namespace, name)]
            self.deleted.append((namespace, name, uid))
            self.writes.append(f"delete pod {name}")

    def get_workload(self, namespace: str, owner: OwnerRef) -> WorkloadView:
        self._maybe_fail("get_workload")
        try:
            return self.workloads[(namespace, owner.kind, owner.name)]
        except KeyError:
            raise NotFound(f"{owner.kind} {owner.name}") from None

    def list_network_policies(self, namespace: str) -> list[NetworkPolicyView]:
        self._maybe_fail("list_network_policies")
        with self.lock:
            return [p for (ns, _), p in sorted(self.policies.items()) if ns == namespace]

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> NetworkPolicyView:
        self._maybe_fail("create_network_policy")
        with self.lock:
            name = body["metadata"]["name"]
            if (namespace, name) in self.policies:
                raise Conflict(f"networkpolicy {name} exists")
            meta = body["metadata"]
            view = _policy_view(
                namespace, name, self.rv(), body["spec"], meta.get("labels", {}), meta.get("annotations", {})
            )
            self.policies[(namespace, name)] = view
            self.writes.append(f"create networkpolicy {name}")
            return view

    def replace_network_policy(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> NetworkPolicyView:
        self._maybe_fail("replace_network_policy")
        with self.lock:
            current = self.policies.get((namespace, name))
            if current is None:
                raise NotFound(name)
            if resource_version and current.resource_version != resource_version:
                raise Conflict("resourceVersion")
            view = _policy_view(namespace, name, self.rv(), spec, labels, current.annotations)
            self.policies[(namespace, name)] = view
            self.writes.append(f"replace networkpolicy {name}")
            return view

    def set_network_policy_selector(
        self, namespace: str, name: str, selector: LabelSelector, resource_version: str | None
    ) -> NetworkPolicyView:
        self._maybe_fail("set_network_policy_selector")
        with self.lock:
            try:
                current = self.policies[(namespace, name)]
            except KeyError:
                raise NotFound(name) from None
            if resource_version and current.resource_version != resource_version:
                raise Conflict("resourceVersion")
            spec = {**current.spec, "podSelector": selector_json(selector)}
            if spec == current.spec:
                return current  # nothing changed, nothing written: same resourceVersion
            view = current.model_copy(update={"pod_selector": selector, "resource_version": self.rv(), "spec": spec})
            self.policies[(namespace, name)] = view
            self.writes.append(f"patch networkpolicy {name}")
            return view

    def list_pods(self, namespace: str | None, label_selector: str) -> list[PodView]:
        """Equality selectors only (``k=v,k2=v2``): all the operator commands use. Anything else is refused, never
        answered wrongly (tests/contract runs set-based selectors on the real apiserver alone)."""
        self._maybe_fail("list_pods")
        terms = [term for term in label_selector.split(",") if term]
        if any(t.count("=") != 1 or "!" in t or " " in t or "(" in t for t in terms):
            raise ValueError(f"FakeKube.list_pods takes equality selectors only, not {label_selector!r}")
        wanted = dict(term.split("=", 1) for term in terms)
        with self.lock:
            return [
                p
                for (ns, _), p in sorted(self.pods.items())
                if (namespace is None or ns == namespace) and all(p.labels.get(k) == v for k, v in wanted.items())
            ]

    def delete_network_policy(self, namespace: str, name: str, resource_version: str | None) -> None:
        self._maybe_fail("delete_network_policy")
        with self.lock:
            current = self.policies.get((namespace, name))
            if current is None:
                raise NotFound(name)
            if resource_version and current.resource_version != resource_version:
                raise Conflict("resourceVersion")
            del self.policies[(namespace, name)]
            self.writes.append(f"delete networkpolicy {name}")

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
        self._maybe_fail("read_log")
        self.get_pod(namespace, name)  # NotFound, as the apiserver answers for a pod that is gone
        self._in_flight("read_log")
        if self.logs_text is None:
            self._bound(namespace, name, expected_uid, failed=True)
            raise Unavailable("no kubelet")
        self._bound(namespace, name, expected_uid)
        return self.logs_text

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
        self._maybe_fail("exec")
        pod = self.get_pod(namespace, name)  # NotFound, as the apiserver answers for a pod that is gone
        if not any(c.running for c in pod.containers if container is None or c.name == container):
            self._bound(namespace, name, expected_uid, failed=True)
            raise Unavailable("exec unavailable: the container is not running (the apiserver answers 400)")
        if argv == ["cat", "/proc/net/tcp", "/proc/net/tcp6"]:
            self.socket_reads.append((namespace, name))
            text = self.tcp_text
        elif argv == ["ps", "axjf"]:
            self.execs.append((namespace, name))
            text = self.ps_text
        else:
            raise AssertionError(f"unexpected exec {argv}")
        self._in_flight("exec")
        self._bound(namespace, name, expected_uid)
        code, failure = self.exec_exit.get(argv[0], (0, None))
        return _capped(text, limit_bytes, code, failure)

    def _in_flight(self, method: str) -> None:
        """The test's hook for a read that is under way (the pod already resolved by name): replace the pod here."""
        hook = self.during.get(method)
        if hook is not None:
            hook()

    def _bound(self, namespace: str, name: str, expected_uid: str | None, *, failed: bool = False) -> None:
        """The adapter's rule: after a read by name, PodReplaced unless the pod still has ``expected_uid``; after a
        failed read, only a replacement (a pod gone leaves the read's own error)."""
        if expected_uid is None:
            return
        try:
            uid: str | None = self.get_pod(namespace, name).uid
        except NotFound:
            uid = None
        if uid != expected_uid and not (failed and uid is None):
            raise PodReplaced(namespace, name, expected_uid, uid)

    def replace_pod(self, namespace: str, name: str) -> PodView:
        """A same-named pod with a new UID in place of the old one, as a StatefulSet (or a person) re-creates it."""
        with self.lock:
            old = self.pods[(namespace, name)]
            new = old.model_copy(update={"uid": f"pod-uid-{next(self._uid)}", "resource_version": self.rv()})
            self.pods[(namespace, name)] = new
            return new

    def get_node(self, name: str) -> NodeView:
        self._maybe_fail("get_node")
        try:
            return self.nodes[name]
        except KeyError:
            raise NotFound(f"node {name}") from None

    def get_namespace(self, name: str) -> NamespaceView:
        """A seeded namespace, or a bare one where objects were seeded (they imply it exists); NotFound otherwise."""
        self._maybe_fail("get_namespace")
        with self.lock:
            if name in self.namespaces:
                return self.namespaces[name]
            held = itertools.chain(self.pods, self.policies, self.leases, self.workloads, self.config_maps)
            if any(key[0] == name for key in held):
                return NamespaceView(name=name)
        raise NotFound(f"namespace {name}")

    def get_lease(self, namespace: str, name: str) -> LeaseView:
        self._maybe_fail("get_lease")
        with self.lock:
            try:
                return self.leases[(namespace, name)]
            except KeyError:
                raise NotFound(name) from None

    def create_lease(self, namespace: str, name: str, annotations: Mapping[str, str]) -> LeaseView:
        self._maybe_fail("create_lease")
        with self.lock:
            if (namespace, name) in self.leases:
                raise Conflict("exists")
            lease = LeaseView(namespace=namespace, name=name, resource_version=self.rv(), annotations=dict(annotations))
            self.leases[(namespace, name)] = lease
            return lease

    def update_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], resource_version: str | None
    ) -> LeaseView:
        self._maybe_fail("update_lease")
        with self.lock:
            current = self.leases.get((namespace, name))
            if current is None:  # a PUT may create a Lease (its strategy allows create on update)
                current = LeaseView(namespace=namespace, name=name, resource_version=resource_version)
            elif resource_version is None:
                raise PermanentError("422: metadata.resourceVersion must be specified for an update")
            if current.resource_version != resource_version:
                raise Conflict("resourceVersion")
            lease = current.model_copy(update={"annotations": dict(annotations), "resource_version": self.rv()})
            self.leases[(namespace, name)] = lease
            return lease

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountView:
        """A seeded one, or the bare `default` every namespace has."""
        self._maybe_fail("get_service_account")
        with self.lock:
            if (namespace, name) in self.service_accounts:
                return self.service_accounts[(namespace, name)]
        if name == "default":
            return ServiceAccountView(namespace=namespace, name=name)
        raise NotFound(f"serviceaccount {namespace}/{name}")

    def served_group_versions(self) -> frozenset[str]:
        self._maybe_fail("served_group_versions")
        with self.lock:
            return frozenset(f"{g}/{v}" for g, v, _ in self.custom_objects)

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        self._maybe_fail("list_objects")
        with self.lock:
            if (group, version, plural) not in self.custom_objects:
                raise NotFound(f"{plural}.{group}/{version} is not served")
            listed = self.custom_objects[(group, version, plural)]
            return [o for o in listed if namespace is None or (o.get("metadata") or {}).get("namespace") == namespace]

    def create_object(self, group: str, version: str, plural: str, namespace: str | None, body: dict[str, Any]) -> None:
        self._maybe_fail("create_object")
        meta = body.get("metadata") or {}
        with self.lock:
            listed = self.custom_objects.setdefault((group, version, plural), [])
            here = namespace or None
            if any(_same(o, here, meta.get("name")) for o in listed):
                raise Conflict(f"{plural} {meta.get('name')} exists")
            made = {**body, "metadata": {**meta, "uid": f"uid-{next(self._uid)}", "resourceVersion": self.rv()}}
            if here:
                made["metadata"]["namespace"] = here
            listed.append(made)
            self.writes.append(f"create {plural} {meta.get('name')}")

    def delete_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str, uid: str, resource_version: str
    ) -> None:
        self._maybe_fail("delete_object")
        with self.lock:
            listed = self.custom_objects.get((group, version, plural), [])
            found = next((o for o in listed if _same(o, namespace or None, name)), None)
            if found is None:
                raise NotFound(f"{plural} {name}")
            meta = found.get("metadata") or {}
            if meta.get("uid") != uid or meta.get("resourceVersion") != resource_version:
                raise Conflict(f"{plural} {name}: precondition failed")
            listed.remove(found)
            self.writes.append(f"delete {plural} {name}")

    def get_admission_binding(self, name: str) -> tuple[str, ...]:
        self._maybe_fail("get_admission_binding")
        try:
            return self.admission_bindings[name]
        except KeyError:
            raise NotFound(f"validatingadmissionpolicybinding {name}") from None

    def get_config_map(self, namespace: str, name: str) -> ConfigMapView:
        self._maybe_fail("get_config_map")
        with self.lock:
            try:
                return self.config_maps[(namespace, name)]
            except KeyError:
                raise NotFound(f"configmap {namespace}/{name}") from None

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> ConfigMapView:
        self._maybe_fail("create_config_map")
        with self.lock:
            if (namespace, name) in self.config_maps:
                raise Conflict("exists")
            made = ConfigMapView(namespace=namespace, name=name, resource_version=self.rv(), data=dict(data))
            self.config_maps[(namespace, name)] = made
            return made

    def patch_config_map_data(self, namespace: str, name: str, data: Mapping[str, str | None]) -> ConfigMapView:
        self._maybe_fail("patch_config_map_data")
        with self.lock:
            current = self.config_maps.get((namespace, name))
            if current is None:
                raise NotFound(f"configmap {namespace}/{name}")
            merged = {k: v for k, v in {**current.data, **data}.items() if v is not None}
            if merged == current.data:
                return current  # a patch that changes nothing keeps the resourceVersion, as on the apiserver
            patched = current.model_copy(update={"data": merged, "resource_version": self.rv()})
            self.config_maps[(namespace, name)] = patched
            return patched

    def update_config_map(
        self, namespace: str, name: str, data: Mapping[str, str], resource_version: str | None
    ) -> ConfigMapView:
        self._maybe_fail("update_config_map")
        with self.lock:
            current = self.config_maps.get((namespace, name))
            if current is None:  # unlike a Lease's, a ConfigMap's PUT never creates it
                raise NotFound(f"configmap {namespace}/{name}")
            if resource_version is not None and current.resource_version != resource_version:
                raise Conflict("resourceVersion")
            updated = current.model_copy(update={"data": dict(data), "resource_version": self.rv()})
            self.config_maps[(namespace, name)] = updated
            return updated


def _capped(output: str, limit_bytes: int, exit_code: int | None, failure: str | None) -> ExecOutput:
    """Exec output as the adapter returns it: cut at ``limit_bytes`` (then no exit status was read), or whole with
    the command's exit."""
    if len(output) >= limit_bytes:
        return ExecOutput(text=output[:limit_bytes], truncated_at=limit_bytes)
    return ExecOutput(text=output, exit_code=exit_code, failure=failure)


def selector_json(selector: LabelSelector) -> dict[str, Any]:
    """A selector as the API writes it (empty parts left out)."""
    out: dict[str, Any] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [
            {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
            for e in selector.match_expressions
        ]
    return out


def _policy_view(
    namespace: str,
    name: str,
    rv: str,
    spec: dict[str, Any],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> NetworkPolicyView:
    spec = copy.deepcopy(spec)
    if not spec.get("policyTypes"):  # the apiserver's default: Ingress, and Egress when there are egress rules
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    sel = spec.get("podSelector") or {}
    return NetworkPolicyView(
        namespace=namespace,
        name=name,
        resource_version=rv,
        pod_selector=LabelSelector(
            match_labels=sel.get("matchLabels") or {},
            match_expressions=tuple(LabelSelectorRequirement(**e) for e in sel.get("matchExpressions") or []),
        ),
        policy_types=tuple(spec.get("policyTypes") or ()),
        labels=dict(labels),
        annotations=dict(annotations),
        spec=spec,
    )


class FakeConnector:
    """Hands out one FakeKube for every cluster."""

    def __init__(self, kube: FakeKube, info: ClusterInfo | None = None) -> None:
        self.kube = kube
        self.info = info
        self.connected: list[ClusterRef] = []

    def connect(self, ref: ClusterRef) -> Connection:
        self.connected.append(ref)
        return Connection(kube=self.kube, info=self.info)


class FakeFindings:
    """SCC as a dict of findings. ``raise_on[m]`` is raised by method ``m`` (SCC down, refusing); ``calls`` counts
    every call, so a test can say how many SCC calls a delivery cost."""

    def __init__(self) -> None:
        self.findings: dict[str, SccFinding] = {}
        self.marks_updates: list[tuple[str, dict[str, str]]] = []
        self.state_changes: list[tuple[str, str]] = []
        self.raise_on: dict[str, Exception] = {}
        self.calls: list[str] = []

    def _hit(self, method: str) -> None:
        self.calls.append(method)
        error = self.raise_on.get(method)
        if error is not None:
            raise error

    def add(
        self,
        name: str,
        state: str = "ACTIVE",
        *,
        category: str = "Reverse Shell",
        resource_name: str | None = None,
        pods: tuple[tuple[str, str], ...] = (),
        mute: str | None = None,
        severity: str | None = None,
        event_time: datetime | None = None,
        marks: dict[str, str] | None = None,
        steering: Finding | None = None,
    ) -> None:
        self.findings[name] = SccFinding(
            name=name,
            state=state,
            category=category,
            resource_name=resource_name,
            pods=pods,
            mute=mute,
            severity=severity,
            event_time=event_time,
            marks=marks or {},
            steering=steering,
        )

    def add_from(self, doc: dict[str, Any], state: str = "ACTIVE", **overrides: Any) -> None:
        """Record what SCC holds for the finding of notification ``doc`` (its category, cluster and pod)."""
        from responder.intake.findings import to_finding
        from responder.intake.notification import NotificationMessage

        finding = to_finding(NotificationMessage.model_validate(doc))
        assert finding.name and finding.pod_namespace and finding.pod_name
        fields: dict[str, Any] = {
            "category": finding.category,
            "resource_name": finding.resource_name,
            "pods": ((finding.pod_namespace, finding.pod_name),),
            "severity": finding.severity,
            "event_time": finding.event_time,
            # SCC's record keeps no marks the message carried (those are whatever the sender wrote).
            "steering": finding.model_copy(update={"security_marks": {}}),
            **overrides,
        }
        self.add(finding.name, state, **fields)

    def get_finding(self, name: str) -> SccFinding | None:
        self._hit("get_finding")
        return self.findings.get(name)

    def update_marks(self, name: str, marks: Mapping[str, str]) -> None:
        self._hit("update_marks")
        if name not in self.findings:
            raise NotFound(name)
        self.marks_updates.append((name, dict(marks)))
        f = self.findings[name]
        self.findings[name] = f.model_copy(update={"marks": {**f.marks, **marks}})

    def set_state(self, name: str, state: Literal["ACTIVE", "INACTIVE"], when: datetime) -> None:
        self._hit("set_state")
        self.state_changes.append((name, state))
        f = self.findings[name]
        self.findings[name] = f.model_copy(update={"state": state})


class Switches:
    """Per-method failure injection: ``raise_on[m]`` is raised, ``sleep_on[m]`` seconds are slept first."""

    def __init__(self) -> None:
        self.raise_on: dict[str, Exception] = {}
        self.sleep_on: dict[str, float] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def hit(self, method: str) -> None:
        with self.lock:
            self.calls.append(method)
        delay = self.sleep_on.get(method)
        if delay:
            time.sleep(delay)
        error = self.raise_on.get(method)
        if error is not None:
            raise error


class FakeLogs(Switches):
    """``LogsAPI``: answers by log kind, recognised from the filter, and records every filter it was given."""

    def __init__(self, by_kind: Mapping[str, list[LogEntry]] | None = None) -> None:
        super().__init__()
        self.by_kind = dict(by_kind or {})
        self.filters: list[tuple[str, str, int]] = []

    @staticmethod
    def kind_of(filter_: str) -> str:
        if 'resource.type="k8s_container"' in filter_:
            return "container"
        if "protoPayload.authenticationInfo.principalEmail=" in filter_:
            return "identity_writes"
        if 'resource.type="k8s_cluster"' in filter_:
            return "audit"
        if 'resource.type="gce_instance"' in filter_:
            return "serial_console"
        return "unknown"

    def search(self, project: str, filter_: str, limit: int) -> list[LogEntry]:
        kind = self.kind_of(filter_)
        with self.lock:
            self.filters.append((project, filter_, limit))
        self.hit(f"search:{kind}")
        return list(self.by_kind.get(kind, []))


class UnavailableLogs:
    """A Logging adapter whose every call says the service cannot be reached."""

    def search(self, project: str, filter_: str, limit: int) -> list[LogEntry]:
        raise Unavailable("Cloud Logging: no credentials")


class FakePublisher:
    """Pub/Sub: collects published messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        self.messages.append((topic, data, dict(attributes)))
        return str(len(self.messages))
