"""deploy/kubernetes/identity-guard.yaml decided by the live apiserver (issue 31): who it refuses, and who never.

Tokens are issued by the apiserver's TokenRequest API, bound to a (Pending) pod as a kubelet binds the token it mounts:
each carries the pod's UID in its user's extra info, exactly as a token read from a running pod does
(tests/node/test_identity_live.py uses one read from inside a running pod). Each case writes the parameter
(responder-system/rsr-quarantined-identities, set aside and put back) and waits until the apiserver's informer has
it, then tries a write. The first row is the one that matters most: a policy whose match condition errors on
a request without extra info (every admin, controller and kubelet request) would refuse every write in the cluster
(failurePolicy Fail); it was caught here, on this apiserver, before it shipped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from responder.containment.identity import IDENTITIES
from tests.support import workloads as w
from tests.support.kube import RESPONDER_NAMESPACE, KubeEnv, client_with_token

pytestmark = pytest.mark.integration

POLICY = "reverse-shell-responder-identity"
SETTLE_S = 10.0  # the apiserver reads the parameter from an informer


@pytest.fixture(autouse=True)
def _guard_runs_here(kube_env: KubeEnv) -> None:
    if kube_env.version.startswith("1.20."):
        pytest.skip("RSR_KUBE=1.20 predates ValidatingAdmissionPolicy")


def token_client(
    kube_env: KubeEnv, admin: client.ApiClient, namespace: str, account: str, pod: Any
) -> client.ApiClient:
    """A client holding a token for ``account``, bound to ``pod`` (None: bound to nothing)."""
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 600}
    if pod is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid}
    issued = client.CoreV1Api(admin).create_namespaced_service_account_token(account, namespace, {"spec": spec})
    return client_with_token(kube_env.kubeconfig, issued.status.token)


def write(api: client.ApiClient, namespace: str) -> tuple[int, str]:
    body = {"metadata": {"generateName": "probe-"}, "data": {"k": "v"}}
    try:
        client.CoreV1Api(api).create_namespaced_config_map(namespace, body)
    except client.ApiException as exc:
        return exc.status, str(json.loads(exc.body or "{}").get("message", exc.reason))
    return 201, ""


def settles(api: client.ApiClient, namespace: str, expected: int) -> tuple[int, str]:
    """The write's answer once the informer has the parameter (or the last one after SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        status, message = write(api, namespace)
        if status == expected or time.monotonic() > deadline:
            return status, message
        time.sleep(0.1)


def entry(account: str, pod: Any) -> dict[str, str]:
    ns, name = pod.metadata.namespace, pod.metadata.name
    return {pod.metadata.uid: f"system:serviceaccount:{ns}:{account} {ns}/{name}"}


@pytest.fixture
def scene(kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str) -> dict[str, Any]:
    """Two pods of the namespace's `default` account, which may write in its namespace (`edit`)."""
    ns = kube_namespace
    client.RbacAuthorizationV1Api(kube_admin).create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        },
    )
    victim, sibling = (w.create_pod(kube_admin, ns, name) for name in ("victim", "sibling"))
    return {
        "ns": ns,
        "victim": victim,
        "sibling": sibling,
        "stolen": token_client(kube_env, kube_admin, ns, "default", victim),
        "other": token_client(kube_env, kube_admin, ns, "default", sibling),
        "unbound": token_client(kube_env, kube_admin, ns, "default", None),
    }


def refused_by_the_policy(answer: tuple[int, str]) -> bool:
    status, message = answer
    return status == 403 and f"ValidatingAdmissionPolicy '{POLICY}'" in message


def test_who_the_identity_guard_refuses_and_who_never(
    kube_admin: client.ApiClient, kube_namespace: str, scene: dict[str, Any]
) -> None:
    ns, victim = scene["ns"], scene["victim"]
    with w.config_map_set_aside(kube_admin, RESPONDER_NAMESPACE, IDENTITIES) as put:
        put(None)  # no parameter: refuses nothing
        assert settles(scene["stolen"], ns, 201)[0] == 201

        put(entry("default", victim))
        refused = settles(scene["stolen"], ns, 403)
        assert refused_by_the_policy(refused), refused
        assert "belongs to a pod the Reverse Shell Responder quarantined" in refused[1]
        assert write(kube_admin, ns) == (201, "")  # no extra info (admin, controllers, kubelets): never refused
        assert write(scene["other"], ns) == (201, "")  # the same account, another pod: writes on
        assert write(scene["unbound"], ns) == (201, "")  # a token bound to no pod: not covered (the report says so)
        exec_answer = exec_with(scene["stolen"], ns, scene["sibling"].metadata.name)
        assert refused_by_the_policy(exec_answer), exec_answer  # CONNECT into another pod: refused too
        delete = delete_with(scene["stolen"], ns, scene["sibling"].metadata.name)
        assert refused_by_the_policy(delete), delete

        put(entry("other-account", victim))  # the UID listed for another account refuses nothing
        assert settles(scene["stolen"], ns, 201)[0] == 201


def test_a_protected_namespace_s_service_account_is_never_refused(
    kube_env: KubeEnv, kube_admin: client.ApiClient
) -> None:
    """Even listed (the responder's own guard would refuse the entry; the admin writes it here): kube-system's
    controllers are never cut off."""
    name = f"rsr-identity-{time.time_ns()}"
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    binding = {
        "metadata": {"name": name},  # so that RBAC lets the write reach admission at all
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}],
    }
    rbac.create_namespaced_role_binding("kube-system", binding)
    pod = w.create_pod(kube_admin, "kube-system", name)
    try:
        api = token_client(kube_env, kube_admin, "kube-system", "default", pod)
        with w.config_map_set_aside(kube_admin, RESPONDER_NAMESPACE, IDENTITIES) as put:
            put(entry("default", pod))
            time.sleep(2)  # the informer has it by now (the refusal above settles in well under a second)
            assert write(api, "kube-system") == (201, "")
    finally:
        client.CoreV1Api(kube_admin).delete_namespaced_pod(name, "kube-system", grace_period_seconds=0)
        rbac.delete_namespaced_role_binding(name, "kube-system")
        for made in client.CoreV1Api(kube_admin).list_namespaced_config_map("kube-system").items:
            if made.metadata.name.startswith("probe-"):
                client.CoreV1Api(kube_admin).delete_namespaced_config_map(made.metadata.name, "kube-system")


def exec_with(api: client.ApiClient, namespace: str, pod: str) -> tuple[int, str]:
    try:
        client.CoreV1Api(api).connect_post_namespaced_pod_exec(pod, namespace, command=["id"], stdout=True)
    except client.ApiException as exc:
        return exc.status, str(json.loads(exc.body or "{}").get("message", exc.reason))
    return 200, ""


def delete_with(api: client.ApiClient, namespace: str, pod: str) -> tuple[int, str]:
    try:
        client.CoreV1Api(api).delete_namespaced_pod(pod, namespace, dry_run="All")
    except client.ApiException as exc:
        return exc.status, str(json.loads(exc.body or "{}").get("message", exc.reason))
    return 200, ""
