"""The worm at fleet scale (``python -m bench.run fleet``): 50 clusters, findings through the real push path.

What runs, all real but the Google APIs (the wire fake) and the Pub/Sub service (Google's emulator):

- **50 clusters** as the GKE wire fake names them (``projects/worm-p{0..4}/locations/us-central1/clusters/c{0..9}``),
  all on the one local apiserver. Each cluster's pods live in namespaces of their own, and each has its own
  responder namespace (budget Lease, quarantined identities): its endpoint is a port of bench/fleet_front.py, which
  maps ``responder-system`` to that cluster's namespace, so every cluster has its own blast-radius budget, as on GKE
  where each cluster has its own apiserver. RESPONDER_FLEET lists all 50; the token comes from Application Default
  Credentials (a local metadata server), no kubeconfig: the GKE path, as deployed.
- **The function**: the real functions-framework server running ``main.handle_finding`` (tests/support/ffserver.py),
  configured only through its environment; the **Pub/Sub emulator** pushes the topic's messages to it (a push
  subscription with a dead-letter policy, as Terraform creates).
- **The worm**: distinct findings at a fixed rate for ``FLEET_SECONDS``, spread round-robin over the clusters, each
  on a pod of its own (3 of 4 in a ``tier=prod`` Deployment, isolated; 1 of 4 in a ``tier=dev`` one, deleted, which
  takes a slot of the cluster's budget of ``BUDGET`` delete per hour). SCC (the fake) vouches for every finding before
  it is published. Mixed in: ``SAME_FINDING_SHARE`` of the findings published a second time (a new message, attempt
  1: SCC sent the notification twice), and ``REDELIVERY_SHARE`` redelivered as Pub/Sub redelivers (the same message
  id, ``deliveryAttempt`` 2, posted to the function like the emulator's push a few seconds later: the emulator
  redelivers only what was not acknowledged, and cannot be asked to).

Measured, per rate: every decision record the function printed (by message id and attempt); when a watch on the
apiserver first saw each pod carry the quarantine label (the last of the isolating writes: the deny-all is written
before it, the exclusions with it); the function's CPU (utime + stime of its process tree, from /proc); the SCC
requests the fake received. After the publishing, the bench waits until every message has a record (``DRAIN_S``
at most), then turns the subscription into a pull subscription and pulls what the emulator still holds, and pulls
the dead-letter topic: a finding is lost when it ends with no ``done``/``not_contained`` record, or a message is
still held or dead-lettered.

A rate is sustained when nothing is lost and the worm does not outrun the function: the last finding is contained
within ``KEEP_UP_S`` of its publishing (a backlog that grows through the minute shows there first).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cluster import Bench, kube_access
from bench.common import ROOT, TEST_NAMESPACE_LABEL, clean_env, log
from bench.sizing import percentile, quota_rate, size

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


def _seed(admin: Any, tag: str, per_cluster: int) -> tuple[list[str], list[list[Target]]]:
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


def _reset_budgets(admin: Any, own: dict[str, str]) -> None:
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


def _publish_all(fleet: Fleet, order: list[Target], rate_per_min: float) -> list[Sent]:
    """Publish one finding per target at ``rate_per_min`` (and the duplicates), as the worm spreads."""
    import random

    import requests
    from google.cloud import pubsub_v1

    from tests.notifications import notification

    rng = random.Random(32)
    publisher = pubsub_v1.PublisherClient()
    interval = 60.0 / rate_per_min
    sent: list[Sent] = []
    lock = threading.Lock()
    timers: list[threading.Timer] = []
    session = requests.Session()

    def redeliver(doc: dict[str, Any], message_id: str, target: Target) -> None:
        data = base64.b64encode(json.dumps(doc).encode()).decode()
        body = {
            "message": {
                "data": data,
                "messageId": message_id,
                "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "attributes": {},
                "deliveryAttempt": 2,
            },
            "subscription": fleet.subscription,
            "deliveryAttempt": 2,
        }
        item = Sent(doc["finding"]["name"], message_id, 2, "redelivery", time.monotonic(), target)
        with lock:
            sent.append(item)
        try:
            item.status = session.post(fleet.server.url + "/", json=body, timeout=120).status_code
        except requests.RequestException:
            item.status = -1

    started = time.monotonic()
    for i, target in enumerate(order):
        due = started + i * interval
        time.sleep(max(0.0, due - time.monotonic()))
        resource = f"//container.googleapis.com/{target.cluster}"
        doc = notification(
            namespace=target.namespace, pod=target.pod, resource=resource, name_suffix=f"w{uuid.uuid4().hex[:20]}"
        )
        fleet.bench.fake.vouch_for(doc)  # SCC knows the finding before it notifies
        data = json.dumps(doc).encode()
        at = time.monotonic()
        message_id = str(publisher.publish(fleet.topic, data).result(timeout=30))
        with lock:
            sent.append(Sent(doc["finding"]["name"], message_id, 1, "first", at, target))
        draw = rng.random()
        if draw < SAME_FINDING_SHARE:
            at2 = time.monotonic()
            again = str(publisher.publish(fleet.topic, data).result(timeout=30))
            with lock:
                sent.append(Sent(doc["finding"]["name"], again, 1, "same_finding", at2, target))
        elif draw < SAME_FINDING_SHARE + REDELIVERY_SHARE:
            timer = threading.Timer(REDELIVERY_AFTER_S, redeliver, (doc, message_id, target))
            timer.start()
            timers.append(timer)
    for timer in timers:
        timer.join()
    return sent


def _records(server: Any) -> list[dict[str, Any]]:
    return [r for r in server.records() if r.get("delivery", {}).get("message_id")]


def _drain(fleet: Fleet, sent: list[Sent]) -> list[dict[str, Any]]:
    """Until every message has a record, or DRAIN_S."""
    from collections import Counter

    # Counted by message id alone: a record names its attempt only when the envelope carried one.
    wanted = Counter(s.message_id for s in sent)
    deadline = time.monotonic() + DRAIN_S
    while True:
        records = _records(fleet.server)
        got = Counter(r["delivery"]["message_id"] for r in records)
        if all(got[m] >= n for m, n in wanted.items()) or time.monotonic() > deadline:
            return records
        time.sleep(1.0)


def _held(subscription: str) -> list[str]:
    """The message ids a subscription still holds: it becomes a pull subscription, and is pulled until empty."""
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as sub:
        sub.modify_push_config(request={"subscription": subscription, "push_config": {}})
        held: list[str] = []
        while True:
            got = sub.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
            if not got.received_messages:
                return held
            held += [m.message.message_id for m in got.received_messages]
            sub.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in got.received_messages]}
            )


def run_rate(fleet: Fleet, rate_per_min: float, tag: str, seconds: float) -> dict[str, Any]:
    """``seconds`` of the worm at ``rate_per_min`` distinct findings a minute; returns its figures."""
    total = round(rate_per_min * seconds / 60)
    per_cluster = max(1, -(-total // len(clusters())))
    log(f"fleet {tag}: seeding {len(clusters())} clusters x {per_cluster} pods")
    admin = fleet.bench.admin
    namespaces, targets = _seed(admin, tag, per_cluster)
    _reset_budgets(admin, fleet.own)
    order = [t for round_ in zip(*targets, strict=True) for t in round_]  # round-robin over the clusters
    order = order[:total]
    scc_before = len(fleet.bench.fake.requests_to(path="*/sources/*"))
    scc_reads_before = len(fleet.bench.fake.requests_to(method="GET", path="*/sources/*"))
    records_before = len(_records(fleet.server))
    cpu_before = tree_cpu_s(fleet.server.process.pid)
    load_before = os.getloadavg()[0]
    log(f"fleet {tag}: {len(order)} findings at {rate_per_min:g}/min for {seconds:g} s through the push path")
    t0 = time.monotonic()
    sent = _publish_all(fleet, order, rate_per_min)
    published_s = time.monotonic() - t0
    records = _drain(fleet, sent)[records_before:]
    cpu = tree_cpu_s(fleet.server.process.pid) - cpu_before
    scc_all = fleet.bench.fake.requests_to(path="*/sources/*")[scc_before:]
    scc_reads = len(fleet.bench.fake.requests_to(method="GET", path="*/sources/*")) - scc_reads_before
    figures = _figures(fleet, sent, records, order, cpu, len(scc_all), scc_reads, rate_per_min)
    figures.update(published_s=round(published_s, 1), load_before=load_before, load_after=os.getloadavg()[0])
    figures["namespaces"] = namespaces
    return figures


def _figures(
    fleet: Fleet,
    sent: list[Sent],
    records: list[dict[str, Any]],
    order: list[Target],
    cpu_s: float,
    scc_calls: int,
    scc_reads: int,
    rate: float,
) -> dict[str, Any]:
    from collections import Counter

    recorded = Counter(r["delivery"]["message_id"] for r in records)
    attempts = Counter(r["delivery"].get("delivery_attempt") for r in records)
    codes: dict[str, int] = {}
    for r in records:
        key = f"{r['verdict']}/{r['code']}/{r['outcome']}"
        codes[key] = codes.get(key, 0) + 1
    findings = {s.finding: s for s in sent if s.kind == "first"}
    ended: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("finding") in findings:
            ended.setdefault(r["finding"], []).append(r)
    terminal = {f for f, rs in ended.items() if any(r["outcome"] in ("done", "not_contained") for r in rs)}
    contained, budget_refused, deleted = 0, 0, 0
    for rs in ended.values():
        actions = [a for r in rs for a in r.get("actions", [])]
        if any(a["action"] in ("isolate", "delete") and a["status"] == "succeeded" for a in actions):
            contained += 1
        if any(a["action"] == "delete" and "budget OVER" in a.get("reason", "") for a in actions):
            budget_refused += 1
        if any(a["action"] == "delete" and a["status"] == "succeeded" for a in actions):
            deleted += 1
    latencies = [
        fleet.watch.seen[(s.target.namespace, s.target.pod)] - s.at
        for s in findings.values()
        if (s.target.namespace, s.target.pod) in fleet.watch.seen
    ]
    contained_ms = [r["contained_ms"] for r in records if r.get("contained_ms") is not None]
    handled_ms = [r["duration_ms"] for r in records if r.get("duration_ms") is not None]
    wanted = Counter(s.message_id for s in sent)
    unrecorded = sum(max(0, n - recorded[m]) for m, n in wanted.items())
    held = _held(fleet.subscription)
    dead = _held(fleet.dead_letters)
    lost = sorted(set(findings) - terminal)
    last = order[-1] if order else None
    last_sent = next((s for s in findings.values() if last and s.target == last), None)
    keep_up = (
        fleet.watch.seen.get((last.namespace, last.pod), float("inf")) - last_sent.at
        if last and last_sent
        else float("inf")
    )
    n = len(findings)
    deliveries = len(sent)
    scc_per = scc_calls / n if n else 0.0
    scc_reads_per = scc_reads / n if n else 0.0
    wall_per = sum(handled_ms) / 1000 / n if n else 0.0  # every delivery's handling, per finding
    cpu_per = cpu_s / n if n else 0.0
    return {
        "rate_per_min": rate,
        "findings": n,
        "deliveries": deliveries,
        "duplicates_sent": {k: sum(1 for s in sent if s.kind == k) for k in ("same_finding", "redelivery")},
        "redelivery_http": sorted({s.status for s in sent if s.kind == "redelivery"}, key=str),
        "records": len(records),
        "codes": codes,
        "handled": len(terminal),
        "contained": contained,
        "deleted": deleted,
        "refused_by_budget": budget_refused,
        "lost": len(lost),  # findings without a terminal record (the held and dead-lettered are among them)
        "lost_findings": lost[:20],
        "unrecorded_deliveries": unrecorded,
        "records_by_attempt": {str(k): v for k, v in attempts.items()},
        "emulator_held": len(held),
        "dead_lettered": len(dead),
        "publish_to_isolated_p50_s": _r(percentile(latencies, 50)),
        "publish_to_isolated_p99_s": _r(percentile(latencies, 99)),
        "isolated_seen": len(latencies),
        "receipt_to_contained_p50_ms": _r(percentile(contained_ms, 50)),
        "receipt_to_contained_p99_ms": _r(percentile(contained_ms, 99)),
        "handling_p50_ms": _r(percentile(handled_ms, 50)),
        "last_contained_after_s": _r(keep_up),
        "sustained": not lost and not held and not dead and not unrecorded and keep_up <= KEEP_UP_S,
        "function_cpu_s": round(cpu_s, 2),
        "cpu_s_per_finding": round(cpu_per, 4),
        "cpu_s_per_delivery": round(cpu_s / deliveries, 4) if deliveries else None,
        "wall_s_per_finding": round(wall_per, 4),
        "scc_calls": scc_calls,
        "scc_calls_per_finding": round(scc_per, 3),
        "scc_reads_per_finding": round(scc_reads_per, 3),
        "scc_writes_per_finding": round(scc_per - scc_reads_per, 3),
    }


def _r(value: float | None) -> float | None:
    return None if value is None or value == float("inf") else round(value, 3)


def sizing(measured: dict[str, Any], concurrency: int, target_per_min: float = 1000.0) -> dict[str, Any]:
    """The fleet's needs at ``target_per_min`` from one measured rate's per-finding figures."""
    s = size(
        target_per_min,
        wall_s=measured["wall_s_per_finding"],
        cpu_s=measured["cpu_s_per_finding"],
        scc_reads=measured["scc_reads_per_finding"],
        scc_writes=measured["scc_writes_per_finding"],
        concurrency=concurrency,
    )
    return {
        "findings_per_min": target_per_min,
        "max_instance_request_concurrency": concurrency,
        "instances_by_concurrency": s.by_concurrency,
        "instances_by_cpu": s.by_cpu,
        "instances": s.instances,
        "scc_reads_per_min": s.scc_reads_per_min,
        "scc_writes_per_min": s.scc_writes_per_min,
        "scc_quota_share": s.scc_quota_share,
        "scc_quota_holds": s.quota_holds,
        "scc_quota_rate_per_min": quota_rate(measured["scc_reads_per_finding"], measured["scc_writes_per_finding"]),
    }


def terraform_concurrency() -> int:
    """The module's default ``max_instance_request_concurrency`` (terraform/variables.tf)."""
    import re

    text = (ROOT / "terraform" / "variables.tf").read_text()
    block = text.split('variable "max_instance_request_concurrency"', 1)[1]
    match = re.search(r"default\s*=\s*(\d+)", block)
    assert match, "terraform/variables.tf: max_instance_request_concurrency has no default"
    return int(match.group(1))


# ------------------------------------------------------------------------------------------------------ the setup
@contextlib.contextmanager
def fleet_world(bench: Bench, state: dict[str, Any]) -> Iterator[Fleet]:
    """The fronts, the GKE fake's 50 clusters, the metadata server, the emulator, the function and the watch."""
    from bench.cold import MetadataServer
    from tests.support.ffserver import start_function_server
    from tests.support.pubsub_emulator import create_pull_subscription, create_topic, running_emulator

    admin = bench.admin
    own = _own_namespaces(admin, state["responder_identity"])
    guard = guard_for_fleet(admin)
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
    with contextlib.ExitStack() as stack:
        stack.enter_context(guard)
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
            bench.fake.add_cluster(
                cluster,
                endpoint=f"127.0.0.1:{ports[cluster]}",
                ca_certificate=ca_b64,
                datapath_provider="ADVANCED_DATAPATH",
            )
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
        topic = create_topic(project="worm-sec")
        dead_topic = create_topic(project="worm-sec")
        dead_letters = create_pull_subscription(dead_topic)
        # RSR_FLEET_DEAD_LETTER=0: without the dead-letter policy (to tell the emulator's push stall apart from it).
        dead_letter = os.environ.get("RSR_FLEET_DEAD_LETTER", "1") != "0"
        subscription = create_pull_subscription(
            topic,
            push_config={"push_endpoint": server.url + "/"},
            ack_deadline_seconds=60,
            **(
                {"dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}}
                if dead_letter
                else {}
            ),
        )
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


def measure_fleet(
    bench: Bench, state: dict[str, Any], rates: list[float], seconds: float = FLEET_SECONDS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rates in turn, highest first, until one is sustained; a warm-up round of one finding per cluster first
    (the function's imports and each cluster's connection: a fleet's instances are warm by the worm's minute)."""
    from kubernetes import client

    details: dict[str, Any] = {"fleet": {"clusters": len(clusters()), "seconds": seconds, "rates": []}}
    concurrency = terraform_concurrency()
    with fleet_world(bench, state) as fleet:
        warm = run_rate(fleet, 300, "warm", len(clusters()) / 5)  # one per cluster, 10 s
        details["fleet"]["warmup"] = {k: v for k, v in warm.items() if k != "namespaces"}
        found: dict[str, Any] | None = None
        for i, rate in enumerate(rates):
            result = run_rate(fleet, rate, f"r{i}", seconds)
            core = client.CoreV1Api(bench.admin)
            for ns in result.pop("namespaces"):
                with contextlib.suppress(client.ApiException):
                    core.delete_namespace(ns, propagation_policy="Background")
            log(
                f"fleet at {rate:g}/min: {result['findings']} findings, {result['contained']} contained, "
                f"{result['refused_by_budget']} refused by a budget, {result['lost']} lost, p50/p99 "
                f"{result['publish_to_isolated_p50_s']}/{result['publish_to_isolated_p99_s']} s, last after "
                f"{result['last_contained_after_s']} s: {'sustained' if result['sustained'] else 'NOT sustained'}"
            )
            details["fleet"]["rates"].append(result)
            if result["sustained"]:
                found = result
                break
        for ns in warm.pop("namespaces"):
            with contextlib.suppress(client.ApiException):
                client.CoreV1Api(bench.admin).delete_namespace(ns, propagation_policy="Background")
    details["fleet"]["front"] = bench.state.get("fleet_front")
    figures: dict[str, Any] = {}
    measured = found or details["fleet"]["rates"][-1]
    figures["fleet_rate_per_min"] = measured["rate_per_min"]
    figures["fleet_sustained"] = measured["sustained"]
    for key in (
        "findings",
        "contained",
        "refused_by_budget",
        "lost",
        "publish_to_isolated_p50_s",
        "publish_to_isolated_p99_s",
        "cpu_s_per_finding",
        "scc_calls_per_finding",
    ):
        figures[f"fleet_{key}"] = measured[key]
    details["fleet"]["sizing"] = {
        "at_1000_per_min": sizing(measured, concurrency),
        "at_measured_rate": sizing(measured, concurrency, measured["rate_per_min"]),
    }
    figures["fleet_instances_at_1000"] = details["fleet"]["sizing"]["at_1000_per_min"]["instances"]
    figures["fleet_scc_quota_share_at_1000"] = details["fleet"]["sizing"]["at_1000_per_min"]["scc_quota_share"]
    return figures, details
