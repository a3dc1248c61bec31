"""Least authority on a real kube-apiserver: the responder may take every action it takes, and nothing else.

Every check is a real API call made with an identity's own token, holding the rights `make kube-up` gives it:
the responder (deploy/kubernetes/rbac.yaml + rbac-capture.yaml) and the responder without process capture (rbac.yaml
only). An allowed call must not be refused by the authorizer (it may still fail for another reason: no kubelet stands
behind pods/log and pods/exec); a refused call must get the authorizer's 403 naming the identity.

What RBAC cannot refuse: a change of a pod's spec (an image swap) rides on `pods: patch`, and `pods: patch, delete` and
`networkpolicies: create, patch` hold in kube-system as everywhere, because the compromised pod can be in any
namespace. deploy/kubernetes/admission-guard.yaml refuses those (and any exec argv but `ps axjf` and
`cat /proc/net/tcp /proc/net/tcp6`); `make kube-up` installs it on this 1.35 apiserver, which enforces it. The last
test shows the authorizer allowing such writes (a SubjectAccessReview) and the apiserver refusing them with the
guard's own message, the one the offline evaluator (tests/support/admission_guard.py) gives; the allowed writes below
pass the live guard and are judged again offline, admitted. The full live table: tests/integration/test_guard_live.py;
offline: tests/unit/test_admission_guard.py and tests/guard/test_kubernetes_cel.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.stream import stream

from responder.containment.budget import ENTRIES_ANNOTATION, LEASE_NAME
from responder.containment.capture import PROCESS_TREE_ARGV
from responder.containment.keys import (
    ACTIONS_ANNOTATION,
    AT_ANNOTATION,
    FINDING_ANNOTATION,
    ORIGINAL_LABELS_ANNOTATION,
    QUARANTINE_LABEL,
)
from responder.containment.shape import deny_all_body
from tests.support import workloads as w
from tests.support.admission_guard import (
    PODS,
    POLICIES,
    Decision,
    Guard,
    admission_request,
    load_guard,
    manifest_documents,
)
from tests.support.kube import RESPONDER_NAMESPACE, KubeEnv, status_of

pytestmark = pytest.mark.integration

FORBIDDEN = 403
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
EXCLUDE = {"key": QUARANTINE_LABEL, "operator": "NotIn", "values": ["true"]}


def refused(call: Callable[[], Any], identity: str) -> None:
    """The authorizer's 403, naming `identity` (not some other 403)."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == FORBIDDEN, f"expected 403, got {info.value.status}: {info.value.body}"
    message = json.loads(info.value.body)["message"]
    assert f'User "{identity}" cannot' in message, message


def raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The object exactly as the apiserver serialised it (absent fields absent), as admission would see it."""
    response = call(*args, _preload_content=False, **kwargs)
    return dict(json.loads(response.data))


def exec_handshake(api: client.ApiClient, namespace: str, pod: str, argv: list[str]) -> tuple[int, str]:
    """Opens the exec websocket the way responder/adapters/kube.py does; the handshake's HTTP status and message."""
    try:
        stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=argv,
            container="api",
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        ).close()
    except ApiException as exc:
        # The websocket client reports a refused upgrade as "Handshake status N ... -+-+- headers -+-+- body".
        reason = str(exc.reason)
    else:
        return 101, "switched protocols"
    found = re.search(r"Handshake status (\d+)", reason)
    assert found, reason
    body = reason.rsplit(" -+-+- ", maxsplit=1)[-1]
    try:
        return int(found.group(1)), str(json.loads(body).get("message", body))
    except ValueError:
        return int(found.group(1)), body


def guard_refusal(call: Callable[[], Any]) -> str:
    """The admission guard's 403 (not the authorizer's), as the apiserver words it: its message."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == FORBIDDEN, f"expected 403, got {info.value.status}: {info.value.body}"
    message = str(json.loads(info.value.body)["message"])
    name = next(d for d in manifest_documents() if d["kind"] == "ValidatingAdmissionPolicy")["metadata"]["name"]
    assert f"ValidatingAdmissionPolicy '{name}'" in message and "denied request" in message, message
    return message


def rbac_allows(admin: client.ApiClient, user: str, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    """What the authorizer alone decides for ``user`` (a SubjectAccessReview): admission comes after it."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=namespace, group=group
            ),
        )
    )
    return bool(client.AuthorizationV1Api(admin).create_subject_access_review(review).status.allowed)


def admitted(guard: Guard, request: dict[str, Any], new: Any, old: Any) -> Decision:
    decision = guard.review(request, new, old)
    assert decision.matched, "the guard must apply to the responder's own requests"
    return decision


@pytest.fixture(scope="module")
def guard() -> Guard:
    return load_guard()


@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> dict[str, Any]:
    """A Deployment's pod (ReplicaSet-owned, so the owner chain is real) and an allowing policy that selects it."""
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=1)
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    [pod] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=web")
    return raw(client.CoreV1Api(kube_admin).read_namespaced_pod, pod.metadata.name, kube_namespace)


@pytest.fixture
def node(kube_admin: client.ApiClient) -> Iterator[str]:
    name = f"rsr-node-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_admin)
    core.create_node({"metadata": {"name": name, "labels": {"rsr-test": "true"}}})
    yield name
    core.delete_node(name)


# ------------------------------------------------------------------------------------- what the responder does


def test_every_action_the_responder_takes_is_allowed(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    kube_namespace: str,
    shop: dict[str, Any],
    node: str,
    guard: Guard,
) -> None:
    ns, name, uid = kube_namespace, shop["metadata"]["name"], shop["metadata"]["uid"]
    core, apps = client.CoreV1Api(kube_responder), client.AppsV1Api(kube_responder)
    net, coord = client.NetworkingV1Api(kube_responder), client.CoordinationV1Api(kube_responder)

    # Investigation and evidence: the pod by name, its owner chain, its node and namespace, its logs, ps axjf.
    pod = raw(core.read_namespaced_pod, name, ns)
    [owner] = pod["metadata"]["ownerReferences"]
    replica_set = apps.read_namespaced_replica_set(owner["name"], ns)
    assert apps.read_namespaced_deployment(replica_set.metadata.owner_references[0].name, ns).metadata.name == "web"
    assert core.read_namespace(ns).metadata.name == ns
    assert core.read_node(node).metadata.name == node
    assert core.read_namespaced_service_account("default", ns).metadata.name == "default"  # its Google identity
    rbac = client.RbacAuthorizationV1Api(kube_responder)  # what that account may do: the four lists, cluster-wide
    rbac.list_role_binding_for_all_namespaces()
    rbac.list_cluster_role_binding()
    rbac.list_role_for_all_namespaces()
    rbac.list_cluster_role()
    binding = client.AdmissionregistrationV1Api(kube_responder).read_validating_admission_policy_binding(
        "reverse-shell-responder-identity"
    )  # the identity guard is in force (the step never claims a refusal the cluster will not make)
    assert "Deny" in binding.spec.validation_actions
    assert status_of(lambda: core.read_namespaced_pod_log(name, ns, tail_lines=10)) != FORBIDDEN
    status, message = exec_handshake(kube_responder, ns, name, PROCESS_TREE_ARGV)
    assert status != FORBIDDEN, message  # authorised; no kubelet behind the pod: "does not have a host assigned"

    # Isolation: list the namespace's policies, create the deny-all, exclude quarantined pods from the allowing one.
    assert {p.metadata.name for p in net.list_namespaced_network_policy(ns).items} == {"allow-web"}
    deny_all = raw(net.create_namespaced_network_policy, ns, deny_all_body())
    decision = admitted(
        guard, admission_request("CREATE", POLICIES, namespace=ns, name="rsr-quarantine-deny-all"), deny_all, None
    )
    assert decision.allowed, decision.refusals
    allow_web = raw(client.NetworkingV1Api(kube_admin).read_namespaced_network_policy, "allow-web", ns)
    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [EXCLUDE]}
    excluded = raw(
        net.patch_namespaced_network_policy, "allow-web", ns, {"spec": {"podSelector": selector}}, _content_type=MERGE
    )
    assert excluded["spec"]["podSelector"] == selector
    decision = admitted(
        guard, admission_request("UPDATE", POLICIES, namespace=ns, name="allow-web"), excluded, allow_web
    )
    assert decision.allowed, decision.refusals

    # The one pod patch: quarantine label, the record, detach (workload labels removed); the UID is a precondition.
    labels = {QUARANTINE_LABEL: "true", **dict.fromkeys(k for k in pod["metadata"]["labels"] if k != QUARANTINE_LABEL)}
    annotations = {
        FINDING_ANNOTATION: "organizations/1234/sources/5678/findings/f00d",
        ACTIONS_ANNOTATION: "isolate,capture,delete",
        AT_ANNOTATION: "2026-11-28T10:02:07+00:00",
        ORIGINAL_LABELS_ANNOTATION: json.dumps(pod["metadata"]["labels"], sort_keys=True),
    }
    body = {"metadata": {"uid": uid, "labels": labels, "annotations": annotations}}
    patched = raw(core.patch_namespaced_pod, name, ns, body, _content_type=STRATEGIC)
    assert patched["metadata"]["labels"] == {QUARANTINE_LABEL: "true"}
    decision = admitted(guard, admission_request("UPDATE", PODS, namespace=ns, name=name), patched, pod)
    assert decision.allowed, decision.refusals

    # The blast-radius budget: its Lease in responder-system (set aside and put back), created with one entry, read,
    # and updated optimistically by appending one.
    def entries(*keys: str) -> dict[str, str]:
        return {ENTRIES_ANNOTATION: json.dumps([["2026-11-28T10:02:07+00:00", k] for k in keys])}

    lease = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE_NAME, annotations=entries("f1")), spec={})
    with w.budget_lease_set_aside(kube_admin, RESPONDER_NAMESPACE, LEASE_NAME):
        coord.create_namespaced_lease(RESPONDER_NAMESPACE, lease)
        current = coord.read_namespaced_lease(LEASE_NAME, RESPONDER_NAMESPACE)
        current.metadata.annotations = entries("f1", "f2")
        replaced = coord.replace_namespaced_lease(LEASE_NAME, RESPONDER_NAMESPACE, current)
        assert replaced.metadata.annotations == entries("f1", "f2")

    # Delete exactly this incarnation.
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    core.delete_namespaced_pod(name, ns, body=options)
    decision = admitted(guard, admission_request("DELETE", PODS, namespace=ns, name=name), None, patched)
    assert decision.allowed, decision.refusals


def test_without_the_capture_role_exec_is_refused_and_the_rest_still_works(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    kube_responder_nocapture: client.ApiClient,
    kube_namespace: str,
) -> None:
    ns, identity = kube_namespace, kube_env.responder_nocapture_identity
    w.create_pod(kube_admin, ns, "suspect")

    status, message = exec_handshake(kube_responder_nocapture, ns, "suspect", PROCESS_TREE_ARGV)
    assert status == FORBIDDEN, message
    assert f'User "{identity}" cannot' in message and "pods/exec" in message, message
    status, message = exec_handshake(kube_responder, ns, "suspect", PROCESS_TREE_ARGV)
    assert status != FORBIDDEN, message  # the same call with rbac-capture.yaml's role

    core = client.CoreV1Api(kube_responder_nocapture)
    assert core.read_namespaced_pod("suspect", ns).metadata.name == "suspect"
    assert status_of(lambda: core.read_namespaced_pod_log("suspect", ns, tail_lines=10)) != FORBIDDEN
    core.patch_namespaced_pod(
        "suspect", ns, {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}}, _content_type=STRATEGIC
    )
    assert client.NetworkingV1Api(kube_responder_nocapture).list_namespaced_network_policy(ns).items == []
    for verb in ("get", "create"):  # websocket exec is authorised as `get` before 1.30, as `create` after
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, resource="pods", subresource="exec", namespace=ns
                )
            )
        )
        answer = client.AuthorizationV1Api(kube_responder_nocapture).create_self_subject_access_review(review)
        assert answer.status.allowed is False, verb


# ------------------------------------------------------------------------------ what RBAC refuses outright


@pytest.mark.parametrize("who", ["responder", "responder without capture"])
def test_rbac_refuses_everything_else(
    who: str,
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    kube_responder_nocapture: client.ApiClient,
    kube_namespace: str,
) -> None:
    api = kube_responder if who == "responder" else kube_responder_nocapture
    identity = kube_env.responder_identity if who == "responder" else kube_env.responder_nocapture_identity
    ns = kube_namespace
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    net, coord = client.NetworkingV1Api(api), client.CoordinationV1Api(api)
    admin_core = client.CoreV1Api(kube_admin)
    w.create_deployment(kube_admin, ns, "web", replicas=0)
    w.create_policy(kube_admin, ns, "allow-web", {"app": "web"})
    w.create_pod(kube_admin, ns, "suspect")
    admin_core.create_namespaced_secret(ns, {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})

    # Pods: only by name (a list would hand over every pod spec with its environment), never created.
    refused(lambda: core.list_namespaced_pod(ns), identity)
    refused(core.list_pod_for_all_namespaces, identity)
    refused(
        lambda: core.create_namespaced_pod(
            ns, {"metadata": {"name": "intruder"}, "spec": {"containers": [{"name": "a", "image": "x/y:1"}]}}
        ),
        identity,
    )
    refused(
        lambda: core.create_namespaced_pod_eviction("suspect", ns, {"metadata": {"name": "suspect", "namespace": ns}}),
        identity,
    )
    refused(lambda: core.replace_namespaced_pod("suspect", ns, admin_core.read_namespaced_pod("suspect", ns)), identity)
    refused(lambda: core.connect_post_namespaced_pod_attach("suspect", ns, container="api", stdin=True), identity)
    refused(lambda: core.connect_post_namespaced_pod_portforward("suspect", ns, ports="5432"), identity)
    # Workload data and workloads.
    refused(lambda: core.read_namespaced_secret("db", ns), identity)
    refused(lambda: core.list_namespaced_secret(ns), identity)
    refused(lambda: apps.delete_namespaced_deployment("web", ns), identity)
    refused(
        lambda: apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 3}}, _content_type=MERGE), identity
    )
    refused(
        lambda: apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}}, _content_type=MERGE),
        identity,
    )
    # NetworkPolicies: list, create, patch; never read one by one, replaced wholesale or deleted.
    refused(lambda: net.read_namespaced_network_policy("allow-web", ns), identity)
    refused(lambda: net.delete_namespaced_network_policy("allow-web", ns), identity)
    current = client.NetworkingV1Api(kube_admin).read_namespaced_network_policy("allow-web", ns)
    refused(lambda: net.replace_namespaced_network_policy("allow-web", ns, current), identity)
    # Leases: only in responder-system.
    lease = {"metadata": {"name": "rsr-destructive-budget"}, "spec": {}}
    for namespace in (ns, "default", "kube-node-lease", "kube-system"):
        refused(lambda namespace=namespace: coord.create_namespaced_lease(namespace, lease), identity)
    refused(lambda: coord.list_namespaced_lease(RESPONDER_NAMESPACE), identity)
    # Cluster objects are read, never written.
    refused(lambda: core.patch_namespace(ns, {"metadata": {"labels": {"x": "y"}}}, _content_type=MERGE), identity)
    refused(core.list_namespace, identity)
    refused(core.list_node, identity)


# ------------------------------------------------------------------- what only the admission guard refuses


def test_what_rbac_cannot_refuse_the_admission_guard_does(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_responder: client.ApiClient, kube_namespace: str, guard: Guard
) -> None:
    """`pods: patch` and `networkpolicies: create` are needed in every namespace, and RBAC cannot look inside a patch:
    the authorizer allows each write below (a SubjectAccessReview says so), and the apiserver's admission guard
    refuses it with its own message, the message the offline evaluator gives for the same request."""
    if kube_env.version.startswith("1.20."):
        pytest.skip("RSR_KUBE=1.20 predates ValidatingAdmissionPolicy: no guard runs there")
    ns, identity = kube_namespace, kube_env.responder_identity
    core, net = client.CoreV1Api(kube_responder), client.NetworkingV1Api(kube_responder)
    admin_core = client.CoreV1Api(kube_admin)

    # An image swap through `pods: patch`.
    w.create_pod(kube_admin, ns, "suspect")
    before = raw(admin_core.read_namespaced_pod, "suspect", ns)
    assert rbac_allows(kube_admin, identity, "patch", "pods", ns)
    swap = {"spec": {"containers": [{"name": "api", "image": "attacker/backdoor:1"}]}}
    message = guard_refusal(lambda: core.patch_namespaced_pod("suspect", ns, swap, _content_type=STRATEGIC))
    would_be = json.loads(json.dumps(before))
    would_be["spec"]["containers"][0]["image"] = "attacker/backdoor:1"
    offline = admitted(guard, admission_request("UPDATE", PODS, namespace=ns, name="suspect"), would_be, before)
    assert "never changes a pod's spec" in message and any(m in message for m in offline.refusals), offline
    assert raw(admin_core.read_namespaced_pod, "suspect", ns)["spec"] == before["spec"]

    # A label added to a kube-system pod, and a deny-all created there.
    name = f"rsr-sys-{uuid.uuid4().hex[:8]}"
    w.create_pod(kube_admin, "kube-system", name)
    try:
        before = raw(admin_core.read_namespaced_pod, name, "kube-system")
        assert rbac_allows(kube_admin, identity, "patch", "pods", "kube-system")
        body = {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}}
        message = guard_refusal(lambda: core.patch_namespaced_pod(name, "kube-system", body, _content_type=STRATEGIC))
        would_be = json.loads(json.dumps(before))
        would_be["metadata"]["labels"] = {**would_be["metadata"].get("labels", {}), QUARANTINE_LABEL: "true"}
        request = admission_request("UPDATE", PODS, namespace="kube-system", name=name)
        offline = admitted(guard, request, would_be, before)
        assert "protected namespace" in message and any(m in message for m in offline.refusals), offline

        assert rbac_allows(kube_admin, identity, "create", "networkpolicies", "kube-system", "networking.k8s.io")
        message = guard_refusal(lambda: net.create_namespaced_network_policy("kube-system", deny_all_body()))
        assert "protected namespace" in message, message
        assert (
            status_of(
                lambda: client.NetworkingV1Api(kube_admin).read_namespaced_network_policy(
                    "rsr-quarantine-deny-all", "kube-system"
                )
            )
            == 404
        )
    finally:
        with contextlib.suppress(ApiException):
            admin_core.delete_namespaced_pod(name, "kube-system", grace_period_seconds=0)
