"""The KubePort calls that name an API kind rather than a fixed resource: discovery, listing a kind, creating and
deleting one object of it with preconditions, and reading an admission binding. Mixed into ``KubeAdapter``: the
cluster-scoped network policies (``containment.cluster_tier``), the RBAC objects (``investigation.rights``,
``containment.revoke``) and the admission policies the responder relies on go through here.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

from responder.adapters.kube_errors import call as _call
from responder.adapters.kube_http import KubeHttp
from responder.adapters.kube_http import segment as _seg
from responder.adapters.kube_reads import ReadSpec, objects
from responder.adapters.kube_reads import kind_path as _kind_path

T = TypeVar("T")
DISCOVERY_TTL_S = 300.0


class ObjectCalls:
    """Calls by kind, over the adapter's ``http``; discovery is cached under its ``_lock``."""

    http: KubeHttp
    _lock: threading.Lock
    _discovered: tuple[frozenset[str], float] | None

    def _get(self, what: str, path: str, **query: Any) -> Any:
        return _call(what, lambda: self.http.request("GET", path, query=query))

    def _read(self, spec: ReadSpec[T]) -> T:
        return spec.convert(self._get(spec.what, spec.path))

    def served_group_versions(self) -> frozenset[str]:
        """``/apis`` discovery, kept for ``DISCOVERY_TTL_S``: a CRD installed later is seen within minutes, and an
        event pays for the read only when the cache is cold (behind its isolating writes)."""
        with self._lock:
            cached = self._discovered
        if cached is not None and time.monotonic() - cached[1] < DISCOVERY_TTL_S:
            return cached[0]
        listed = self._get("discover the served API groups", "/apis")
        served = frozenset(
            str(v.get("groupVersion"))
            for g in listed.get("groups") or ()
            if isinstance(g, dict)
            for v in g.get("versions") or ()
            if isinstance(v, dict) and v.get("groupVersion")
        )
        with self._lock:
            self._discovered = (served, time.monotonic())
        return served

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """List a kind (the cluster-scoped network policies); NotFound when it is not served."""
        return self._read(objects(group, version, plural, namespace))

    def create_object(self, group: str, version: str, plural: str, namespace: str | None, body: dict[str, Any]) -> None:
        """Create an object of a kind (a RoleBinding recreated by release); Conflict when the name is taken."""
        path = _kind_path(group, version, plural, namespace)
        _call(f"create {plural}.{group or 'core'}", lambda: self.http.request("POST", path, body=body))

    def delete_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str, uid: str, resource_version: str
    ) -> None:
        """Delete with preconditions on UID and resourceVersion: only the version that was judged is removed."""
        path = f"{_kind_path(group, version, plural, namespace)}/{_seg(name)}"
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        where = f"{namespace}/{name}" if namespace else name
        _call(f"delete {plural}.{group or 'core'} {where}", lambda: self.http.request("DELETE", path, body=options))

    def get_admission_binding(self, name: str) -> tuple[str, ...]:
        """A ValidatingAdmissionPolicyBinding's validationActions (NotFound when it is not installed)."""
        path = f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{_seg(name)}"
        binding = self._get(f"get validatingadmissionpolicybinding {name}", path)
        return tuple(str(a) for a in (binding.get("spec") or {}).get("validationActions") or ())
