"""A converged redelivery against the full event, and SCC calls per finding, for this checkout and (optionally) an
earlier commit's, side by side in one run (see bench/run.py for the figures' definitions).

Each commit's responder runs in a worker process of its own that stays up (:class:`~bench.workers.Served`): the
same harness, the same Google wire fake, the same apiserver, the same kind of fresh namespace; only the ``responder``
package differs (the earlier commit's worktree is put first on the worker's sys.path). The two workers take turns
event by event, each taking each place in turn. Per delivery, the worker reports its wall time, its process CPU
(``time.process_time``: every thread of the process that handled it) and its KubePort calls (:class:`TimedKube`);
this process counts the SCC calls at the wire fake, by the finding's id in the request's path or filter.

The scenarios, every one on a pod of its own in a fresh namespace (1 Deployment, an allow-all, an allow-web0 and a
non-selecting policy), the finding vouched for by SCC unless said otherwise:

- ``full``: the first delivery (``deliveryAttempt`` 1): isolation, capture, investigation, verification, marks;
- ``redelivery``: the same message again (same message id, ``deliveryAttempt`` 2) once ``full`` has converged;
- ``resume``: the first delivery meets SCC refusing the verification read (one 403, not retried by the client), so
  it keeps the isolation and asks to be retried; the same message with ``deliveryAttempt`` 2 then finishes the job;
- ``refuted``: a forged message (a name SCC does not know), delivered once: isolated (fail safe), refuted, rolled
  back.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import Bench, Seeder, Shop, finding_doc, verify_isolated
from bench.common import L_S, REDELIVERY_SAMPLES, RESUME_SAMPLES, ROOT, _median, log
from bench.timing import Call, TimedConnector, Timeline, _deps, _timeline_rows
from bench.workers import Served

THIS, BEFORE = "this", "before"
SUFFIX = {THIS: "", BEFORE: "_before"}  # figure names: this checkout's plain, the earlier commit's with a suffix
LATENCIES = {"0": 0.0, "L": L_S}


# ------------------------------------------------------------------------------------------ the worker's side
class DeliveryWorker:
    """One commit's responder (the production composition root), answering one delivery at a time."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import responder
        from responder.service import Responder

        self.timeline = Timeline()
        deps = _deps(spec)
        deps.connector = TimedConnector(deps.connector, self.timeline)
        self.responder = Responder(deps)
        self.code = str(Path(responder.__file__).resolve().parents[1])
        self.returned = time.monotonic()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "hello":
            return {"code": self.code}
        return self.deliver(request)

    def deliver(self, request: dict[str, Any]) -> dict[str, Any]:
        from responder.intake.envelope import Delivery

        delivery = Delivery(
            payload=json.dumps(request["doc"]).encode(),
            shape="bench",
            message_id=request["message_id"],
            delivery_attempt=request["attempt"],
        )
        late = self.timeline.started_between(self.returned, time.monotonic())  # after the last one had returned
        t0, cpu0 = time.monotonic(), time.process_time()
        outcome = self.responder.respond(delivery)
        cpu, t1 = time.process_time() - cpu0, time.monotonic()
        self.returned = t1
        calls = self.timeline.started_between(t0, t1)
        record = outcome.record
        return {
            "wall_s": t1 - t0,
            "cpu_s": cpu,
            "kube": kube_counts(calls),
            "kube_methods": sorted(c.method for c in calls),
            "kube_timeline_ms": _timeline_rows(calls, t0, 0.001),  # [start, end, method, kind, outcome]
            "late_kube_calls": len(late),
            "code": record.code,
            "reason": record.reason,
            "outcome": record.outcome,
            "actions": {a.action: a.status.value for a in record.actions},
        }


def kube_counts(calls: list[Call]) -> dict[str, int]:
    """KubePort calls by kind: reads (get, list, log, API discovery), writes (create, patch, set, replace, update,
    delete), exec."""
    counts = {"reads": 0, "writes": 0, "exec": 0}
    reads = ("get_", "list_", "read_", "served_")  # served_group_versions: discovery (cached by the adapter)
    for c in calls:
        kind = "exec" if c.method == "exec" else "reads" if c.method.startswith(reads) else "writes"
        counts[kind] += 1
    return counts


# ------------------------------------------------------------------------------------------ this process's side
def scc_calls(fake: Any, finding_id: str) -> dict[str, int]:
    """SCC requests the wire fake received about one finding: reads (the list by name), marks writes, state writes."""
    counts = {"reads": 0, "marks": 0, "state": 0}
    for r in fake.requests_to(path="*/sources/*"):
        if finding_id not in r.path and not any(finding_id in f for f in r.query.get("filter", [])):
            continue
        kind = "reads" if r.method == "GET" else "marks" if r.path.endswith("/securityMarks") else "state"
        counts[kind] += 1
    return counts


@dataclass(frozen=True)
class Run:
    """One worker and what the deliveries act on."""

    bench: Bench
    worker: Served

    def deliver(self, doc: dict[str, Any], attempt: int, message_id: str) -> dict[str, Any]:
        """One delivery through the worker, with the SCC calls it made (counted at the fake) added to its reply."""
        finding_id = doc["finding"]["name"].rsplit("/", 1)[1]
        before = scc_calls(self.bench.fake, finding_id)
        reply = self.worker.call({"op": "deliver", "doc": doc, "attempt": attempt, "message_id": message_id})
        after = scc_calls(self.bench.fake, finding_id)
        reply["scc"] = {k: after[k] - before[k] for k in after}
        reply["scc"]["total"] = sum(reply["scc"].values())
        return reply

    def pair(self, shop: Shop) -> dict[str, Any]:
        """A full event, then the same message again once it has converged."""
        event = self.bench.event(shop, "web0", 0, "rd")
        message_id = uuid.uuid4().hex[:16]
        full = self.deliver(event["doc"], 1, message_id)
        again = self.deliver(event["doc"], 2, message_id)
        return {"namespace": shop.namespace, "event": event, "full": full, "redelivery": again}

    def resume(self, shop: Shop) -> dict[str, Any]:
        """SCC refuses the first delivery's verification read (403, once); the redelivery finishes the job."""
        fake = self.bench.fake
        event = self.bench.event(shop, "web0", 0, "rs")
        message_id = uuid.uuid4().hex[:16]
        injected = fake.faults_injected
        fake.fail_next(1, status=403, path="*/findings")
        first = self.deliver(event["doc"], 1, message_id)
        refused = fake.faults_injected - injected
        with fake._lock:  # an unconsumed rule must not hit the next delivery, whoever makes it
            fake._rules.clear()
        again = self.deliver(event["doc"], 2, message_id)
        return {"namespace": shop.namespace, "scc_refused": refused, "first": first, "redelivery": again}

    def refuted(self, shop: Shop) -> dict[str, Any]:
        """A forged message: SCC does not know the name."""
        doc = finding_doc(shop.namespace, shop.pods["web0"][0], f"rf{uuid.uuid4().hex[:12]}")
        return {"namespace": shop.namespace, "refuted": self.deliver(doc, 1, uuid.uuid4().hex[:16])}


# ------------------------------------------------------------------------------------------ the measurement
@dataclass(frozen=True)
class RedeliveryShops:
    """Fresh namespaces per commit: a warm-up and the pairs per latency, and the resume and refuted samples."""

    pairs: dict[tuple[str, str], list[Shop]]  # (commit, latency) -> warm-up + REDELIVERY_SAMPLES
    resume: dict[str, list[Shop]]
    refuted: dict[str, list[Shop]]


def seed_redelivery(seeder: Seeder, commits: list[str]) -> RedeliveryShops:
    """Creates the namespaces (waited for by the caller: :meth:`Seeder.wait` with 1 replica)."""
    pairs = {
        (c, lat): [seeder.shop("rd", 1, 1) for _ in range(1 + REDELIVERY_SAMPLES)] for c in commits for lat in LATENCIES
    }
    resume = {c: [seeder.shop("rs", 1, 1) for _ in range(RESUME_SAMPLES)] for c in commits}
    refuted = {c: [seeder.shop("rf", 1, 1) for _ in range(RESUME_SAMPLES)] for c in commits}
    return RedeliveryShops(pairs, resume, refuted)


def all_shops(shops: RedeliveryShops) -> list[Shop]:
    return [s for group in (*shops.pairs.values(), *shops.resume.values(), *shops.refuted.values()) for s in group]


def code_roots(before: Path | None) -> dict[str, Path]:
    """The checkouts measured: this one, and the earlier commit's worktree when given."""
    return {THIS: ROOT, **({BEFORE: before.resolve()} if before is not None else {})}


def _turns(commits: list[str], i: int) -> list[str]:
    """Each commit takes each place in turn: nobody always runs right after the other."""
    shift = i % len(commits)
    return commits[shift:] + commits[:shift]


def _phase(bench: Bench, roots: dict[str, Path], shops: RedeliveryShops, latency: str) -> dict[str, Any]:
    """One latency: a worker per commit, warmed up, then the pairs (and without latency the resume and refuted
    samples), the commits taking turns."""
    bench.fake.latency_s = LATENCIES[latency]
    kubeconfig = bench.direct_kc if latency == "0" else bench.proxy_kc
    commits = list(roots)
    out: dict[str, Any] = {c: {"pairs": [], "resume": [], "refuted": []} for c in commits}
    with contextlib.ExitStack() as stack:
        runs: dict[str, Run] = {}
        for c in commits:
            spec = {"settings": bench.settings(kubeconfig), "code_root": str(roots[c])}
            worker = Served("redelivery", spec, bench.tmp, f"{c}-{latency}")
            stack.callback(worker.close)
            out[c]["code"] = worker.hello["code"]
            runs[c] = Run(bench, worker)
        for c in commits:
            out[c]["warmup"] = runs[c].pair(shops.pairs[(c, latency)][0])  # connections open, SDKs imported
        for i in range(REDELIVERY_SAMPLES):
            for c in _turns(commits, i):
                out[c]["pairs"].append(runs[c].pair(shops.pairs[(c, latency)][1 + i]))
        if latency == "0":
            for i in range(RESUME_SAMPLES):
                for c in _turns(commits, i):
                    out[c]["resume"].append(runs[c].resume(shops.resume[c][i]))
                    out[c]["refuted"].append(runs[c].refuted(shops.refuted[c][i]))
    return out


def measure_redelivery(
    bench: Bench, shops: RedeliveryShops, before: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The redelivery figures for each commit; returns (figures, details)."""
    roots = code_roots(before)
    log(
        f"redelivery: {REDELIVERY_SAMPLES} full events + converged redeliveries per commit and latency "
        f"(0 and L = {L_S * 1000:.0f} ms), {RESUME_SAMPLES} resumed and refuted; "
        + ", ".join(f"{c}: {p}" for c, p in roots.items())
    )
    phases = {latency: _phase(bench, roots, shops, latency) for latency in LATENCIES}
    bench.fake.latency_s = 0.0
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for commit in roots:
        mine = {latency: phases[latency][commit] for latency in LATENCIES}
        figures.update(_figures(mine, SUFFIX[commit]))
        details[commit] = {"code": mine["0"]["code"], "summary": _summary(mine), "samples": mine}
        verify_isolated(bench.admin, [p["event"] for lat in LATENCIES for p in mine[lat]["pairs"]])
    return figures, {"redelivery": details}


def _figures(mine: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Medians over the samples; the ratios are of the medians."""
    pairs, pairs_l = mine["0"]["pairs"], mine["L"]["pairs"]

    def med(group: list[dict[str, Any]], which: str, get: Any) -> float:
        return _median([get(p[which]) for p in group])

    f: dict[str, Any] = {}
    for which, name in (("full", "full_event"), ("redelivery", "redelivery")):
        f[f"{name}_ms"] = med(pairs, which, lambda d: d["wall_s"] * 1000)
        f[f"{name}_cpu_ms"] = med(pairs, which, lambda d: d["cpu_s"] * 1000)
        f[f"{name}_L"] = med(pairs_l, which, lambda d: d["wall_s"] / L_S)
        short = "full" if which == "full" else "redelivery"
        f[f"scc_calls_{short}"] = med(pairs + pairs_l, which, lambda d: d["scc"]["total"])
        f[f"kube_reads_{short}"] = med(pairs + pairs_l, which, lambda d: d["kube"]["reads"])
        f[f"kube_writes_{short}"] = med(pairs + pairs_l, which, lambda d: d["kube"]["writes"])
    f["redelivery_cpu_ratio"] = round(f["redelivery_cpu_ms"] / f["full_event_cpu_ms"], 3)
    f["scc_calls_resume"] = med(mine["0"]["resume"], "redelivery", lambda d: d["scc"]["total"])
    f["scc_calls_refuted"] = med(mine["0"]["refuted"], "refuted", lambda d: d["scc"]["total"])
    return {f"{k}{suffix}": v for k, v in f.items()}


def _summary(mine: dict[str, Any]) -> dict[str, Any]:
    """What each scenario's deliveries ended in, and the SCC and kube calls by kind (medians), per latency."""

    def shape(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
        codes: dict[str, int] = {}
        for d in deliveries:
            key = f"{d['code']}/{d['outcome']}"
            codes[key] = codes.get(key, 0) + 1
        kinds = {f"scc_{k}": _median([d["scc"][k] for d in deliveries]) for k in ("reads", "marks", "state")}
        kinds.update({f"kube_{k}": _median([d["kube"][k] for d in deliveries]) for k in ("reads", "writes", "exec")})
        late = sum(d["late_kube_calls"] for d in deliveries)
        return {"codes": codes, **kinds, "late_kube_calls": late, "kube_methods": deliveries[0]["kube_methods"]}

    out: dict[str, Any] = {}
    for latency in LATENCIES:
        pairs = mine[latency]["pairs"]
        out[f"full_{latency}"] = shape([p["full"] for p in pairs])
        out[f"redelivery_{latency}"] = shape([p["redelivery"] for p in pairs])
        out[f"full_cpu_ms_{latency}"] = _median([p["full"]["cpu_s"] * 1000 for p in pairs])
        out[f"redelivery_cpu_ms_{latency}"] = _median([p["redelivery"]["cpu_s"] * 1000 for p in pairs])
    resume, refuted = mine["0"]["resume"], mine["0"]["refuted"]
    out["resume_first"] = shape([r["first"] for r in resume])
    out["resume_redelivery"] = shape([r["redelivery"] for r in resume])
    out["resume_scc_refused"] = [r["scc_refused"] for r in resume]
    out["refuted"] = shape([r["refuted"] for r in refuted])
    return out
