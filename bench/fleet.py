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
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.cluster import Bench
from bench.common import ROOT, log
from bench.fleet_world import (
    DRAIN_S,
    FLEET_SECONDS,
    KEEP_UP_S,
    REDELIVERY_AFTER_S,
    REDELIVERY_SHARE,
    SAME_FINDING_SHARE,
    Fleet,
    Sent,
    Target,
    clusters,
    fleet_world,
    reset_budgets,
    seed,
    tree_cpu_s,
)
from bench.sizing import percentile, quota_rate, size


class _Worm:
    """Publishes the worm's findings (and its duplicates) and keeps what was sent, from several threads."""

    def __init__(self, fleet: Fleet) -> None:
        import requests
        from google.cloud import pubsub_v1

        self.fleet = fleet
        self.publisher = pubsub_v1.PublisherClient()
        self.session = requests.Session()
        self.sent: list[Sent] = []
        self.lock = threading.Lock()

    def keep(self, item: Sent) -> Sent:
        with self.lock:
            self.sent.append(item)
        return item

    def publish(self, doc: dict[str, Any], target: Target, kind: str) -> str:
        """One message to the topic (SCC's notification, as the emulator then pushes it)."""
        at = time.monotonic()
        message_id = str(self.publisher.publish(self.fleet.topic, json.dumps(doc).encode()).result(timeout=30))
        self.keep(Sent(doc["finding"]["name"], message_id, 1, kind, at, target))
        return message_id

    def redeliver(self, doc: dict[str, Any], message_id: str, target: Target) -> None:
        """The same message again, as Pub/Sub's push redelivers it (attempt 2), posted to the function."""
        import requests

        data = base64.b64encode(json.dumps(doc).encode()).decode()
        published = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        message = {"data": data, "messageId": message_id, "publishTime": published, "attributes": {}}
        # The attempt where Pub/Sub's push puts it (beside the message) and inside the message too.
        body = {
            "message": {**message, "deliveryAttempt": 2},
            "subscription": self.fleet.subscription,
            "deliveryAttempt": 2,
        }
        item = self.keep(Sent(doc["finding"]["name"], message_id, 2, "redelivery", time.monotonic(), target))
        try:
            item.status = self.session.post(self.fleet.server.url + "/", json=body, timeout=120).status_code
        except requests.RequestException:
            item.status = -1


def _publish_all(fleet: Fleet, order: list[Target], rate_per_min: float) -> list[Sent]:
    """Publish one finding per target at ``rate_per_min`` (and the duplicates), as the worm spreads."""
    import random

    from tests.notifications import notification

    rng = random.Random(32)
    worm = _Worm(fleet)
    interval = 60.0 / rate_per_min
    timers: list[threading.Timer] = []
    started = time.monotonic()
    for i, target in enumerate(order):
        time.sleep(max(0.0, started + i * interval - time.monotonic()))
        resource = f"//container.googleapis.com/{target.cluster}"
        doc = notification(
            namespace=target.namespace, pod=target.pod, resource=resource, name_suffix=f"w{uuid.uuid4().hex[:20]}"
        )
        fleet.bench.fake.vouch_for(doc)  # SCC knows the finding before it notifies
        message_id = worm.publish(doc, target, "first")
        draw = rng.random()
        if draw < SAME_FINDING_SHARE:
            worm.publish(doc, target, "same_finding")
        elif draw < SAME_FINDING_SHARE + REDELIVERY_SHARE:
            timer = threading.Timer(REDELIVERY_AFTER_S, worm.redeliver, (doc, message_id, target))
            timer.start()
            timers.append(timer)
    for timer in timers:
        timer.join()
    return worm.sent


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


def _held(subscription: str, push_to: str | None = None) -> list[str]:
    """The message ids a subscription still holds: it becomes a pull subscription and is pulled until empty, then,
    with ``push_to``, pushes there again (the next rate of the run uses the same subscription: left in pull mode, it
    would push nothing, which once looked like the emulator stalling)."""
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as sub:
        sub.modify_push_config(request={"subscription": subscription, "push_config": {}})
        held: list[str] = []
        while True:
            got = sub.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
            if not got.received_messages:
                break
            held += [m.message.message_id for m in got.received_messages]
            sub.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in got.received_messages]}
            )
        if push_to is not None:
            config = {"push_endpoint": push_to}
            sub.modify_push_config(request={"subscription": subscription, "push_config": config})
        return held


def run_rate(fleet: Fleet, rate_per_min: float, tag: str, seconds: float) -> dict[str, Any]:
    """``seconds`` of the worm at ``rate_per_min`` distinct findings a minute; returns its figures."""
    total = round(rate_per_min * seconds / 60)
    per_cluster = max(1, -(-total // len(clusters())))
    log(f"fleet {tag}: seeding {len(clusters())} clusters x {per_cluster} pods")
    admin = fleet.bench.admin
    namespaces, targets = seed(admin, tag, per_cluster)
    reset_budgets(admin, fleet.own)
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


@dataclass
class _Ends:
    """How the worm's findings ended, from their records."""

    terminal: set[str]
    contained: int = 0
    budget_refused: int = 0
    deleted: int = 0


def _ends(records: list[dict[str, Any]], findings: dict[str, Sent]) -> _Ends:
    ended: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("finding") in findings:
            ended.setdefault(r["finding"], []).append(r)
    out = _Ends({f for f, rs in ended.items() if any(r["outcome"] in ("done", "not_contained") for r in rs)})
    for rs in ended.values():
        actions = [a for r in rs for a in r.get("actions", [])]
        out.contained += any(a["action"] in ("isolate", "delete") and a["status"] == "succeeded" for a in actions)
        out.budget_refused += any(a["action"] == "delete" and "budget OVER" in a.get("reason", "") for a in actions)
        out.deleted += any(a["action"] == "delete" and a["status"] == "succeeded" for a in actions)
    return out


def _keep_up(fleet: Fleet, order: list[Target], findings: dict[str, Sent]) -> float:
    """How long after its publishing the last finding was seen isolated (inf: never)."""
    last = order[-1] if order else None
    sent = next((s for s in findings.values() if last and s.target == last), None)
    if last is None or sent is None:
        return float("inf")
    return fleet.watch.seen.get((last.namespace, last.pod), float("inf")) - sent.at


def _per_finding(
    cpu_s: float, scc_calls: int, scc_reads: int, wall_s: float, n: int, deliveries: int
) -> dict[str, Any]:
    """CPU, wall time and SCC calls per finding: what the sizing is derived from."""

    def per(x: float) -> float:
        return x / n if n else 0.0

    return {
        "function_cpu_s": round(cpu_s, 2),
        "cpu_s_per_finding": round(per(cpu_s), 4),
        "cpu_s_per_delivery": round(cpu_s / deliveries, 4) if deliveries else None,
        "wall_s_per_finding": round(per(wall_s), 4),  # every delivery's handling, per finding
        "scc_calls": scc_calls,
        "scc_calls_per_finding": round(per(scc_calls), 3),
        "scc_reads_per_finding": round(per(scc_reads), 3),
        "scc_writes_per_finding": round(per(scc_calls) - per(scc_reads), 3),
    }


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
    codes = Counter(f"{r['verdict']}/{r['code']}/{r['outcome']}" for r in records)
    attempts = Counter(r["delivery"].get("delivery_attempt") for r in records)
    findings = {s.finding: s for s in sent if s.kind == "first"}
    ends = _ends(records, findings)
    latencies = [
        fleet.watch.seen[(s.target.namespace, s.target.pod)] - s.at
        for s in findings.values()
        if (s.target.namespace, s.target.pod) in fleet.watch.seen
    ]
    contained_ms = [r["contained_ms"] for r in records if r.get("contained_ms") is not None]
    handled_ms = [r["duration_ms"] for r in records if r.get("duration_ms") is not None]
    unrecorded = sum(max(0, n - recorded[m]) for m, n in Counter(s.message_id for s in sent).items())
    held, dead = _held(fleet.subscription, fleet.server.url + "/"), _held(fleet.dead_letters)
    lost = sorted(set(findings) - ends.terminal)
    keep_up = _keep_up(fleet, order, findings)
    return {
        "rate_per_min": rate,
        "findings": len(findings),
        "deliveries": len(sent),
        "duplicates_sent": {k: sum(1 for s in sent if s.kind == k) for k in ("same_finding", "redelivery")},
        "redelivery_http": sorted({s.status for s in sent if s.kind == "redelivery"}, key=str),
        "records": len(records),
        "codes": dict(codes),
        "handled": len(ends.terminal),
        "contained": ends.contained,
        "deleted": ends.deleted,
        "refused_by_budget": ends.budget_refused,
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
        **_per_finding(cpu_s, scc_calls, scc_reads, sum(handled_ms) / 1000, len(findings), len(sent)),
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
