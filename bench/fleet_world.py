"""The fleet bench's world (bench/fleet.py): 50 clusters on one apiserver behind per-cluster fronts, the GKE
fake naming them, the metadata server, the Pub/Sub emulator pushing to the real functions-framework server, and a
watch on the quarantine label. Everything a rate of the worm runs in; the worm itself and its figures are in
bench/fleet.py."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cluster import Bench, kube_access
from bench.common import ROOT, TEST_NAMESPACE_LABEL, clean_env

PROJECTS, CLUSTERS_PER_PROJECT = 5, 10
LOCATION = "us-central1"
FLEET_SECONDS = 60
BUDGET = 1  # deletes per cluster per hour: small, so that the worm meets every cluster's budget within the minute
SAME_FINDING_SHARE = 0.05
REDELIVERY_SHARE = 0.10
REDELIVERY_AFTER_S = 3.0
DRAIN_S = 120
KEEP_UP_S = 15.0
DEV_EVERY = 4  # every 4th finding of a cluster is on a tier=dev pod (deleted, budgeted)
FLEET_POLICY = f"""\
version: 1
defaults:
  mode: enforce
  budget: {{max_actions: {BUDGET}, window_s: 3600}}
rules:
  - name: dev-delete
    match:
      pod_labels: {{tier: dev}}
    actions:
      - action: label
      - action: isolate
      - action: capture
      - action: delete
        grace_period_s: 1
  - name: prod-isolate
    actions:
      - action: label
      - action: isolate
      - action: capture
"""
OWN = "responder-system"


def clusters() -> list[str]:
    return [
        f"projects/worm-p{p}/locations/{LOCATION}/clusters/c{c}"
        for p in range(PROJECTS)
        for c in range(CLUSTERS_PER_PROJECT)
    ]


def _short(cluster: str) -> str:
    parts = cluster.split("/")
    return f"{parts[1].removeprefix('worm-')}-{parts[5]}"  # p3-c7


# ------------------------------------------------------------------------------------------------------ the world
def _own_namespaces(admin: Any, identity: str) -> dict[str, str]:
    """Each cluster's responder namespace, with the responder's Role and RoleBinding from rbac.yaml in it."""
    import yaml
    from kubernetes import client, dynamic

    from bench.common import RBAC_MANIFEST

    docs = [
        d
        for d in yaml.safe_load_all(RBAC_MANIFEST.read_text().replace("${responder_identity}", identity))
        if d and d.get("metadata", {}).get("namespace") == OWN and d["kind"] in ("Role", "RoleBinding")
    ]
    dyn = dynamic.DynamicClient(admin)
    core = client.CoreV1Api(admin)
    own: dict[str, str] = {}
    for cluster in clusters():
        name = f"rsr-fleet-own-{_short(cluster)}"
        own[cluster] = name
        with contextlib.suppress(client.ApiException):  # kept between runs: a cluster's responder namespace
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
            )
        for doc in docs:
            body = json.loads(json.dumps(doc).replace(f'"{OWN}"', f'"{name}"'))
            resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
            dyn.server_side_apply(resource, body=body, field_manager="rsr-bench", force_conflicts=True)
    return own


GUARD = "reverse-shell-responder-guard"  # deploy/kubernetes/admission-guard.yaml, installed by tools/kubeenv.py


@contextlib.contextmanager
def guard_for_fleet(admin: Any) -> Iterator[None]:
    """The admission guard, as each cluster's own would read: it lets the responder write only its budget Lease and
    identities in ``responder-system``; here every cluster's responder namespace is one of ``rsr-fleet-own-*``, so
    the guard's namespace test takes those too (its other tests, the names included, unchanged). Put back after."""
    from kubernetes import dynamic

    api = dynamic.DynamicClient(admin).resources.get(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingAdmissionPolicy"
    )
    original = api.get(name=GUARD).to_dict()
    text = json.dumps(original["spec"])
    text = text.replace(
        "variables.requestNamespace == 'responder-system'",
        "(variables.requestNamespace == 'responder-system' || variables.requestNamespace.startsWith('rsr-fleet-own-'))",
    ).replace(
        "variables.requestNamespace != 'responder-system'",
        "(variables.requestNamespace != 'responder-system'"
        " && !variables.requestNamespace.startsWith('rsr-fleet-own-'))",
    )
    api.patch(name=GUARD, body={"spec": json.loads(text)}, content_type="application/merge-patch+json")
    time.sleep(3)  # the apiserver recompiles the policy
    try:
        yield
    finally:
        api.patch(name=GUARD, body={"spec": original["spec"]}, content_type="application/merge-patch+json")


@dataclass
class Target:
    cluster: str
    namespace: str
    pod: str
    tier: str


def seed(admin: Any, tag: str, per_cluster: int) -> tuple[list[str], list[list[Target]]]:
    """One namespace per cluster: ``tier=prod`` and ``tier=dev`` Deployments whose pods stay Pending, an allow-all,
    an allow per Deployment and a non-selecting policy. Returns (namespaces, targets per cluster)."""
    from kubernetes import client

    from tests.support import workloads as w

    dev = -(-per_cluster // DEV_EVERY)
    prod = per_cluster - dev
    namespaces, plans = [], []
    core = client.CoreV1Api(admin)
    for cluster in clusters():
        ns = f"rsr-fleet-{_short(cluster)}-{tag}"
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={TEST_NAMESPACE_LABEL: "true"}))
        )
        namespaces.append(ns)
        w.create_policy(admin, ns, "allow-all")
        w.create_policy(admin, ns, "allow-nothing", {"app": "nothing"})
        for tier, replicas in (("prod", prod), ("dev", dev)):
            w.create_deployment(
                admin, ns, f"web-{tier}", replicas=replicas, labels={"app": f"web-{tier}", "tier": tier}
            )
            w.create_policy(admin, ns, f"allow-web-{tier}", {"app": f"web-{tier}"})
        plans.append((cluster, ns, prod, dev))
    targets: list[list[Target]] = []
    for cluster, ns, prod, dev in plans:
        mine: dict[str, list[str]] = {}
        for tier, replicas in (("prod", prod), ("dev", dev)):
            pods = w.wait_for_pods(admin, ns, replicas, f"app=web-{tier}", timeout_s=180)
            mine[tier] = sorted(p.metadata.name for p in pods)[:replicas]
        order: list[Target] = []
        while mine["prod"] or mine["dev"]:  # every DEV_EVERY-th on a dev pod
            tier = "dev" if mine["dev"] and (len(order) % DEV_EVERY == DEV_EVERY - 1 or not mine["prod"]) else "prod"
            order.append(Target(cluster, ns, mine[tier].pop(0), tier))
        targets.append(order)
    return namespaces, targets


def reset_budgets(admin: Any, own: dict[str, str]) -> None:
    """What an operator does to start a new count (budget.py): delete each cluster's Lease."""
    from kubernetes import client

    coord = client.CoordinationV1Api(admin)
    for ns in own.values():
        with contextlib.suppress(client.ApiException):
            coord.delete_namespaced_lease("rsr-destructive-budget", ns)


class QuarantineWatch:
    """When the apiserver first showed each pod carrying the quarantine label (monotonic), cluster-wide."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.seen: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="quarantine-watch", daemon=True)

    def _run(self) -> None:
        from kubernetes import client, watch

        from responder.containment.keys import QUARANTINE_LABEL

        core = client.CoreV1Api(self.admin)
        rv = core.list_pod_for_all_namespaces(label_selector=f"{QUARANTINE_LABEL}=true", limit=1).metadata
        version = rv.resource_version
        while not self._stop.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    core.list_pod_for_all_namespaces,
                    label_selector=f"{QUARANTINE_LABEL}=true",
                    resource_version=version,
                    timeout_seconds=60,
                ):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    self.seen.setdefault((obj.metadata.namespace, obj.metadata.name), time.monotonic())
            except Exception:  # a dropped watch resumes; a stale version restarts from now
                if self._stop.is_set():
                    return
                version = core.list_pod_for_all_namespaces(limit=1).metadata.resource_version

    def start(self) -> QuarantineWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()


def tree_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant (functions-framework forks gunicorn's worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
        todo.extend(children.get(p, []))
    return total


# ------------------------------------------------------------------------------------------------------ the run
@dataclass
class Sent:
    finding: str
    message_id: str
    attempt: int
    kind: str  # first | same_finding | redelivery
    at: float  # monotonic, when published (or posted)
    target: Target
    status: int | None = None  # a direct post's HTTP status


@dataclass
class Fleet:
    """What every rate of one run shares: the function, the emulator's topic, the fronts, the watch."""

    bench: Bench
    server: Any
    topic: str
    subscription: str
    dead_letters: str
    own: dict[str, str]
    watch: QuarantineWatch
    sent: list[Sent] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------ the setup
def _start_fronts(bench: Bench, stack: contextlib.ExitStack[Any], own: dict[str, str], state: dict[str, Any]) -> str:
    """One TLS front per cluster (bench/fleet_front.py), each named to the GKE fake; returns the bearer token."""
    host, ca_b64, token = kube_access(bench.direct_kc)
    pki = _pki(bench.direct_kc, state)
    spec = {
        "upstream": host,
        "ca_pem": base64.b64decode(ca_b64).decode(),
        "cert_file": str(pki / "apiserver.crt"),
        "key_file": str(pki / "apiserver.key"),
        "own": own,
    }
    spec_path = bench.tmp / "fleet-front.json"
    spec_path.write_text(json.dumps(spec))
    front = subprocess.Popen(
        [sys.executable, "-m", "bench.fleet_front", str(spec_path)],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(_stop_front, front, bench)
    assert front.stdout is not None
    ports = json.loads(front.stdout.readline())
    for cluster in clusters():
        # Dataplane V2: isolation cuts established connections (`auto` reads it from GKE).
        endpoint = f"127.0.0.1:{ports[cluster]}"
        bench.fake.add_cluster(cluster, endpoint=endpoint, ca_certificate=ca_b64, datapath_provider="ADVANCED_DATAPATH")
    return token


def _push_to(server_url: str) -> tuple[str, str, str]:
    """The findings topic, its push subscription to the function, and the dead-letter topic's pull subscription."""
    from tests.support.pubsub_emulator import create_pull_subscription, create_topic

    topic = create_topic(project="worm-sec")
    dead_topic = create_topic(project="worm-sec")
    dead_letters = create_pull_subscription(dead_topic)
    # RSR_FLEET_DEAD_LETTER=0: without the dead-letter policy (to tell the emulator's push stall apart from it).
    dead_letter = os.environ.get("RSR_FLEET_DEAD_LETTER", "1") != "0"
    policy = {"dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}}
    subscription = create_pull_subscription(
        topic,
        push_config={"push_endpoint": server_url + "/"},
        ack_deadline_seconds=60,
        **(policy if dead_letter else {}),
    )
    return topic, subscription, dead_letters


@contextlib.contextmanager
def fleet_world(bench: Bench, state: dict[str, Any]) -> Iterator[Fleet]:
    """The fronts, the GKE fake's 50 clusters, the metadata server, the emulator, the function and the watch."""
    from bench.cold import MetadataServer
    from tests.support.ffserver import start_function_server
    from tests.support.pubsub_emulator import running_emulator

    admin = bench.admin
    own = _own_namespaces(admin, state["responder_identity"])
    with contextlib.ExitStack() as stack:
        stack.enter_context(guard_for_fleet(admin))
        token = _start_fronts(bench, stack, own, state)
        metadata = MetadataServer(token).start()
        stack.callback(metadata.stop)
        emulator = stack.enter_context(running_emulator())
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator
        stack.callback(os.environ.pop, "PUBSUB_EMULATOR_HOST", None)
        policy = bench.tmp / "fleet-policy.yaml"
        policy.write_text(FLEET_POLICY)
        env = {
            **bench.responder_env(),
            **metadata.env(bench.tmp / "gcloud"),
            "RESPONDER_POLICY_FILE": str(policy),
            "RESPONDER_FLEET": ",".join(clusters()),
            "RESPONDER_NETPOL_ENFORCEMENT": "auto",
        }
        env.pop("RESPONDER_ACTION", None)  # the policy decides: isolate prod, delete dev
        server = start_function_server(bench.tmp, env)
        stack.callback(_stop_server, server)
        topic, subscription, dead_letters = _push_to(server.url)
        watch = QuarantineWatch(admin).start()
        stack.callback(watch.stop)
        yield Fleet(bench, server, topic, subscription, dead_letters, own, watch)


def _pki(kubeconfig: Path, state: dict[str, Any]) -> Path:
    """The cluster's pki directory (its apiserver's serving certificate and key), next to its kubeconfig."""
    for base in (Path(state.get("dir", kubeconfig.parent)), *kubeconfig.parents):
        if (base / "pki" / "apiserver.crt").exists():
            return base / "pki"
    raise SystemExit(f"bench: no pki/apiserver.crt near {kubeconfig}")


def _stop_front(front: subprocess.Popen[str], bench: Bench) -> None:
    assert front.stdin is not None
    assert front.stdout is not None
    front.stdin.close()
    line = front.stdout.readline()
    with contextlib.suppress(ValueError):
        bench.state.setdefault("fleet_front", json.loads(line))
    front.wait(timeout=30)


def _stop_server(server: Any) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
