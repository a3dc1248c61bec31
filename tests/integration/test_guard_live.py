"""The admission guard enforced by a real apiserver: Kubernetes 1.35 (issue 29's spike, opt-in).

SKIPPED unless `RSR_KUBE=1.35 python3 tools/kubeenv.py build` has cached the 1.35 control plane (kube-apiserver,
kube-controller-manager and etcd from the Go module proxy, in ~/.cache/rsr/kube-1.35.4/bin), so `make test` on a
machine without it is unchanged (even under CI=true: an opt-in until issue 29 makes 1.35 `make test`'s one
version). With it, this module starts its own control plane (`RSR_KUBE=1.35 up --no-node`: never a kubelet) in a
temporary directory, which installs deploy/kubernetes/rbac.yaml, rbac-capture.yaml and admission-guard.yaml, and
stops it at the end.

Every refused write below is one RBAC grants the responder's identity (checked first, with a SubjectAccessReview),
so the 403 is the guard's: the apiserver's refusal carries the policy's name and the validation's own message. The
writes the responder really makes (the quarantine label patch, the deny-all) go through its own KubeAdapter and pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client import ApiException

from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_http import KubeHttp
from responder.containment.keys import AT_ANNOTATION, FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.shape import deny_all_body
from responder.errors import KubeHttpError

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBEENV = REPO_ROOT / "tools" / "kubeenv.py"
GUARD = REPO_ROOT / "deploy" / "kubernetes" / "admission-guard.yaml"
POLICY = "reverse-shell-responder-guard"
VERSION = "1.35.4"
NAMESPACE = "guard-live"
IMAGE = "registry.invalid/shop:1"  # never pulled: there is no kubelet
SMP = "application/strategic-merge-patch+json"


def _bin_dir() -> Path:
    base = os.environ.get("RSR_CACHE_DIR") or str(Path.home() / ".cache" / "rsr")
    return Path(base).expanduser().resolve() / f"kube-{VERSION}" / "bin"


def _built() -> bool:
    return all(os.access(_bin_dir() / name, os.X_OK) for name in ("kube-apiserver", "kube-controller-manager", "etcd"))


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not _built(), reason=f"no Kubernetes {VERSION} build in {_bin_dir()} (RSR_KUBE=1.35 tools/kubeenv.py build)"
    ),
]


def guard_message(start: str) -> str:
    """The one validation message of admission-guard.yaml that begins with ``start``, as the apiserver prints it."""
    policy = next(d for d in yaml.safe_load_all(GUARD.read_text()) if d["kind"] == "ValidatingAdmissionPolicy")
    (message,) = [v["message"] for v in policy["spec"]["validations"] if v["message"].startswith(start)]
    return str(message)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("kube135")
    env = {**os.environ, "RSR_KUBE": "1.35"}
    command = [sys.executable, str(KUBEENV)]
    up = [*command, "up", "--no-node", "--dir", str(directory)]
    started = subprocess.run(up, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield json.loads((directory / "state.json").read_text())
    finally:
        down = [*command, "down", "--dir", str(directory)]
        subprocess.run(down, env=env, capture_output=True, timeout=120, check=False)


def _api(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="module")
def admin(cluster: dict[str, Any]) -> client.ApiClient:
    return _api(cluster["kubeconfig"])


@pytest.fixture(scope="module")
def responder(cluster: dict[str, Any]) -> client.ApiClient:
    return _api(cluster["responder_kubeconfig"])


@pytest.fixture(scope="module")
def pods(admin: client.ApiClient) -> dict[str, Any]:
    """A shop pod in a namespace of its own and a system pod in kube-system, created by the admin."""
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    made = {}
    for namespace, name in ((NAMESPACE, "shop"), ("kube-system", "system-agent")):
        body = {
            "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
            "spec": {"containers": [{"name": "c", "image": IMAGE}]},
        }
        made[name] = core.create_namespaced_pod(namespace, body)
    return made


def _listening_addresses(pid: int) -> set[str]:
    """The local addresses of every listening TCP socket process ``pid`` holds (its fds matched to /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1].split(":")[0])
    return addresses


def test_the_135_control_plane_listens_on_loopback_only(cluster: dict[str, Any], admin: client.ApiClient) -> None:
    assert cluster["version"] == VERSION and cluster["mode"] == "control-plane"
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert client.VersionApi(admin).get_code().git_version == f"v{VERSION}"
    for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
        addresses = _listening_addresses(cluster["pids"][name])
        # 0100007F is 127.0.0.1 in /proc/net/tcp's byte order; nothing on 0.0.0.0, ::, or an outside address
        assert addresses and addresses <= {"0100007F"}, (name, addresses)


def test_the_guard_is_installed_and_bound(admin: client.ApiClient) -> None:
    api = client.AdmissionregistrationV1Api(admin)
    policy = api.read_validating_admission_policy(POLICY)
    assert policy.status.observed_generation == policy.metadata.generation
    assert not (policy.status.type_checking and policy.status.type_checking.expression_warnings)
    assert api.read_validating_admission_policy_binding(POLICY).spec.validation_actions == ["Deny", "Audit"]


def _rbac_allows(admin: client.ApiClient, cluster: dict[str, Any], verb: str, resource: str, namespace: str) -> bool:
    resource, _, subresource = resource.partition("/")
    group = "networking.k8s.io" if resource == "networkpolicies" else ""
    attributes = {
        "verb": verb,
        "resource": resource,
        "subresource": subresource,
        "group": group,
        "namespace": namespace,
    }
    review = {"spec": {"user": cluster["responder_identity"], "resourceAttributes": attributes}}
    return bool(client.AuthorizationV1Api(admin).create_subject_access_review(review).status.allowed)


def _refused_by_guard(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ApiException) as info:
        call()
    body = json.loads(info.value.body)
    assert info.value.status == 403, body
    assert f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request" in body["message"], body
    assert body["message"].endswith(message), body["message"]


REFUSED = {
    "delete a pod in kube-system": ("delete", "pods", "kube-system", "the responder never writes in a protected"),
    "strip a pod's label": ("patch", "pods", NAMESPACE, "on a pod the responder removes labels only to detach"),
    "swap a pod's image": ("patch", "pods", NAMESPACE, "the responder never changes a pod's spec"),
    "create an allow-all NetworkPolicy": ("create", "networkpolicies", NAMESPACE, "the only NetworkPolicy"),
    # CONNECT is admitted before the apiserver dials a kubelet, so it is refused here without a node.
    "exec a shell": ("create", "pods/exec", NAMESPACE, "the responder may exec only"),
}


def _write(case: str, api: client.ApiClient) -> Callable[[], Any]:
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    writes: dict[str, Callable[[], Any]] = {
        "delete a pod in kube-system": lambda: core.delete_namespaced_pod("system-agent", "kube-system"),
        "strip a pod's label": lambda: core.patch_namespaced_pod(
            "shop", NAMESPACE, {"metadata": {"labels": {"tier": None}}}, _content_type=SMP
        ),
        "swap a pod's image": lambda: core.patch_namespaced_pod(
            "shop",
            NAMESPACE,
            {"spec": {"containers": [{"name": "c", "image": "registry.invalid/evil:1"}]}},
            _content_type=SMP,
        ),
        "exec a shell": lambda: _exec_shell(api),
        "create an allow-all NetworkPolicy": lambda: net.create_namespaced_network_policy(
            NAMESPACE,
            {
                "metadata": {"name": "allow-everything"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
            },
        ),
    }
    return writes[case]


def _exec_shell(api: client.ApiClient) -> None:
    """An exec of `sh` through the responder's own transport (a plain POST: admission judges it before any upgrade)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/shop/exec"
    try:
        KubeHttp.from_configuration(api.configuration).request("POST", path, query={"command": "sh", "stdout": True})
    except KubeHttpError as exc:
        refused = ApiException(status=exc.status, reason=exc.reason)
        refused.body = exc.body
        raise refused from exc


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_apiserver_refuses_as_the_guard_says(
    case: str, cluster: dict[str, Any], admin: client.ApiClient, responder: client.ApiClient, pods: dict[str, Any]
) -> None:
    verb, resource, namespace, message_start = REFUSED[case]
    assert _rbac_allows(admin, cluster, verb, resource, namespace), f"RBAC refuses {case}: not the guard's case"
    _refused_by_guard(_write(case, responder), guard_message(message_start))
    shop = client.CoreV1Api(admin).read_namespaced_pod("shop", NAMESPACE)
    assert shop.metadata.labels["tier"] == "web" and shop.spec.containers[0].image == IMAGE
    assert (
        client.CoreV1Api(admin).read_namespaced_pod("system-agent", "kube-system").metadata.deletion_timestamp is None
    )


def test_the_responders_own_writes_pass(
    admin: client.ApiClient, responder: client.ApiClient, pods: dict[str, Any]
) -> None:
    kube = KubeAdapter(responder)
    shop = pods["shop"]
    patched = kube.patch_pod_metadata(
        NAMESPACE,
        "shop",
        shop.metadata.uid,
        {QUARANTINE_LABEL: "true"},
        {
            FINDING_ANNOTATION: "organizations/1/sources/2/findings/guard-live",
            AT_ANNOTATION: "2026-12-07T00:00:00+00:00",
        },
    )
    assert patched.labels[QUARANTINE_LABEL] == "true" and patched.labels["tier"] == "web"
    policy = kube.create_network_policy(NAMESPACE, deny_all_body())
    assert policy.name == "rsr-quarantine-deny-all"


GUARDED = "vault-guarded"  # a namespace the platform protects in the guard, which the responder's policy does not know


def _protect_in_guard(admin: client.ApiClient, namespace: str) -> Callable[[], None]:
    """Add ``namespace`` to the live guard's protected namespaces (as a platform team would, beyond the responder's
    own floor); returns the undo."""
    api = client.AdmissionregistrationV1Api(admin)
    policy = api.read_validating_admission_policy(POLICY)
    original = [v.expression for v in policy.spec.variables]
    for variable in policy.spec.variables:
        if variable.name == "protectedNamespace":
            variable.expression = f"variables.requestNamespace == '{namespace}' || ({variable.expression})"
    api.replace_validating_admission_policy(POLICY, policy)

    def undo() -> None:
        current = api.read_validating_admission_policy(POLICY)
        for variable, expression in zip(current.spec.variables, original, strict=True):
            variable.expression = expression
        api.replace_validating_admission_policy(POLICY, current)

    return undo


def test_a_guard_refusal_of_the_responder_ends_not_contained_with_the_guard_s_message(
    cluster: dict[str, Any], admin: client.ApiClient, responder: client.ApiClient
) -> None:
    """The guard refuses the responder's isolation (the namespace is protected by the platform, not by the
    responder's policy): a 403 with the guard's own message in the record, never retried, never `done`: the delivery
    ends `not_contained` at ERROR, which pages a person."""
    import time

    from responder.adapters.kube_connect import KubeconfigConnector
    from responder.config import Settings
    from responder.intake.envelope import Delivery
    from responder.policy.rules import Policy, PolicyEngine
    from responder.service import Dependencies, Responder
    from tests.notifications import notification

    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": GUARDED}})
    body = {
        "metadata": {"name": "secrets-0", "labels": {"app": "vault"}},
        "spec": {"containers": [{"name": "c", "image": IMAGE}]},
    }
    core.create_namespaced_pod(GUARDED, body)
    undo = _protect_in_guard(admin, GUARDED)
    try:
        probe = {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}}
        deadline = time.monotonic() + 30
        while True:  # the apiserver's policy informer takes the change in a moment
            try:
                client.CoreV1Api(responder).patch_namespaced_pod("secrets-0", GUARDED, probe, dry_run="All")
            except ApiException as exc:
                if exc.status == 403:
                    break
                raise
            assert time.monotonic() < deadline, "the guard never took the added protected namespace"
            time.sleep(0.5)
        settings = Settings(mode="enforce", action="isolate", verify_finding=False, netpol_enforcement="established")
        deps = Dependencies(
            settings=settings,
            policy=PolicyEngine(Policy(), settings),
            connector=KubeconfigConnector(Path(cluster["responder_kubeconfig"])),
        )
        doc = notification(namespace=GUARDED, pod="secrets-0", container="c")
        pod = core.read_namespaced_pod("secrets-0", GUARDED)
        doc["finding"]["eventTime"] = pod.metadata.creation_timestamp.isoformat().replace("+00:00", "Z")
        outcome = Responder(deps).respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
        record = outcome.record
        assert (record.outcome, record.severity) == ("not_contained", "ERROR"), record
        isolate = next(a for a in record.actions if a.action == "isolate")
        assert isolate.status.value == "failed" and "forbidden" in isolate.reason, isolate
        assert POLICY in isolate.reason and "protected namespace" in isolate.reason, isolate.reason
        assert record.reason.startswith("NOT CONTAINED")
        live = core.read_namespaced_pod("secrets-0", GUARDED)
        assert QUARANTINE_LABEL not in (live.metadata.labels or {})  # the guard held: nothing was written there
        assert not client.NetworkingV1Api(admin).list_namespaced_network_policy(GUARDED).items
    finally:
        undo()
