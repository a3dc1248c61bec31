"""Where the objects the responder reads live on the apiserver, and the reads that can go out together.

A read is described once (:class:`ReadSpec`: what it is called in errors, its path, how its JSON becomes a view) and
made either alone (``KubeAdapter.get_pod`` and the like) or with others in one round from the calling thread
(:meth:`TogetherReads.read_together`). A converged redelivery's checks are such a round: handed to as many worker
threads they cost about twice the CPU, in thread hand-offs and in reads competing for the CPU with each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from responder.adapters import kube_json as js
from responder.adapters.kube_errors import translate
from responder.adapters.kube_http import KubeHttp
from responder.adapters.kube_http import segment as _seg
from responder.errors import TransientError
from responder.ports import ConfigMapView, KubeRead, NamespaceView, NetworkPolicyView, PodView

T = TypeVar("T")


def pod_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{_seg(namespace)}/pods"
    return f"{base}/{_seg(name)}" if name else base


def np_path(namespace: str, name: str = "") -> str:
    base = f"/apis/networking.k8s.io/v1/namespaces/{_seg(namespace)}/networkpolicies"
    return f"{base}/{_seg(name)}" if name else base


def config_map_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{_seg(namespace)}/configmaps"
    return f"{base}/{_seg(name)}" if name else base


def kind_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    """The collection of a kind: ``/api/v1`` for the core group, ``/apis/GROUP/VERSION`` for the others."""
    root = f"/apis/{_seg(group)}/{_seg(version)}" if group else f"/api/{_seg(version)}"
    where = f"/namespaces/{_seg(namespace)}" if namespace else ""
    return f"{root}{where}/{_seg(plural)}"


def np_view(obj: dict[str, Any], namespace: str) -> NetworkPolicyView:
    obj.setdefault("metadata", {}).setdefault("namespace", namespace)  # list items may omit it
    return js.network_policy_view(obj)


@dataclass(frozen=True, slots=True)
class ReadSpec(Generic[T]):
    """One GET: its name in errors, its path, and what its JSON answer becomes."""

    what: str
    path: str
    convert: Callable[[Any], T]


def _items(listed: Any) -> list[dict[str, Any]]:
    return [o for o in listed.get("items") or () if isinstance(o, dict)]


def pod(namespace: str, name: str) -> ReadSpec[PodView]:
    return ReadSpec(f"get pod {namespace}/{name}", pod_path(namespace, name), js.pod_view)


def network_policies(namespace: str) -> ReadSpec[list[NetworkPolicyView]]:
    # Every item is judged: one that is not an object fails the read rather than being skipped (it could allow).
    return ReadSpec(
        f"list networkpolicies in {namespace}",
        np_path(namespace),
        lambda j: [np_view(p, namespace) for p in j.get("items") or ()],
    )


def config_map(namespace: str, name: str) -> ReadSpec[ConfigMapView]:
    return ReadSpec(f"get configmap {namespace}/{name}", config_map_path(namespace, name), js.config_map_view)


def _namespace_view(obj: Any) -> NamespaceView:
    meta = obj.get("metadata") or {}
    return NamespaceView(name=meta["name"], labels=meta.get("labels") or {}, annotations=meta.get("annotations") or {})


def namespace(name: str) -> ReadSpec[NamespaceView]:
    return ReadSpec(f"get namespace {name}", f"/api/v1/namespaces/{_seg(name)}", _namespace_view)


def objects(group: str, version: str, plural: str, namespace: str | None = None) -> ReadSpec[list[dict[str, Any]]]:
    where = f" in {namespace}" if namespace else ""
    return ReadSpec(f"list {plural}.{group}{where}", kind_path(group, version, plural, namespace), _items)


# The KubePort reads that can go out together, by method name: each takes that method's arguments.
SPECS: dict[str, Callable[..., ReadSpec[Any]]] = {
    "get_pod": pod,
    "list_network_policies": network_policies,
    "get_config_map": config_map,
    "get_namespace": namespace,
    "list_objects": objects,
}


class TogetherReads:
    """``read_together`` for the adapter: the reads in :data:`SPECS` in one round, any other one after them."""

    http: KubeHttp

    def read_together(self, reads: Sequence[KubeRead]) -> list[Future[Any]]:
        """Each read's view, or its error as ``responder.errors``, in a completed future, in order.

        The first attempt of every read goes out together; one that fails transiently is then made alone, with the
        retries every call has (``kube_errors.call``), so a read together never gives up sooner than alone."""
        specs = [SPECS[r.method](*r.args) if r.method in SPECS else None for r in reads]
        sent = [s for s in specs if s is not None]
        answers = iter(self.http.get_together([(s.path, None) for s in sent]) if sent else [])
        out: list[Future[Any]] = []
        for read, spec in zip(reads, specs, strict=True):
            done: Future[Any] = Future()
            try:
                done.set_result(self._settle(read, spec, next(answers) if spec is not None else None))
            except Exception as exc:  # the read's own error, as the caller would have met it alone
                done.set_exception(exc)
            out.append(done)
        return out

    def _settle(self, read: KubeRead, spec: ReadSpec[Any] | None, answer: Any) -> Any:
        if spec is None:
            return getattr(self, read.method)(*read.args)  # not one that goes together: alone, after the others
        if not isinstance(answer, Exception):
            return spec.convert(answer)
        translated = translate(answer, spec.what)
        if isinstance(translated, TransientError):
            return getattr(self, read.method)(*read.args)  # alone now, with its retries
        if translated is answer:
            raise answer
        raise translated from answer
