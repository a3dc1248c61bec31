"""The local Kubernetes environment is real, and deploy/kubernetes/rbac.yaml is least-privilege.

Permission checks are real API calls made as the responder identity (a static token user with no groups) against a
real kube-apiserver running RBAC: allowed calls must succeed (or fail for a reason other than authorization), refused
calls must get the authorizer's 403. SelfSubjectAccessReview is only a supplement, at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client import ApiException

from responder.containment.budget import ENTRIES_ANNOTATION, LEASE_NAME
from responder.containment.keys import DENY_ALL_POLICY, FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.shape import deny_all_body
from tests.support import workloads as w
from tests.support.common import unique
from tests.support.kube import RESPONDER_NAMESPACE, KubeEnv, status_of

pytestmark = pytest.mark.integration

IMAGE = "registry.invalid/x:1"  # never pulled: there is no kubelet
MERGE_PATCH = "application/merge-patch+json"  # client 37 defaults PATCH bodies to json-patch, which wants a list
FORBIDDEN = 403


def assert_forbidden(call: Callable[[], Any], identity: str = "responder@rsr-test.iam.gserviceaccount.com") -> None:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == FORBIDDEN, f"expected 403, got {info.value.status}: {info.value.body}"
    # The refusal names our user: it is the authorizer judging this identity, not some other 403.
    message = json.loads(info.value.body)["message"]
    assert f'User "{identity}" cannot' in message, message


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def container() -> client.V1Container:
    return client.V1Container(name="app", image=IMAGE)


def pod_template(app: str, restart_policy: str = "Always") -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": app}),
        spec=client.V1PodSpec(containers=[container()], restart_policy=restart_policy),
    )


def make_pod(name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}), spec=client.V1PodSpec(containers=[container()])
    )


def make_deployment(name: str, replicas: int = 1) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=pod_template(name),
        ),
    )


def deny_all_policy(name: str) -> client.V1NetworkPolicy:
    return client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels={"quarantine": "true"}),
            policy_types=["Ingress", "Egress"],
        ),
    )


def owned_by(obj: Any, owner_uid: str) -> bool:
    return any(ref.uid == owner_uid for ref in obj.metadata.owner_references or [])


@pytest.fixture
def core_admin(kube_admin: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_admin)


@pytest.fixture
def core_responder(kube_responder: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_responder)


@pytest.fixture
def test_node(core_admin: client.CoreV1Api) -> Iterator[str]:
    """A Node object (nothing runs behind it: there is no kubelet). Cluster-scoped, so it is deleted explicitly."""
    name = unique("rsr-node")
    core_admin.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"rsr-test": "true"})))
    yield name
    core_admin.delete_node(name)


# ----------------------------------------------------------------------------------------------------- environment


def test_cluster_is_a_real_apiserver(kube_env: KubeEnv, kube_admin: client.ApiClient) -> None:
    assert client.VersionApi(kube_admin).get_code().git_version == f"v{kube_env.version}"
    assert kube_env.server.startswith("https://127.0.0.1:")
    names = {ns.metadata.name for ns in client.CoreV1Api(kube_admin).list_namespace().items}
    assert {"default", "kube-system", RESPONDER_NAMESPACE} <= names


def test_kubeconfigs_verify_the_server_certificate(kube_env: KubeEnv) -> None:
    for path in (kube_env.kubeconfig, kube_env.responder_kubeconfig):
        text = path.read_text()
        assert "certificate-authority:" in text
        assert "insecure-skip-tls-verify" not in text


def test_responder_is_authenticated_as_its_own_user(kube_env: KubeEnv, core_responder: client.CoreV1Api) -> None:
    # The 403 text carries the user name the apiserver resolved from the responder's token.
    assert_forbidden(core_responder.list_namespace, kube_env.responder_identity)


# ---------------------------------------------------------------------------------- what the responder may do


def test_responder_reads_labels_and_deletes_pods(
    kube_namespace: str, core_admin: client.CoreV1Api, core_responder: client.CoreV1Api
) -> None:
    ns = kube_namespace
    pod = core_admin.create_namespaced_pod(ns, make_pod("victim"))

    assert core_responder.read_namespaced_pod("victim", ns).metadata.uid == pod.metadata.uid
    # Only by name: listing would expose every pod spec (environment variables included) to the responder.
    assert_forbidden(lambda: core_responder.list_namespaced_pod(ns))
    assert_forbidden(lambda: core_responder.list_pod_for_all_namespaces(label_selector="app=victim"))

    # The label and annotation the responder writes (the admission guard refuses any other label or annotation).
    patched = core_responder.patch_namespaced_pod(
        "victim",
        ns,
        {"metadata": {"labels": {QUARANTINE_LABEL: "true"}, "annotations": {FINDING_ANNOTATION: "abc"}}},
        _content_type=MERGE_PATCH,
    )
    assert patched.metadata.labels[QUARANTINE_LABEL] == "true"
    assert patched.metadata.annotations[FINDING_ANNOTATION] == "abc"

    # Authorised, but no kubelet stands behind the pod: 1.20 answers 200 with an empty body for a pod without a
    # node, current servers 400. What matters is that authorization let the request through.
    logs: list[str | None] = []
    log_status = status_of(lambda: logs.append(core_responder.read_namespaced_pod_log("victim", ns, tail_lines=10)))
    assert log_status != FORBIDDEN
    assert log_status in {200, 400, 404}
    assert not any(logs)  # nothing to read (the client returns None for the empty body)

    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=str(uuid.uuid4())))
    assert status_of(lambda: core_responder.delete_namespaced_pod("victim", ns, body=stale)) == 409
    exact = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
    core_responder.delete_namespaced_pod("victim", ns, body=exact)
    # Unscheduled pods are deleted at once (no kubelet has to confirm).
    wait_for("the pod to be gone", lambda: status_of(lambda: core_admin.read_namespaced_pod("victim", ns)) == 404, 10)


def test_responder_creates_lists_and_patches_networkpolicies(
    kube_namespace: str, kube_admin: client.ApiClient, kube_responder: client.ApiClient
) -> None:
    ns = kube_namespace
    net, admin = client.NetworkingV1Api(kube_responder), client.NetworkingV1Api(kube_admin)
    created = net.create_namespaced_network_policy(ns, deny_all_body())
    assert created.spec.policy_types == ["Ingress", "Egress"]
    allow_web = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="allow-web"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(),
            ingress=[client.V1NetworkPolicyIngressRule()],
            policy_types=["Ingress"],
        ),
    )
    admin.create_namespaced_network_policy(ns, allow_web)
    assert sorted(p.metadata.name for p in net.list_namespaced_network_policy(ns).items) == [
        "allow-web",
        DENY_ALL_POLICY,
    ]
    assert_forbidden(lambda: net.read_namespaced_network_policy(DENY_ALL_POLICY, ns))  # list is all it needs
    # The one change it makes to another policy (what the admission guard lets it make): the quarantine exclusion.
    exclusion = {"key": QUARANTINE_LABEL, "operator": "NotIn", "values": ["true"]}
    patched = net.patch_namespaced_network_policy(
        "allow-web", ns, {"spec": {"podSelector": {"matchExpressions": [exclusion]}}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.pod_selector.match_expressions[0].key == QUARANTINE_LABEL


def test_responder_reads_the_owner_chain_nodes_and_namespaces(
    kube_env: KubeEnv,
    kube_namespace: str,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    test_node: str,
) -> None:
    ns = kube_namespace
    apps_admin, apps = client.AppsV1Api(kube_admin), client.AppsV1Api(kube_responder)
    batch_admin, batch = client.BatchV1Api(kube_admin), client.BatchV1Api(kube_responder)
    selector = client.V1LabelSelector(match_labels={"app": "w"})

    apps_admin.create_namespaced_deployment(ns, make_deployment("w", replicas=0))
    apps_admin.create_namespaced_replica_set(
        ns,
        client.V1ReplicaSet(
            metadata=client.V1ObjectMeta(name="w-rs"),
            spec=client.V1ReplicaSetSpec(replicas=0, selector=selector, template=pod_template("w")),
        ),
    )
    apps_admin.create_namespaced_stateful_set(
        ns,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="w-sts"),
            spec=client.V1StatefulSetSpec(replicas=0, service_name="w", selector=selector, template=pod_template("w")),
        ),
    )
    apps_admin.create_namespaced_daemon_set(
        ns,
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="w-ds"),
            spec=client.V1DaemonSetSpec(selector=selector, template=pod_template("w")),
        ),
    )
    batch_admin.create_namespaced_job(
        ns,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="w-job"),
            spec=client.V1JobSpec(template=pod_template("w-job", restart_policy="Never")),
        ),
    )
    # batch/v1 (GA in 1.21; 1.25 stopped serving v1beta1). RSR_KUBE=1.20 serves only v1beta1.
    cron_version = "batch/v1beta1" if kube_env.version.startswith("1.20.") else "batch/v1"
    cronjob_body = {
        "apiVersion": cron_version,
        "kind": "CronJob",
        "metadata": {"name": "w-cron", "namespace": ns},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": IMAGE}]}}
                }
            },
        },
    }
    dyn_admin = dynamic.DynamicClient(kube_admin)
    dyn_admin.create(dyn_admin.resources.get(api_version=cron_version, kind="CronJob"), body=cronjob_body)

    assert apps.read_namespaced_deployment("w", ns).metadata.name == "w"
    assert apps.read_namespaced_replica_set("w-rs", ns).metadata.name == "w-rs"
    assert apps.read_namespaced_stateful_set("w-sts", ns).metadata.name == "w-sts"
    assert apps.read_namespaced_daemon_set("w-ds", ns).metadata.name == "w-ds"
    assert batch.read_namespaced_job("w-job", ns).metadata.name == "w-job"
    dyn = dynamic.DynamicClient(kube_responder)
    cron = dyn.get(dyn.resources.get(api_version=cron_version, kind="CronJob"), name="w-cron", namespace=ns)
    assert cron.metadata.name == "w-cron"
    # The typed batch/v1 read the responder makes: found here; on 1.20 authorised and then not found.
    expected = 404 if cron_version == "batch/v1beta1" else 200
    assert status_of(lambda: batch.read_namespaced_cron_job("w-cron", ns)) == expected

    core = client.CoreV1Api(kube_responder)
    assert core.read_node(test_node).metadata.name == test_node
    assert core.read_namespace(ns).metadata.labels["rsr-test"] == "true"


def test_responder_gets_creates_and_updates_budget_leases(
    kube_namespace: str, kube_admin: client.ApiClient, kube_responder: client.ApiClient
) -> None:
    """The budget Lease as the responder writes it (the one name, one entry appended per write: what the admission
    guard allows); the real one is set aside for the test and put back."""
    coord = client.CoordinationV1Api(kube_responder)
    name = LEASE_NAME

    def entries(*keys: str) -> dict[str, str]:
        return {ENTRIES_ANNOTATION: json.dumps([["2026-12-07T04:00:00+00:00", k] for k in keys])}

    lease = client.V1Lease(metadata=client.V1ObjectMeta(name=name, annotations=entries("a")), spec={})
    with w.budget_lease_set_aside(kube_admin, RESPONDER_NAMESPACE, name):
        coord.create_namespaced_lease(RESPONDER_NAMESPACE, lease)
        current = coord.read_namespaced_lease(name, RESPONDER_NAMESPACE)
        current.metadata.annotations = entries("a", "b")
        updated = coord.replace_namespaced_lease(name, RESPONDER_NAMESPACE, current)
        assert updated.metadata.annotations == entries("a", "b")
        # Optimistic concurrency is what makes the shared budget safe: a write based on a stale read is refused.
        current.metadata.annotations = entries("a", "c")
        assert status_of(lambda: coord.replace_namespaced_lease(name, RESPONDER_NAMESPACE, current)) == 409

        # Only `get, create, update` on leases, and only in responder-system.
        assert_forbidden(lambda: coord.delete_namespaced_lease(name, RESPONDER_NAMESPACE))
        assert_forbidden(lambda: coord.list_namespaced_lease(RESPONDER_NAMESPACE))
        assert_forbidden(lambda: coord.create_namespaced_lease(kube_namespace, lease))
        assert_forbidden(lambda: coord.create_namespaced_lease("default", lease))


# ------------------------------------------------------------------------------ what the responder must not do


def test_responder_cannot_read_secrets_or_configmaps(
    kube_namespace: str, core_admin: client.CoreV1Api, core_responder: client.CoreV1Api
) -> None:
    ns = kube_namespace
    core_admin.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="db"), string_data={"password": "hunter2"})
    )
    core_admin.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v"})
    )
    assert_forbidden(lambda: core_responder.list_namespaced_secret(ns))
    assert_forbidden(core_responder.list_secret_for_all_namespaces)
    assert_forbidden(lambda: core_responder.read_namespaced_secret("db", ns))
    assert_forbidden(lambda: core_responder.read_namespaced_config_map("cfg", ns))
    assert_forbidden(lambda: core_responder.list_namespaced_config_map(ns))


def test_responder_cannot_change_workloads(
    kube_namespace: str, kube_admin: client.ApiClient, kube_responder: client.ApiClient
) -> None:
    ns = kube_namespace
    apps_admin, apps = client.AppsV1Api(kube_admin), client.AppsV1Api(kube_responder)
    apps_admin.create_namespaced_deployment(ns, make_deployment("web", replicas=0))

    assert_forbidden(lambda: apps.delete_namespaced_deployment("web", ns))
    assert_forbidden(
        lambda: apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 5}}, _content_type=MERGE_PATCH)
    )
    assert_forbidden(
        lambda: apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}}, _content_type=MERGE_PATCH)
    )
    current = apps.read_namespaced_deployment("web", ns)  # allowed: get
    assert_forbidden(lambda: apps.replace_namespaced_deployment("web", ns, current))
    assert_forbidden(lambda: apps.list_namespaced_deployment(ns))  # get by name only, no listing
    assert apps_admin.read_namespaced_deployment("web", ns).spec.replicas == 0


def test_responder_cannot_start_pods_or_evict(
    kube_namespace: str, core_admin: client.CoreV1Api, core_responder: client.CoreV1Api
) -> None:
    ns = kube_namespace
    assert_forbidden(lambda: core_responder.create_namespaced_pod(ns, make_pod("intruder")))
    core_admin.create_namespaced_pod(ns, make_pod("victim"))
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="victim", namespace=ns))
    assert_forbidden(lambda: core_responder.create_namespaced_pod_eviction("victim", ns, eviction))
    assert_forbidden(
        lambda: core_responder.replace_namespaced_pod("victim", ns, core_responder.read_namespaced_pod("victim", ns))
    )


def test_responder_cannot_delete_networkpolicies(
    kube_namespace: str, kube_admin: client.ApiClient, kube_responder: client.ApiClient
) -> None:
    ns = kube_namespace
    client.NetworkingV1Api(kube_admin).create_namespaced_network_policy(ns, deny_all_policy("existing"))
    net = client.NetworkingV1Api(kube_responder)
    assert_forbidden(lambda: net.delete_namespaced_network_policy("existing", ns))
    assert_forbidden(lambda: net.delete_collection_namespaced_network_policy(ns))
    current = client.NetworkingV1Api(kube_admin).read_namespaced_network_policy("existing", ns)
    assert_forbidden(lambda: net.replace_namespaced_network_policy("existing", ns, current))


def test_responder_cannot_grant_itself_more(kube_responder: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(kube_responder)
    name = unique("rsr-escalate")
    rule = client.V1PolicyRule(api_groups=["*"], resources=["*"], verbs=["*"])
    assert_forbidden(
        lambda: rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=[rule]))
    )
    assert_forbidden(
        lambda: rbac.create_namespaced_role(
            RESPONDER_NAMESPACE, client.V1Role(metadata=client.V1ObjectMeta(name=name), rules=[rule])
        )
    )
    binding = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"),
        subjects=[client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name="someone")],
    )
    assert_forbidden(lambda: rbac.create_cluster_role_binding(binding))


# ------------------------------------------------------------------------------------ controllers really run


def test_deleted_deployment_pod_is_replaced_and_owner_gc_works(
    kube_namespace: str, kube_admin: client.ApiClient, core_responder: client.CoreV1Api
) -> None:
    ns = kube_namespace
    apps_admin, core_admin = client.AppsV1Api(kube_admin), client.CoreV1Api(kube_admin)
    deployment = apps_admin.create_namespaced_deployment(ns, make_deployment("web", replicas=1))

    replica_set = wait_for(
        "the Deployment's ReplicaSet",
        lambda: next(
            (rs for rs in apps_admin.list_namespaced_replica_set(ns).items if owned_by(rs, deployment.metadata.uid)),
            None,
        ),
    )
    first = wait_for(
        "the ReplicaSet's pod",
        lambda: next(
            (p for p in core_admin.list_namespaced_pod(ns).items if owned_by(p, replica_set.metadata.uid)), None
        ),
    )
    assert first.status.phase == "Pending"  # no scheduler, no kubelet

    # What the responder does to a compromised pod: delete exactly this incarnation (UID precondition).
    core_responder.delete_namespaced_pod(
        first.metadata.name,
        ns,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=first.metadata.uid)),
    )
    replacement = wait_for(
        "a replacement pod",
        lambda: next(
            (
                p
                for p in core_admin.list_namespaced_pod(ns).items
                if owned_by(p, replica_set.metadata.uid) and p.metadata.uid != first.metadata.uid
            ),
            None,
        ),
    )
    assert replacement.metadata.name != first.metadata.name

    # Garbage collection: deleting the Deployment removes its ReplicaSet and pods.
    apps_admin.delete_namespaced_deployment("web", ns, propagation_policy="Background")
    wait_for(
        "the garbage collector to remove the ReplicaSet and its pods",
        lambda: not apps_admin.list_namespaced_replica_set(ns).items and not core_admin.list_namespaced_pod(ns).items,
    )


# ------------------------------------------------------------------- supplement: the authorizer's own answers

ALLOWED, DENIED = True, False
ANY_NS = "some-namespace"  # SelfSubjectAccessReview needs no real namespace


@pytest.mark.parametrize(
    ("verb", "group", "resource", "subresource", "namespace", "expected"),
    [
        ("get", "", "pods", "", ANY_NS, ALLOWED),
        ("list", "", "pods", "", None, DENIED),
        ("watch", "", "pods", "", ANY_NS, DENIED),
        ("get", "networking.k8s.io", "networkpolicies", "", ANY_NS, DENIED),
        ("patch", "", "pods", "", ANY_NS, ALLOWED),
        ("delete", "", "pods", "", ANY_NS, ALLOWED),
        ("get", "", "pods", "log", ANY_NS, ALLOWED),
        ("get", "", "pods", "exec", ANY_NS, ALLOWED),
        ("create", "", "pods", "exec", ANY_NS, ALLOWED),
        ("get", "", "nodes", "", None, ALLOWED),
        ("get", "", "namespaces", "", None, ALLOWED),
        ("get", "apps", "replicasets", "", ANY_NS, ALLOWED),
        ("get", "batch", "cronjobs", "", ANY_NS, ALLOWED),
        ("create", "networking.k8s.io", "networkpolicies", "", ANY_NS, ALLOWED),
        ("update", "coordination.k8s.io", "leases", "", RESPONDER_NAMESPACE, ALLOWED),
        ("create", "", "pods", "", ANY_NS, DENIED),
        ("update", "", "pods", "", ANY_NS, DENIED),
        ("create", "", "pods", "eviction", ANY_NS, DENIED),
        ("create", "", "pods", "portforward", ANY_NS, DENIED),
        ("get", "", "secrets", "", ANY_NS, DENIED),
        ("list", "", "secrets", "", None, DENIED),
        ("watch", "", "secrets", "", ANY_NS, DENIED),
        ("get", "", "configmaps", "", ANY_NS, DENIED),
        ("get", "", "serviceaccounts", "token", ANY_NS, DENIED),
        ("create", "", "serviceaccounts", "token", ANY_NS, DENIED),
        ("list", "apps", "deployments", "", ANY_NS, DENIED),
        ("patch", "apps", "deployments", "", ANY_NS, DENIED),
        ("delete", "apps", "deployments", "", ANY_NS, DENIED),
        ("update", "apps", "deployments", "scale", ANY_NS, DENIED),
        ("delete", "networking.k8s.io", "networkpolicies", "", ANY_NS, DENIED),
        ("update", "networking.k8s.io", "networkpolicies", "", ANY_NS, DENIED),
        ("create", "coordination.k8s.io", "leases", "", ANY_NS, DENIED),
        ("list", "rbac.authorization.k8s.io", "rolebindings", "", None, ALLOWED),
        ("list", "rbac.authorization.k8s.io", "clusterrolebindings", "", None, ALLOWED),
        ("list", "rbac.authorization.k8s.io", "roles", "", None, ALLOWED),
        ("list", "rbac.authorization.k8s.io", "clusterroles", "", None, ALLOWED),
        ("get", "rbac.authorization.k8s.io", "rolebindings", "", ANY_NS, DENIED),
        ("watch", "rbac.authorization.k8s.io", "clusterroles", "", None, DENIED),
        ("update", "rbac.authorization.k8s.io", "rolebindings", "", ANY_NS, DENIED),
        # revoke deletes bindings naming only a quarantined pod's account: RBAC grants delete, the guard narrows it
        # (tests/fixtures/admission/other.yaml); never a create, update or patch.
        ("delete", "rbac.authorization.k8s.io", "clusterrolebindings", "", None, ALLOWED),
        ("delete", "rbac.authorization.k8s.io", "rolebindings", "", ANY_NS, ALLOWED),
        ("create", "rbac.authorization.k8s.io", "rolebindings", "", ANY_NS, DENIED),
        ("patch", "rbac.authorization.k8s.io", "clusterrolebindings", "", None, DENIED),
        ("create", "rbac.authorization.k8s.io", "clusterroles", "", None, DENIED),
        ("bind", "rbac.authorization.k8s.io", "clusterroles", "", None, DENIED),
        ("escalate", "rbac.authorization.k8s.io", "roles", "", RESPONDER_NAMESPACE, DENIED),
        ("impersonate", "", "users", "", None, DENIED),
        ("patch", "", "nodes", "", None, DENIED),
        ("delete", "", "namespaces", "", None, DENIED),
    ],
)
def test_access_review_matches_the_manifest(
    kube_responder: client.ApiClient,
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    namespace: str | None,
    expected: bool,
) -> None:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource or None, namespace=namespace
            )
        )
    )
    answer = client.AuthorizationV1Api(kube_responder).create_self_subject_access_review(review)
    assert answer.status.allowed is expected, answer.status.reason
