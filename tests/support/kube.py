"""pytest plugin: a real kube-apiserver (+ controller-manager) for integration and e2e tests.

Loaded from tests/conftest.py with `pytest_plugins = ["tests.support.kube"]`.

The cluster comes from tools/kubeenv.py. A cluster already started with `make kube-up` (`.testenv/state.json` at the
repository root) is reused when healthy, which makes repeated test runs fast; otherwise the session starts a private
one in a pytest temp dir and stops it at the end. `tools/kubeenv.py rbac` applies deploy/kubernetes/rbac.yaml and
rbac-capture.yaml to it, exactly as `make kube-up` does: the responder's identity has the rights those manifests grant,
and a second identity (`kube_responder_nocapture`) has rbac.yaml's alone, as a deployment without process capture.

If the cluster cannot be provided (e.g. the binaries cannot be built because the package registry is unreachable) the
tests that need it FAIL. `RSR_KUBE_REQUIRED=0` turns that into a skip, for a developer's local run only.

As root the cluster has a real node (containerd, kubelet, scheduler, sealed in its own network namespace): pods that
tolerate its taint run, so exec and logs reach real containers (`kube_node`, tests/node). Every other pod stays
Pending, exactly as on the control-plane-only cluster the API-level tests were written for. Without root there is no
node: `kube_node` tests skip, or FAIL under `CI=true` (or `RSR_KUBE_REQUIRED`), where a missing node is a broken
machine, not a choice. `RSR_KUBE_NODE=0` asks for the control plane only, even as root (started with `up --no-node`,
or reused from such a `.testenv`): for API-level runs where another cluster's kubelet owns /var/log/pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.support.common import ci

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBEENV = REPO_ROOT / "tools" / "kubeenv.py"
SHARED_ENV_DIR = REPO_ROOT / ".testenv"  # what `make kube-up` starts
RBAC_MANIFESTS = (
    REPO_ROOT / "deploy" / "kubernetes" / "rbac.yaml",
    REPO_ROOT / "deploy" / "kubernetes" / "rbac-capture.yaml",
)
RESPONDER_NAMESPACE = "responder-system"
TEST_NAMESPACE_LABEL = "rsr-test"  # leftovers of killed runs on a reused cluster: kubectl delete ns -l rsr-test

_BUILD_FAILURE_KEY = pytest.StashKey[str]()


@dataclass(frozen=True)
class KubeEnv:
    """Where the test cluster is and who is who on it."""

    server: str
    kubeconfig: Path  # admin: a static token user in system:masters
    responder_kubeconfig: Path  # the responder's identity; the code under test reads it from RESPONDER_KUBECONFIG
    responder_identity: str
    responder_nocapture_kubeconfig: Path  # bound to rbac.yaml's roles only: no pods/exec
    responder_nocapture_identity: str
    version: str
    directory: Path
    reused: bool  # True when it is the long-lived `make kube-up` cluster (other objects may exist on it)
    node: dict[str, Any] | None = None  # the real node (netns, taint, images...), None on a control-plane-only cluster


def _node_wanted() -> bool:
    """Whether the session's cluster has the real node: as root, unless ``RSR_KUBE_NODE=0`` asks for the control
    plane only (a run that must not start a kubelet of its own, on a machine where another one owns /var/log/pods)."""
    return os.geteuid() == 0 and os.environ.get("RSR_KUBE_NODE", "1").strip().lower() not in {"0", "false", "no"}


def _required() -> bool:
    return os.environ.get("RSR_KUBE_REQUIRED", "1").strip().lower() not in {"0", "false", "no"}


def _unavailable(reason: str) -> None:
    banner = f"KUBERNETES TEST CLUSTER UNAVAILABLE: {reason}"
    if _required():
        pytest.fail(f"{banner}\n(set RSR_KUBE_REQUIRED=0 to skip these tests on a local machine instead)", False)
    pytest.skip(f"{banner} (skipped because RSR_KUBE_REQUIRED=0)")


def _run_kubeenv(pytestconfig: pytest.Config, *args: str) -> tuple[int, str]:
    """Runs tools/kubeenv.py, echoing its output to the terminal live (a cold build takes minutes); returns a tail."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    tail: deque[str] = deque(maxlen=40)
    cm = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with cm:
        proc = subprocess.Popen(
            [sys.executable, str(KUBEENV), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            sys.stderr.write(line)
            sys.stderr.flush()
        returncode = proc.wait()
    return returncode, "".join(tail)


def _wanted_version() -> str:
    """The version tools/cluster builds for this RSR_KUBE, asked of tools/cluster itself (standard library only)."""
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        from cluster import gobuild

        return gobuild.wanted_version()
    finally:
        sys.path.remove(str(REPO_ROOT / "tools"))


def _shared_cluster_healthy() -> bool:
    try:
        state = json.loads((SHARED_ENV_DIR / "state.json").read_text())
    except (OSError, ValueError):
        return False
    if "kube-controller-manager" not in state.get("pids", {}):
        return False  # started with --no-controller-manager: the tests need ReplicaSets and GC to work
    if "responder_nocapture_kubeconfig" not in state:
        return False  # started by an older kubeenv, without the no-capture identity
    if _node_wanted() and state.get("mode") != "node":
        return False  # root can have the real node: the node tests need it
    if state.get("version") != _wanted_version():
        return False  # another Kubernetes than RSR_KUBE asks for (make test's is 1.35): start the right one
    result = subprocess.run(
        [sys.executable, str(KUBEENV), "status", "--dir", str(SHARED_ENV_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the binaries before the first test runs, if any selected test needs the cluster.

    A cold build takes ~4-5 minutes. Done here it is outside every test, so pytest-timeout's per-test limit does not
    cut it off, and the developer sees its progress before the first dot.
    """
    needs_cluster = any("kube_env" in getattr(item, "fixturenames", ()) for item in session.items)
    if session.config.option.collectonly or not needs_cluster:
        return
    if _shared_cluster_healthy():
        return
    returncode, tail = _run_kubeenv(session.config, "build")
    if returncode != 0:
        session.config.stash[_BUILD_FAILURE_KEY] = f"`tools/kubeenv.py build` failed (exit {returncode}):\n{tail}"


def _apply_rbac(pytestconfig: pytest.Config, directory: Path) -> None:
    """deploy/kubernetes/rbac.yaml + rbac-capture.yaml, applied by the same code as `make kube-up`.

    Server-side apply, so on a reused long-lived cluster an edited manifest (a rule removed, say) replaces what is
    stored, or the least-privilege tests would check yesterday's rules. It returns once the authorizer sees the
    bindings (its informers lag the apply by a moment).
    """
    for manifest in RBAC_MANIFESTS:
        if "${responder_identity}" not in manifest.read_text():
            pytest.fail(f"{manifest} does not bind ${{responder_identity}}")
    returncode, tail = _run_kubeenv(pytestconfig, "rbac", "--dir", str(directory))
    if returncode != 0:
        pytest.fail(f"`tools/kubeenv.py rbac` failed (exit {returncode}):\n{tail}")


@pytest.fixture(scope="session")
def kube_env(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    """A healthy cluster with the responder's RBAC applied (reused from `make kube-up`, or started here)."""
    build_failure = pytestconfig.stash.get(_BUILD_FAILURE_KEY, None)
    if build_failure:
        _unavailable(build_failure)

    started_dir: Path | None = None
    if _shared_cluster_healthy():
        directory = SHARED_ENV_DIR
    else:
        directory = tmp_path_factory.mktemp("kubeenv", numbered=True)
        no_node = () if _node_wanted() else ("--no-node",)
        returncode, tail = _run_kubeenv(pytestconfig, "up", "--dir", str(directory), *no_node)
        if returncode != 0:
            _run_kubeenv(pytestconfig, "down", "--dir", str(directory))
            _unavailable(f"`tools/kubeenv.py up` failed (exit {returncode}):\n{tail}")
        started_dir = directory
    try:
        state: dict[str, Any] = json.loads((directory / "state.json").read_text())
        env = KubeEnv(
            server=state["server"],
            kubeconfig=Path(state["kubeconfig"]),
            responder_kubeconfig=Path(state["responder_kubeconfig"]),
            responder_identity=state["responder_identity"],
            responder_nocapture_kubeconfig=Path(state["responder_nocapture_kubeconfig"]),
            responder_nocapture_identity=state["responder_nocapture_identity"],
            version=state["version"],
            directory=directory,
            reused=started_dir is None,
            node=state.get("node") if state.get("mode") == "node" else None,
        )
        if started_dir is None:  # a cluster started here got it from `up`; a reused one may hold older rules
            _apply_rbac(pytestconfig, directory)
        yield env
    finally:
        if started_dir is not None:
            _run_kubeenv(pytestconfig, "down", "--dir", str(started_dir))


def status_of(call: Callable[[], Any]) -> int:
    """HTTP status of a client call: 200 for any success, else the ApiException's status."""
    try:
        call()
    except client.ApiException as exc:
        return int(exc.status)
    return 200


@pytest.fixture(scope="session")
def kube_node(kube_env: KubeEnv) -> dict[str, Any]:
    """The cluster's real node (pods tolerating its taint run there); fails under CI when there is none."""
    if kube_env.node is None:
        reason = (
            "REAL NODE UNAVAILABLE: the test cluster has no kubelet (the node needs root: containerd, a network "
            "namespace and cgroups). Run the tests as root (CI does)."
        )
        if ci() or os.environ.get("RSR_KUBE_REQUIRED", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(reason, False)
        pytest.skip(reason)
    return kube_env.node


@pytest.fixture(scope="session")
def kube_paths(kube_env: KubeEnv) -> KubeEnv:
    """Alias of kube_env for tests that only want the kubeconfig paths (`.kubeconfig`, `.responder_kubeconfig`)."""
    return kube_env


@pytest.fixture(scope="session")
def kube_admin(kube_env: KubeEnv) -> Iterator[client.ApiClient]:
    """Cluster-admin ApiClient (system:masters): for arranging test objects, never for the code under test."""
    api = config.new_client_from_config(config_file=str(kube_env.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def kube_responder(kube_env: KubeEnv) -> Iterator[client.ApiClient]:
    """ApiClient authenticated as the responder identity: only what rbac.yaml and rbac-capture.yaml grant."""
    api = config.new_client_from_config(config_file=str(kube_env.responder_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def kube_responder_nocapture(kube_env: KubeEnv) -> Iterator[client.ApiClient]:
    """ApiClient of the identity bound to rbac.yaml only: the responder where process capture is not enabled."""
    api = config.new_client_from_config(config_file=str(kube_env.responder_nocapture_kubeconfig))
    yield api
    api.close()


@pytest.fixture
def responder_kubeconfig_env(kube_env: KubeEnv, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points RESPONDER_KUBECONFIG (what the responder's settings read) at the responder identity's kubeconfig."""
    monkeypatch.setenv("RESPONDER_KUBECONFIG", str(kube_env.responder_kubeconfig))
    return kube_env.responder_kubeconfig


@pytest.fixture
def kube_namespace(kube_admin: client.ApiClient) -> Iterator[str]:
    """A fresh, uniquely named namespace; deleted (asynchronously, by the namespace controller) afterwards."""
    name = f"rsr-t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_admin)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
    )
    wait_for_default_service_account(kube_admin, name)
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, propagation_policy="Background")


def wait_for_default_service_account(admin: client.ApiClient, namespace: str, timeout: float = 30.0) -> None:
    """Until the service-account controller has made ``namespace``'s `default` ServiceAccount: the apiserver's
    ServiceAccount admission (on, as on GKE) refuses a pod whose service account does not exist yet."""
    core, deadline = client.CoreV1Api(admin), time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def client_with_token(kubeconfig: Path, token: str) -> client.ApiClient:
    """A client that authenticates with ``token`` alone: the kubeconfig's server and CA, not its user (a stolen
    service-account token, used from outside its pod)."""
    loaded = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=loaded)
    cfg = client.Configuration(host=loaded.host, api_key={"BearerToken": f"Bearer {token}"})
    cfg.ssl_ca_cert = loaded.ssl_ca_cert
    return client.ApiClient(cfg)
