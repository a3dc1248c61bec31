"""The bench's cluster: reuse or start the local one (tools/kubeenv.py), the responder's RBAC, the namespaces the
measurements act on (:class:`Seeder`), their findings, and :class:`Bench`, what every measurement shares."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH_API_ENV, BENCH_ENV, KUBEENV, RBAC_MANIFEST, ROOT, SHARED_ENV, TEST_NAMESPACE_LABEL, log


def _kubeenv(*args: str, quiet: bool = False) -> int:
    return subprocess.run(
        [sys.executable, str(KUBEENV), *args],
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL if quiet else sys.stderr,
        stderr=subprocess.DEVNULL if quiet else sys.stderr,
    ).returncode


@contextlib.contextmanager
def local_cluster(node: bool = True) -> Iterator[dict[str, Any]]:
    """The `make kube-up` cluster (or a bench cluster left running) when healthy, else one started in .testenv-bench
    and stopped afterwards. ``node=False``: for measurements at the API only; any healthy cluster will do, else the
    control plane alone (``up --no-node``: etcd, kube-apiserver, controller-manager; no kubelet, no containers) is
    started in .testenv-bench-api."""
    started: Path | None = None
    candidates = (SHARED_ENV, BENCH_ENV) if node else (SHARED_ENV, BENCH_ENV, BENCH_API_ENV)
    healthy = [
        d for d in candidates if (d / "state.json").exists() and _kubeenv("status", "--dir", str(d), quiet=True) == 0
    ]
    if healthy:
        directory = healthy[0]
        log(f"reusing the healthy cluster in {directory.name}")
    else:
        directory = BENCH_ENV if node else BENCH_API_ENV
        log(f"starting a cluster in {directory.name}{'' if node else ' (control plane only)'}")
        if _kubeenv("up", "--dir", str(directory), *(() if node else ("--no-node",))) != 0:
            _kubeenv("down", "--dir", str(directory))
            raise SystemExit("bench: could not start the local cluster (tools/kubeenv.py up failed)")
        started = directory
    try:
        state: dict[str, Any] = json.loads((directory / "state.json").read_text())
        yield state
    finally:
        if started is not None:
            log(f"stopping the cluster in {started.name}")
            _kubeenv("down", "--dir", str(started))
            shutil.rmtree(started, ignore_errors=True)  # etcd data, certificates, tokens: nothing worth keeping


def apply_rbac(admin: Any, responder: Any, identity: str) -> None:
    """deploy/kubernetes/rbac.yaml for the responder identity (server-side apply), then wait until it is in force."""
    import yaml
    from kubernetes import client, dynamic

    dyn = dynamic.DynamicClient(admin)
    text = RBAC_MANIFEST.read_text().replace("${responder_identity}", identity)
    for doc in yaml.safe_load_all(text):
        if doc:
            resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            dyn.server_side_apply(resource, body=doc, field_manager="rsr-bench", force_conflicts=True)
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb="patch", resource="pods", namespace="default")
        )
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.AuthorizationV1Api(responder).create_self_subject_access_review(review).status.allowed:
            return
        time.sleep(0.2)
    raise SystemExit("bench: the responder identity did not get its RBAC rules")


@dataclass
class Shop:
    """A namespace with Deployments (one pod label ``app=<name>`` each) and the policies around them."""

    namespace: str
    pods: dict[str, list[str]] = field(default_factory=dict)  # deployment -> pod names

    def expected_exclusions(self, deployment: str) -> list[str]:
        """The allowing policies that select a pod of ``deployment`` (allow-nothing selects none)."""
        return ["allow-all", f"allow-{deployment}"]


class Seeder:
    """Creates (and finally deletes) the namespaces the measurements act on, as the cluster admin."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.namespaces: list[str] = []

    def shop(self, tag: str, deployments: int, replicas: int, running: bool = False) -> Shop:
        """``running``: pods the local node runs (a reverse shell on the pod's loopback), so that evidence capture
        really execs ``ps`` and tails a log; otherwise they stay Pending (enough for API-level measurements)."""
        from kubernetes import client

        from tests.support import workloads as w

        name = f"rsr-bench-{tag}-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(self.admin).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
        )
        self.namespaces.append(name)
        shop = Shop(name)
        w.create_policy(self.admin, name, "allow-all")
        w.create_policy(self.admin, name, "allow-nothing", {"app": "nothing"})
        for i in range(deployments):
            dep = f"web{i}"
            if running:
                w.create_running_deployment(self.admin, name, dep, replicas=replicas)
            else:
                w.create_deployment(self.admin, name, dep, replicas=replicas)
            w.create_policy(self.admin, name, f"allow-{dep}", {"app": dep})
            shop.pods[dep] = []
        return shop

    def wait(self, shops: list[Shop], replicas: int, timeout_s: float = 120, running: bool = False) -> None:
        from tests.support import workloads as w

        wait_for = w.wait_for_running if running else w.wait_for_pods
        for shop in shops:
            for dep in shop.pods:
                found = wait_for(self.admin, shop.namespace, replicas, f"app={dep}", timeout_s=timeout_s)
                shop.pods[dep] = sorted(p.metadata.name for p in found)[:replicas]

    def cleanup(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.admin)
        for name in self.namespaces:
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(name, propagation_policy="Background")


_FINDING_PREFIX = "organizations/987654321012/sources/11223311223344556600/findings/"


def finding_doc(namespace: str, pod: str, suffix: str, **overrides: Any) -> dict[str, Any]:
    """A Reverse Shell notification for ``namespace/pod`` (tests/notifications.py), finding id ``suffix``."""
    from tests.notifications import notification

    return notification(namespace=namespace, pod=pod, container="api", name_suffix=suffix, **overrides)


def seed_finding(fake: Any, doc: dict[str, Any]) -> None:
    """SCC knows the finding as the message describes it: verification vouches for it, the write-back finds it."""
    fake.vouch_for(doc)


def echo_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The notification SCC sends after our own marks write-back: ``rsr_event`` = the occurrence's eventTime."""
    from responder.intake.findings import to_finding
    from responder.intake.notification import parse_notification
    from responder.report.writeback import HANDLED_MARK

    finding = to_finding(parse_notification(json.dumps(doc).encode()))
    assert finding.event_time is not None
    echoed = json.loads(json.dumps(doc))
    marks = echoed["finding"].setdefault("securityMarks", {})
    marks["marks"] = {HANDLED_MARK: finding.event_time.isoformat()}
    return echoed


def kube_access(kubeconfig: Path) -> tuple[str, str, str]:
    """(host:port, base64 CA PEM, bearer token) of the apiserver, as GKE's API would describe the cluster."""
    import base64

    import yaml

    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    ca = (
        cluster.get("certificate-authority-data")
        or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    )
    return cluster["server"].removeprefix("https://"), ca, doc["users"][0]["user"]["token"]


def verify_isolated(admin: Any, events: list[dict[str, Any]]) -> None:
    """Read back with the admin client: every pod labelled, deny-all present, its allowing policies excluded."""
    from kubernetes import client

    from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL

    core, net = client.CoreV1Api(admin), client.NetworkingV1Api(admin)
    problems = []
    for namespace in sorted({e["namespace"] for e in events}):
        policies = {p.metadata.name: p for p in net.list_namespaced_network_policy(namespace).items}
        if DENY_ALL_POLICY not in policies:
            problems.append(f"{namespace}: no deny-all policy")
        for name, policy in policies.items():
            exprs = policy.spec.pod_selector.match_expressions or []
            excluded = sum(1 for e in exprs if e.key == QUARANTINE_LABEL and e.operator == "NotIn")
            expected = 0 if name in (DENY_ALL_POLICY, "allow-nothing") else 1
            if excluded != expected:
                problems.append(f"{namespace}/{name}: {excluded} exclusions, expected {expected}")
    for e in events:
        labels = core.read_namespaced_pod(e["pod"], e["namespace"]).metadata.labels or {}
        if labels.get(QUARANTINE_LABEL) != "true":
            problems.append(f"{e['namespace']}/{e['pod']}: not labelled")
    if problems:
        raise SystemExit("bench: containment not as expected:\n  " + "\n  ".join(problems[:20]))


@dataclass
class Bench:
    """What every measurement of one run shares: the cluster's admin client, the Google wire fake, the responder's
    kubeconfigs (direct, and through the latency proxy), the policy file and the scratch directory."""

    admin: Any
    fake: Any
    tmp: Path
    policy_file: Path
    direct_kc: Path
    proxy_kc: Path
    proxy_port: int
    state: dict[str, Any]

    def event(self, shop: Shop, dep: str, index: int, tag: str) -> dict[str, Any]:
        """A finding for pod ``index`` of ``dep`` in ``shop``, which SCC (the fake) vouches for."""
        pod = shop.pods[dep][index]
        doc = finding_doc(shop.namespace, pod, f"{tag}{uuid.uuid4().hex[:12]}")
        seed_finding(self.fake, doc)
        return {"doc": doc, "namespace": shop.namespace, "pod": pod, "policies": shop.expected_exclusions(dep)}

    def settings(self, kubeconfig: Path) -> dict[str, Any]:
        """``Settings`` of a worker process's responder."""
        return {
            "mode": "enforce",
            "action": "isolate",
            "kubeconfig": str(kubeconfig),
            "policy_file": str(self.policy_file),
            "scc_endpoint": self.fake.url,
            "logging_endpoint": self.fake.url,
            "container_endpoint": self.fake.url,
            "anonymous_google": True,
            "netpol_enforcement": "established",  # the local node's dataplane (a kubeconfig would read new-only)
        }

    def responder_env(self) -> dict[str, str]:
        """The same settings as RESPONDER_* variables, for a fresh process (bench/probe.py); no kubeconfig."""
        return {
            "RESPONDER_MODE": "enforce",
            "RESPONDER_ACTION": "isolate",
            "RESPONDER_POLICY_FILE": str(self.policy_file),
            "RESPONDER_SCC_ENDPOINT": self.fake.url,
            "RESPONDER_LOGGING_ENDPOINT": self.fake.url,
            "RESPONDER_CONTAINER_ENDPOINT": self.fake.url,
            "RESPONDER_ANONYMOUS_GOOGLE": "true",
        }
