"""What a stolen token can do, read from a real kube-apiserver as the responder's least-privilege identity (issue 31,
the report side): the investigation's ``rights`` branch lists the RBAC kinds with exactly the rights rbac.yaml grants
(list, cluster-wide) and finds the bindings that name the pod's service account, with their rules, and no other.

Arranged as admin: a ServiceAccount, a Role + RoleBinding in the pod's namespace, a ClusterRole + ClusterRoleBinding
naming it by its User name, a RoleBinding for another account, and a pod running as it (Pending: no kubelet is
needed). The cluster's default bindings (discovery, basic-user, public-info-viewer) name every authenticated user; the
branch leaves them out and counts them. The same logic on the in-memory cluster: tests/unit/test_rights.py.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from responder.adapters.kube import KubeAdapter
from responder.investigation import rights
from responder.investigation.investigator import Investigator
from responder.ports import Connection
from tests.unit.sample_world import make_target, sample_finding

pytestmark = pytest.mark.integration

RBAC = "rbac.authorization.k8s.io"
ACCOUNT = "shop-web"


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def scene(kube_admin: client.ApiClient, kube_namespace: str, suffix: str) -> Iterator[dict[str, Any]]:
    """The account, what names it, what does not, and a pod running as it."""
    ns, core, rbac = kube_namespace, client.CoreV1Api(kube_admin), client.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(ns, {"metadata": {"name": ACCOUNT}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "other"}})
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "configmap-writer"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "web-edit"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "configmap-writer"},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}],
        },
    )
    rbac.create_namespaced_role_binding(  # another account of the namespace: not listed
        ns,
        {
            "metadata": {"name": "other-edit"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "configmap-writer"},
            "subjects": [{"kind": "ServiceAccount", "name": "other", "namespace": ns}],
        },
    )
    cluster_role, cluster_binding = f"rsr-t-pod-exec-{suffix}", f"rsr-t-exec-anywhere-{suffix}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": cluster_role},
            "rules": [
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": cluster_binding},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"apiGroup": RBAC, "kind": "User", "name": f"system:serviceaccount:{ns}:{ACCOUNT}"}],
        }
    )
    pod = core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": ACCOUNT, "containers": [{"name": "api", "image": "registry.invalid/x:1"}]},
        },
    )
    yield {"namespace": ns, "pod": pod, "cluster_role": cluster_role, "cluster_binding": cluster_binding}
    with contextlib.suppress(client.ApiException):
        rbac.delete_cluster_role_binding(cluster_binding)
    with contextlib.suppress(client.ApiException):
        rbac.delete_cluster_role(cluster_role)


def test_the_investigation_lists_exactly_the_bindings_naming_the_account_as_the_responder(
    kube_responder: client.ApiClient, scene: dict[str, Any]
) -> None:
    ns = scene["namespace"]
    target = make_target(namespace=ns, pod="web-1", node=None)
    with ThreadPoolExecutor(max_workers=4) as pool:
        investigation = Investigator(None, 20.0, pool).investigate(
            sample_finding(), target, Connection(kube=KubeAdapter(kube_responder))
        )
    assert investigation.branches["rights"].status == "ok", investigation.branches["rights"]
    found = investigation.rights
    assert found is not None and found.username == f"system:serviceaccount:{ns}:{ACCOUNT}"
    # The cluster's defaults that name every authenticated user are left out (system:discovery and its kin), and
    # nothing else of the cluster names this fresh account: exactly the two bindings made for it.
    by_name = {(g.kind, g.namespace, g.name): g for g in found.grants}
    assert set(by_name) == {("RoleBinding", ns, "web-edit"), ("ClusterRoleBinding", None, scene["cluster_binding"])}
    assert found.defaults_skipped >= 1 and found.truncated == 0

    edit = by_name[("RoleBinding", ns, "web-edit")]
    assert (edit.subject, edit.direct, edit.role_kind, edit.role_name) == (
        f"ServiceAccount {ns}/{ACCOUNT}",
        True,
        "Role",
        "configmap-writer",
    )
    assert [(r.verbs, r.targets) for r in edit.rules] == [(("create", "patch"), ("configmaps",))]

    anywhere = by_name[("ClusterRoleBinding", None, scene["cluster_binding"])]
    assert anywhere.subject == f"User system:serviceaccount:{ns}:{ACCOUNT}" and anywhere.direct
    assert [(r.verbs, r.targets) for r in anywhere.rules] == [
        (("create",), ("pods/exec",)),
        (("get", "list"), ("pods",)),
    ]
    assert set(found.summary("writes")) == {
        f"configmaps in namespace {ns} (create, patch)",
        "pods/exec in every namespace (create)",
    }
    assert found.summary("reads") == ("pods in every namespace (get, list)",)

    # The account's own object, read as the responder: no legacy token Secret names it on 1.24+.
    assert investigation.service_account is not None and investigation.service_account.secrets == ()


def test_the_responder_may_list_rbac_but_not_read_secrets(
    kube_responder: client.ApiClient, kube_namespace: str
) -> None:
    """The four lists are all the new right: Secrets stay unreadable (the report names Secret-based tokens from the
    account's own ``secrets`` field, never from the Secrets)."""
    kube = KubeAdapter(kube_responder)
    for plural in rights.PLURALS:
        kube.list_objects(rights.GROUP, rights.VERSION, plural)
    core = client.CoreV1Api(kube_responder)
    for call in (lambda: core.list_namespaced_secret(kube_namespace), core.list_secret_for_all_namespaces):
        with pytest.raises(client.ApiException) as refused:
            call()
        assert refused.value.status == 403
