"""pytest plugin: a real kube-apiserver (+ controller-manager) for integration and e2e tests.

Loaded from tests/conftest.py with `pytest_plugins = ["tests.support.kube"]`.

The cluster comes from tools/kubeenv.py. A cluster already started with `make kube-up` (`.testenv/state.json` at the
repository root) is reused when healthy, which makes repeated test runs fast; otherwise the session starts a private
one in a pytest temp dir and stops it at the end. deploy/kubernetes/rbac.yaml is applied to it, so the responder's
identity has exactly the rights that manifest grants.

If the cluster cannot be provided (e.g. the binaries cannot be built because the package registry is unreachable) the
tests that need it FAIL. `RSR_KUBE_REQUIRED=0` turns that into a skip, for a developer's local run only.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, dynamic

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBEENV = REPO_ROOT / "tools" / "kubeenv.py"
SHARED_ENV_DIR = REPO_ROOT / ".testenv"  # what `make kube-up` starts
RBAC_MANIFEST = REPO_ROOT / "deploy" / "kubernetes" / "rbac.yaml"
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
    version: str
    directory: Path
    reused: bool  # True when it is the long-lived `make kube-up` cluster (other objects may exist on it)


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


def _shared_cluster_healthy() -> bool:
    try:
        state = json.loads((SHARED_ENV_DIR / "state.json").read_text())
    except (OSError, ValueError):
        return False
    if "kube-controller-manager" not in state.get("pids", {}):
        return False  # started with --no-controller-manager: the tests need ReplicaSets and GC to work
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


def _apply_rbac(api: client.ApiClient, identity: str) -> None:
    """Applies deploy/kubernetes/rbac.yaml with the responder identity filled in.

    Server-side apply rather than create-and-ignore-409: on a reused long-lived cluster an edited manifest (a rule
    removed, say) must replace what is stored, or the least-privilege tests would check yesterday's rules.
    """
    text = RBAC_MANIFEST.read_text().replace("${responder_identity}", identity)
    if "${" in text:
        pytest.fail(f"{RBAC_MANIFEST} has a template variable the tests do not fill in")
    dynamic_client = dynamic.DynamicClient(api)
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        # The dynamic client directly: kubernetes.utils' apply=True path sends namespaced objects to the `default`
        # namespace whatever their metadata.namespace says.
        resource = dynamic_client.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        dynamic_client.server_side_apply(resource, body=document, field_manager="rsr-tests", force_conflicts=True)


def _wait_for_rbac(api: client.ApiClient, timeout: float = 15.0) -> None:
    # The RBAC authorizer reads roles and bindings through informers: for a moment after the apply the new bindings
    # are unseen. Probe one permission from the ClusterRoleBinding and one from the namespaced RoleBinding.
    probes = [
        client.V1ResourceAttributes(verb="delete", group="", resource="pods", namespace="default"),
        client.V1ResourceAttributes(
            verb="create", group="coordination.k8s.io", resource="leases", namespace=RESPONDER_NAMESPACE
        ),
    ]
    authz = client.AuthorizationV1Api(api)
    deadline = time.monotonic() + timeout
    while probes and time.monotonic() < deadline:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=probes[0])
        )
        if authz.create_self_subject_access_review(review).status.allowed:
            probes.pop(0)
        else:
            time.sleep(0.2)
    if probes:
        pytest.fail(f"the responder identity was not granted its RBAC rules within {timeout:.0f}s")


@pytest.fixture(scope="session")
def kube_env(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    """A healthy cluster with deploy/kubernetes/rbac.yaml applied (reused from `make kube-up`, or started here)."""
    build_failure = pytestconfig.stash.get(_BUILD_FAILURE_KEY, None)
    if build_failure:
        _unavailable(build_failure)

    started_dir: Path | None = None
    if _shared_cluster_healthy():
        directory = SHARED_ENV_DIR
    else:
        directory = tmp_path_factory.mktemp("kubeenv", numbered=True)
        returncode, tail = _run_kubeenv(pytestconfig, "up", "--dir", str(directory))
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
            version=state["version"],
            directory=directory,
            reused=started_dir is None,
        )
        admin = config.new_client_from_config(config_file=str(env.kubeconfig))
        responder = config.new_client_from_config(config_file=str(env.responder_kubeconfig))
        try:
            _apply_rbac(admin, env.responder_identity)
            _wait_for_rbac(responder)
        finally:
            admin.close()
            responder.close()
        yield env
    finally:
        if started_dir is not None:
            _run_kubeenv(pytestconfig, "down", "--dir", str(started_dir))


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
    """ApiClient authenticated as the responder identity: only what deploy/kubernetes/rbac.yaml grants."""
    api = config.new_client_from_config(config_file=str(kube_env.responder_kubeconfig))
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
    yield name
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(name, propagation_policy="Background")
