"""The admission fixtures (tests/fixtures/admission/) replayed on the live apiserver, as the responder's identity.

Each fixture case is an admission request the guard sees: an operation, a resource, `oldObject` and `object`. Here
the same case becomes a real request. The old object is seeded as the admin, in the test's namespace where the
fixture says `shop` and in the named namespace otherwise (kube-system, gmp-system, responder-system...). Then the
write that turns it into `object` is sent with the responder's token, as a dry run, so that nothing is stored and a
reused cluster keeps its state.

- Pods are changed by PATCH, as the responder changes them (RBAC grants `patch`, not `update`). Metadata changes go as
  a JSON merge patch: labels and annotations key by key, finalizers and owner references as whole lists. Spec changes
  go as a strategic merge patch: containers by name, lists only added to (a pod's spec only accepts additions).
  Owner references name a ReplicaSet that exists: it is seeded with the pod's own labels as its selector, one replica,
  and a template that cannot make a pod (its service account does not exist), so the controller neither adds a pod
  nor removes this one, and the garbage collector has an owner to find.
- NetworkPolicies are changed by a JSON merge patch, the difference between the fixture's two objects.
- Leases are replaced (RBAC grants `update`), with the stored resourceVersion; the quarantined-identities ConfigMap
  is merge-patched, as the responder does. The real ones are set aside for the case and put back.
- Exec, attach and port-forward are a POST to the subresource, with the PodExecOptions as query parameters. Admission
  judges CONNECT before the apiserver dials a kubelet, so an admitted exec of a pod that no node runs fails later,
  and not with 403.

What RBAC refuses is not sent: a SubjectAccessReview says so, and the guard's refusal of it is a second line, which
the offline tiers prove.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client import ApiException

from responder.containment.budget import LEASE_NAME
from responder.containment.identity import IDENTITIES
from tests.support.kube import wait_for_default_service_account
from tests.support.workloads import budget_lease_set_aside, config_map_set_aside

FIXTURE_NAMESPACE = "shop"  # the fixtures' workload namespace, replaced by the test's own
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "deletionTimestamp", "generation")
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
DRY_RUN = [("dryRun", "All")]
# The verbs RBAC would have to grant for the fixture's operation (any one of them suffices).
VERBS = {"CREATE": ("create",), "UPDATE": ("update", "patch"), "DELETE": ("delete",), "CONNECT": ("create", "get")}
REPLAYED = {("", "pods", ""), ("", "pods", "exec"), ("", "pods", "attach"), ("", "pods", "portforward")} | {
    ("networking.k8s.io", "networkpolicies", ""),
    ("coordination.k8s.io", "leases", ""),
    ("", "configmaps", ""),
    ("authorization.k8s.io", "selfsubjectaccessreviews", ""),
    ("rbac.authorization.k8s.io", "rolebindings", ""),
    ("rbac.authorization.k8s.io", "clusterrolebindings", ""),
}
REPLACED = {"leases"}  # RBAC grants the responder `update` on these, not `patch`


@dataclass(frozen=True)
class Answer:
    """What the apiserver answered the responder's request: its status and, for an error, its message."""

    status: int
    message: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def refused_by_guard(self) -> bool:
        return self.status == 403 and "ValidatingAdmissionPolicy" in self.message


def path(resource: Mapping[str, str], namespace: str, name: str = "", sub: str = "") -> str:
    group, version, plural = resource.get("group", ""), resource["version"], resource["resource"]
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    tail = "/".join(part for part in (plural, name, sub) if part)
    return f"{base}/namespaces/{namespace}/{tail}" if namespace else f"{base}/{tail}"


def send(
    api: client.ApiClient,
    method: str,
    url: str,
    body: Any = None,
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
) -> Answer:
    """One request with ``api``'s credentials; the status and the apiserver's message (never raises for a status)."""
    method_, url_, headers, payload, _ = api.param_serialize(
        method,
        url,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method_, url_, header_params=headers, body=payload)
    data = response.read()
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"message": data.decode(errors="replace")}
    if response.status >= 300:
        return Answer(response.status, str(parsed.get("message", parsed)))
    return Answer(response.status, body=parsed)


def rbac_allows(admin: client.ApiClient, user: str, request: Mapping[str, Any], namespace: str) -> bool:
    """Whether the authorizer alone would let ``user`` make the fixture's request (any of the verbs it could take)."""
    resource = request["resource"]
    for verb in VERBS[request["operation"]]:
        attributes = {
            "verb": verb,
            "group": resource.get("group", ""),
            "resource": resource["resource"],
            "subresource": request.get("subResource", ""),
            "namespace": namespace,
            "name": request.get("name", ""),
        }
        review = {"spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attributes}}
        if client.AuthorizationV1Api(admin).create_subject_access_review(review).status.allowed:
            return True
    return False


def replayable(case: Mapping[str, Any]) -> bool:
    request = case["request"]
    key = (request["resource"].get("group", ""), request["resource"]["resource"], request.get("subResource", ""))
    return "user" not in request and key in REPLAYED


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: maps key by key, anything else whole."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


def _spec_patch(old: dict[str, Any], new: dict[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A strategic merge patch for a pod's spec change: containers merged by name (only their changed fields), any
    other list (which a strategic merge replaces whole) the stored one plus what the fixture adds, anything else
    set."""
    patch: dict[str, Any] = {}
    for key in set(old) | set(new):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in {"containers", "initContainers"}:
            olds = {c["name"]: c for c in before or []}
            patch[key] = [
                {"name": c["name"], **{f: v for f, v in c.items() if olds.get(c["name"], {}).get(f) != v}}
                for c in after or []
                if c != olds.get(c["name"])
            ]
        elif isinstance(before, list) and isinstance(after, list):
            patch[key] = [*stored.get(key, []), *(item for item in after if item not in before)]
        else:
            patch[key] = after
    return patch


@dataclass
class Replay:
    """One fixture case on the live apiserver: seed what it needs as the admin, then send its write as the
    responder; everything seeded is removed by ``cleanup``."""

    admin: client.ApiClient
    responder: client.ApiClient
    test_namespace: str
    case: Mapping[str, Any]
    seeded: list[str] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)  # fixture UID -> live UID

    @property
    def request(self) -> Mapping[str, Any]:
        return self.case["request"]

    def namespace(self, fixture_namespace: str | None = None) -> str:
        ns = self.request.get("namespace", "") if fixture_namespace is None else fixture_namespace
        return self.test_namespace if ns == FIXTURE_NAMESPACE else ns

    def ensure_namespace(self, name: str) -> None:
        """A protected namespace the fixture names (gmp-system, gke-managed-cim...) made if missing, and left: it is
        as empty as it was."""
        if name and send(self.admin, "GET", f"/api/v1/namespaces/{name}").status == 404:
            body = {"metadata": {"name": name, "labels": {"rsr-test": "true"}}}
            created = send(self.admin, "POST", "/api/v1/namespaces", body)
            assert created.status in (201, 409), created
            wait_for_default_service_account(self.admin, name)

    def _localised(self, obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The fixture's object in this cluster: server fields dropped, the namespace mapped, known UIDs replaced."""
        if obj is None:
            return None
        live = copy.deepcopy(dict(obj))
        meta = live.setdefault("metadata", {})
        for key in SERVER_FIELDS:
            meta.pop(key, None)
        if "namespace" in meta or self.request.get("namespace"):
            meta["namespace"] = self.namespace()  # where the request goes (a fixture may name another)
        for ref in meta.get("ownerReferences") or []:
            ref["uid"] = self.uids.get(ref["uid"], ref["uid"])
        live.pop("status", None)
        if live.get("kind") == "Pod":
            live.get("spec", {}).pop("nodeName", None)  # no such node here: the pod stays Pending
        return live

    def _seed_owner(self, pod: Mapping[str, Any]) -> None:
        """The ReplicaSet a seeded pod names as its controller (see the module's docstring)."""
        meta, ns = pod["metadata"], self.namespace(pod["metadata"].get("namespace"))
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") != "ReplicaSet" or ref["uid"] in self.uids:
                continue
            labels = dict(meta.get("labels") or {"rsr-live-owner": ref["name"]})
            body = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": ref["name"]},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": "rsr-live-nobody",  # it never makes a pod of its own
                            "containers": [{"name": "api", "image": "registry.invalid/never:1"}],
                        },
                    },
                },
            }
            url = path({"group": "apps", "version": "v1", "resource": "replicasets"}, ns)
            created = self._create(url, body)
            self.uids[ref["uid"]] = created["metadata"]["uid"]

    def _create(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        created = send(self.admin, "POST", url, body)
        assert created.status == 201, (url, created)
        self.seeded.append(f"{url}/{created.body['metadata']['name']}")
        return created.body

    def seed(self) -> dict[str, Any] | None:
        """The stored object the write applies to (the fixture's oldObject, or for CONNECT a pod to exec into)."""
        request = self.request
        ns = self.namespace()
        self.ensure_namespace(ns)
        old = self.case.get("oldObject")
        if request["operation"] == "CONNECT":
            container = (self.case.get("object") or {}).get("container", "api")
            old = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": request["name"], "labels": {"app": "web"}},
                "spec": {"containers": [{"name": container, "image": "registry.invalid/shop:1"}]},
            }
        if old is None:
            return None
        if old.get("kind") == "Pod":
            self._seed_owner(old)
        body = self._localised(old)
        assert body is not None
        resource = {**request["resource"]}
        return self._create(path(resource, ns), body)

    def write(self, stored: Mapping[str, Any] | None) -> Answer:
        """The fixture's write, as the responder, against what ``seed`` stored."""
        request, ns = self.request, self.namespace()
        resource, name, operation = request["resource"], request.get("name", ""), request["operation"]
        new = self._localised(self.case.get("object"))
        if operation == "CREATE":
            return send(self.responder, "POST", path(resource, ns), new, query=DRY_RUN)
        if operation == "DELETE":
            options: dict[str, Any] = {"dryRun": ["All"]}
            if stored is not None:
                options["preconditions"] = {"uid": stored["metadata"]["uid"]}
            return send(self.responder, "DELETE", path(resource, ns, name), options)
        if operation == "CONNECT":
            return send(self.responder, "POST", path(resource, ns, name, request["subResource"]), query=_connect(new))
        assert operation == "UPDATE" and stored is not None and new is not None, self.case["name"]
        return self._update(resource, ns, name, stored, new)

    def _update(
        self, resource: Mapping[str, str], ns: str, name: str, stored: Mapping[str, Any], new: dict[str, Any]
    ) -> Answer:
        old = self._localised(self.case["oldObject"])
        assert old is not None
        url = path(resource, ns, name)
        if resource["resource"] in REPLACED:
            new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
            return send(self.responder, "PUT", url, new, query=DRY_RUN)
        if resource["resource"] == "pods" and old.get("spec") != new.get("spec"):
            body = {"spec": _spec_patch(old["spec"], new["spec"], stored["spec"])}
            return send(self.responder, "PATCH", url, body, STRATEGIC, DRY_RUN)
        return send(self.responder, "PATCH", url, merge_diff(old, new), MERGE, DRY_RUN)

    def cleanup(self) -> None:
        for url in reversed(self.seeded):
            with contextlib.suppress(ApiException):
                send(self.admin, "DELETE", url, {"gracePeriodSeconds": 0})


def _connect(options: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """PodExecOptions as the query an exec, attach or port-forward request carries (one `command` per argument)."""
    query: list[tuple[str, str]] = []
    for key, value in (options or {}).items():
        if key in {"kind", "apiVersion"}:
            continue
        for item in value if isinstance(value, list) else [value]:
            query.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return query


@contextlib.contextmanager
def replayed(
    admin: client.ApiClient, responder: client.ApiClient, test_namespace: str, case: Mapping[str, Any]
) -> Iterator[Answer]:
    """Seeds the case, sends its write, yields the answer, and removes what it seeded."""
    replay = Replay(admin, responder, test_namespace, case)
    request = case["request"]
    own = request.get("namespace") == "responder-system"
    kept: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if own and request["resource"]["resource"] == "leases":
        kept = budget_lease_set_aside(admin, "responder-system", LEASE_NAME)
    elif own and request["resource"]["resource"] == "configmaps":
        kept = config_map_set_aside(admin, "responder-system", request.get("name") or IDENTITIES)
    with kept:
        try:
            yield replay.write(replay.seed())
        finally:
            replay.cleanup()
