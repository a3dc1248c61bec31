"""A service-account token taken from a compromised pod stops working for writes once the responder quarantines the
pod (issue 31), proven on the real node as an attacker would use it.

The workload's service account may create ConfigMaps in its namespace (the right an attacker would abuse). The token
is read from inside the running pod (`cat` of its projected token file, what the attacker's shell does first) and
used from the host, through the apiserver's socket. Before containment its write works. The responder (the real
`python -m responder replay`, as its least-privilege identity, enforce mode) isolates the pod, and the identity step
adds it to deploy/kubernetes/identity-guard.yaml's parameter: from then on the apiserver refuses the stolen token's
writes with that policy's message. A replica of the same Deployment that is not quarantined keeps its rights; reads
with the stolen token still work (admission never sees them: the record says so). `release` lifts it again.

With `revoke` in the policy, the binding that gave the account its rights is recorded and deleted: RBAC then refuses
the stolen token's reads too, and `release` recreates the binding, so both come back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.node.test_real_node import actions, exec_in, finding_for, replay
from tests.support import workloads as w
from tests.support.common import environ_without_settings, responder_cli
from tests.support.kube import KubeEnv, client_with_token

pytestmark = pytest.mark.node

TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
POLICY = "reverse-shell-responder-identity"
REFUSED_WITHIN_S = 10.0  # the apiserver reads the parameter from an informer: a moment, not minutes


def as_token(kube_env: KubeEnv, token: str) -> client.ApiClient:
    """A client that authenticates with ``token`` alone (the admin kubeconfig's server and CA, not its user)."""
    api = client_with_token(kube_env.kubeconfig, token)
    review = client.AuthenticationV1Api(api).create_self_subject_review({"kind": "SelfSubjectReview"})
    assert review.status.user_info.username.startswith("system:serviceaccount:"), review.status.user_info
    return api


def write(api: client.ApiClient, namespace: str, name: str) -> tuple[int, str]:
    """Create a ConfigMap with ``api``'s token: (status, message)."""
    body = {"metadata": {"name": name}, "data": {"stolen": "yes"}}
    try:
        client.CoreV1Api(api).create_namespaced_config_map(namespace, body)
    except client.ApiException as exc:
        return exc.status, str(json.loads(exc.body or "{}").get("message", exc.reason))
    return 201, ""


def until(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"{what} within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def release_as_operator(kube_env: KubeEnv, namespace: str, pod: str) -> None:
    """`python -m responder release NS/POD --yes` with the operator's (admin) kubeconfig, which must succeed."""
    operator = {**environ_without_settings(), "RESPONDER_KUBECONFIG": str(kube_env.kubeconfig)}
    env = {**operator, "RESPONDER_GOOGLE_APIS": "off"}
    released = responder_cli("release", f"{namespace}/{pod}", "--yes", "--without-marks", env=env)
    assert released.returncode == 0, released.stdout[-2000:] + released.stderr[-2000:]


def grant_configmaps(admin: client.ApiClient, namespace: str, account: str = "default") -> None:
    """The workload's own right, which a stolen token carries: create and read ConfigMaps in its namespace."""
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "web-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "web-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )


def test_a_token_taken_from_the_pod_stops_writing_once_the_pod_is_quarantined(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    ns = kube_namespace
    grant_configmaps(kube_admin, ns)
    w.create_running_deployment(kube_admin, ns, "web", 2, "sleep 2147483647")
    victim, sibling = w.wait_for_running(kube_admin, ns, 2, "app=web")
    stolen = as_token(kube_env, exec_in(kube_admin, victim, ["cat", TOKEN]).strip())
    other = as_token(kube_env, exec_in(kube_admin, sibling, ["cat", TOKEN]).strip())
    assert write(stolen, ns, "before") == (201, "")  # the attacker's write works before containment

    record, _, _ = replay(kube_env, finding_for(victim), tmp_path)
    step = actions(record)["identity"]
    assert step["status"] == "succeeded", step
    assert "reads with it are not refused" in step["reason"]
    took = until("the stolen token's write refused", lambda: write(stolen, ns, f"after-{time.time_ns()}")[0] == 403, 10)
    status, message = write(stolen, ns, "after")
    assert status == 403 and f"ValidatingAdmissionPolicy '{POLICY}'" in message, message
    assert "belongs to a pod the Reverse Shell Responder quarantined" in message
    print(f"\n[identity] the stolen token's writes refused {took * 1000:.0f} ms after the responder finished")

    assert write(other, ns, "sibling") == (201, "")  # a replica that is not quarantined keeps its rights
    names = {c.metadata.name for c in client.CoreV1Api(stolen).list_namespaced_config_map(ns).items}
    assert {"before", "sibling"} <= names  # reads are not refused by admission: said, not hidden

    release_as_operator(kube_env, ns, victim.metadata.name)
    until("the released pod's token writes again", lambda: write(stolen, ns, f"again-{time.time_ns()}")[0] == 201, 10)


def test_after_a_delete_the_stolen_token_stops_authenticating(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    """`delete` ends the token's life: a pod-bound token is valid only while its pod exists (the apiserver checks the
    bound pod's UID on every request). Measured: how long after the responder finished it still authenticated."""
    ns = kube_namespace
    w.create_running_deployment(kube_admin, ns, "web", 2, "sleep 2147483647")
    victim = w.wait_for_running(kube_admin, ns, 2, "app=web")[0]
    stolen = as_token(kube_env, exec_in(kube_admin, victim, ["cat", TOKEN]).strip())

    record, _, _ = replay(kube_env, finding_for(victim), tmp_path, RESPONDER_ACTION="delete")
    assert actions(record)["delete"]["status"] == "succeeded", actions(record)

    def rejected() -> bool:
        try:
            client.AuthenticationV1Api(stolen).create_self_subject_review({"kind": "SelfSubjectReview"})
        except client.ApiException as exc:
            return exc.status == 401
        return False

    took = until("the stolen token rejected", rejected, 90)
    print(f"\n[identity] after the delete, the stolen token authenticated for {took * 1000:.0f} ms more")


def test_with_revoke_the_stolen_token_s_reads_are_refused_too_and_release_restores_both(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    ns = kube_namespace
    client.CoreV1Api(kube_admin).create_namespaced_service_account(ns, {"metadata": {"name": "runner"}})
    grant_configmaps(kube_admin, ns, account="runner")
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    before = rbac.read_namespaced_role_binding("web-configmaps", ns)
    w.create_running_deployment(kube_admin, ns, "runner", 1, "sleep 2147483647", service_account="runner")
    victim = w.wait_for_running(kube_admin, ns, 1, "app=runner")[0]
    stolen = as_token(kube_env, exec_in(kube_admin, victim, ["cat", TOKEN]).strip())

    def read() -> int:
        try:
            client.CoreV1Api(stolen).list_namespaced_config_map(ns)
        except client.ApiException as exc:
            return int(exc.status)
        return 200

    assert read() == 200 and write(stolen, ns, "before") == (201, "")
    policy = tmp_path / "revoke.yaml"  # the Deployment's replacement would share the account: the rule says so
    policy.write_text(
        "version: 1\nrules:\n  - name: all\n    actions:\n"
        "      - {action: isolate}\n      - {action: revoke, shared: true}\n"
    )
    record, _, _ = replay(kube_env, finding_for(victim), tmp_path, RESPONDER_POLICY_FILE=str(policy))
    step = actions(record)["revoke"]
    assert step["status"] == "succeeded" and "revoked 1 binding(s)" in step["reason"], step
    took = until("the stolen token's read refused", lambda: read() == 403, REFUSED_WITHIN_S)
    assert write(stolen, ns, "after")[0] == 403
    print(f"\n[identity] the stolen token's reads refused {took * 1000:.0f} ms after the responder finished")
    with pytest.raises(client.ApiException) as gone:
        rbac.read_namespaced_role_binding("web-configmaps", ns)
    assert gone.value.status == 404
    kept = client.CoreV1Api(kube_admin).read_namespaced_config_map("rsr-revoked-bindings", "responder-system").data
    assert any(k.startswith(f"{victim.metadata.uid}.") for k in kept)
    assert [b["metadata"]["name"] for b in step["details"]["revoked"]] == ["web-configmaps"]  # recorded whole

    release_as_operator(kube_env, ns, victim.metadata.name)
    until("the released pod's token reads again", lambda: read() == 200, REFUSED_WITHIN_S)
    until("and writes again", lambda: write(stolen, ns, f"again-{time.time_ns()}")[0] == 201, REFUSED_WITHIN_S)
    again = rbac.read_namespaced_role_binding("web-configmaps", ns)
    assert again.role_ref == before.role_ref and again.subjects == before.subjects
