"""Time to containment at latency L: the responder, the naive baseline and the two-rounds floor, interleaved on
identical fresh namespaces (``containment_L``, ``baseline_containment_L``, ``containment_floor_L``,
``containment_warm_ns_L``, ``full_over_slowest_branch``; see bench/run.py for how each is defined)."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.baselines import NaiveSequential, TwoRounds
from bench.cluster import Bench, Shop, verify_isolated
from bench.common import CONTAINMENT_SAMPLES, L_S, _median, log
from bench.timing import TimedConnector, Timeline, _deps, _payload, _timeline_rows, critical_rounds
from bench.workers import run_worker


def _isolated_l(isolated: float | None, t0: float, latency: float) -> float | None:
    return None if isolated is None else (isolated - t0) / latency


class ContainmentWorker:
    """The worker process's side: each contender with its own timeline, built from the production composition root."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from responder.service import Responder

        self.latency = spec["latency_s"]
        self.timeline, self.base_timeline, self.floor_timeline = Timeline(), Timeline(), Timeline()
        deps = _deps(spec)
        deps.connector = TimedConnector(deps.connector, self.timeline)
        self.responder = Responder(deps)
        base_deps = _deps(spec)
        base_deps.connector = TimedConnector(base_deps.connector, self.base_timeline)
        self.baseline = NaiveSequential(base_deps)
        self.floor = TwoRounds(TimedConnector(_deps(spec).connector, self.floor_timeline).connect(None).kube)

    def run_responder(self, sample: dict[str, Any]) -> dict[str, Any]:
        latency, timeline = self.latency, self.timeline
        delivery = _payload(sample["doc"])
        t0 = time.monotonic()
        outcome = self.responder.respond(delivery)
        t1 = time.monotonic()
        isolated = timeline.isolated_at(
            t0, sample["namespace"], sample["pod"], sample["policies"], sample.get("policies_ready", False)
        )
        branches = outcome.investigation.branches if outcome.investigation else {}
        slowest = max((b.duration_ms for b in branches.values()), default=0.0)
        return {
            "who": "responder",
            "namespace": sample["namespace"],
            "isolated_L": _isolated_l(isolated, t0, latency),
            "total_L": (t1 - t0) / latency,
            "total_ms": (t1 - t0) * 1000,
            "slowest_branch_ms": slowest,
            "slowest_branch": max(branches, key=lambda k: branches[k].duration_ms) if branches else None,
            "actions": {a.action: a.status.value for a in outcome.record.actions},
            "outcome": outcome.record.outcome,
            "timeline": _timeline_rows(timeline.between(t0, t1), t0, latency),
        }

    def run_baseline(self, sample: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        result = self.baseline.respond(json.dumps(sample["doc"]).encode())
        t1 = time.monotonic()
        isolated = self.base_timeline.isolated_at(t0, sample["namespace"], sample["pod"], sample["policies"])
        return {
            "who": "baseline",
            "namespace": sample["namespace"],
            "isolated_L": _isolated_l(isolated, t0, self.latency),
            "total_L": (t1 - t0) / self.latency,
            "actions": result["actions"],
            "timeline": _timeline_rows(self.base_timeline.between(t0, t1), t0, self.latency),
        }

    def run_floor(self, sample: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        self.floor.contain(sample["namespace"], sample["pod"])
        t1 = time.monotonic()
        isolated = self.floor_timeline.isolated_at(t0, sample["namespace"], sample["pod"], sample["policies"])
        return {
            "who": "floor",
            "namespace": sample["namespace"],
            "isolated_L": _isolated_l(isolated, t0, self.latency),
            "timeline": _timeline_rows(self.floor_timeline.between(t0, t1), t0, self.latency),
        }


def worker_containment(spec: dict[str, Any]) -> dict[str, Any]:
    """Responder and baseline, alternating, one fresh namespace per sample, every remote call delayed by L."""
    worker = ContainmentWorker(spec)
    contenders = (worker.run_responder, worker.run_baseline, worker.run_floor)
    warm = [run(sample) for run, sample in zip(contenders, spec["warmup"], strict=True)]
    samples: list[dict[str, Any]] = []
    for i, trio in enumerate(zip(spec["responder"], spec["baseline"], spec["floor"], strict=True)):
        order = list(zip(contenders, trio, strict=True))
        shift = i % len(order)  # each takes each place in turn: no one always runs right after another
        for fn, sample in order[shift:] + order[:shift]:
            samples.append(fn(sample))
    warm_ns = [worker.run_responder(sample) for sample in spec["warm_namespace"]]
    return {"warmup": warm, "samples": samples, "warm_namespace": warm_ns}


def _spec(bench: Bench, samples: list[Shop]) -> dict[str, Any]:
    event, n = bench.event, CONTAINMENT_SAMPLES
    return {
        "latency_s": L_S,
        "settings": bench.settings(bench.proxy_kc),
        "warmup": [event(s, "web0", 0, "cw") for s in samples[:3]],
        "responder": [event(s, "web0", 0, "cr") for s in samples[3 : 3 + n]],
        "baseline": [event(s, "web0", 0, "cb") for s in samples[3 + n : 3 + 2 * n]],
        "floor": [event(s, "web0", 0, "cf") for s in samples[3 + 2 * n :]],
        "warm_namespace": [{**event(s, "web0", 1, "cn"), "policies_ready": True} for s in samples[3 : 3 + n]],
    }


def _summary(contained: dict[str, Any], mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    def rounds(group: list[dict[str, Any]]) -> float:
        found = [critical_rounds(s["timeline"], s["isolated_L"]) for s in group]
        return _median([r for r in found if r is not None])

    return {
        "rounds_to_containment_responder": rounds(mine),
        "rounds_to_containment_baseline": rounds(theirs),
        "rounds_to_containment_warm_ns": rounds(contained["warm_namespace"]),
        "rounds_to_containment_floor": rounds([s for s in contained["samples"] if s["who"] == "floor"]),
        "responder_total_L": _median([s["total_L"] for s in mine]),
        "baseline_total_L": _median([s["total_L"] for s in theirs]),
        "responder_slowest_branch_L": _median([s["slowest_branch_ms"] / 1000 / L_S for s in mine]),
        "slowest_branches": sorted({s["slowest_branch"] or "" for s in mine}),
        "kube_calls_per_event_responder": _median([len(s["timeline"]) for s in mine]),
        "kube_calls_per_event_baseline": _median([len(s["timeline"]) for s in theirs]),
    }


def measure_containment(bench: Bench, samples: list[Shop]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The containment figures, from a worker process, at latency L; returns (figures, details)."""
    log(f"containment: {CONTAINMENT_SAMPLES} samples each, responder vs naive baseline, L = {L_S * 1000:.0f} ms")
    bench.fake.latency_s = L_S
    spec = _spec(bench, samples)
    contained = run_worker("containment", spec, bench.tmp)
    figures: dict[str, Any] = {}
    mine = [s for s in contained["samples"] if s["who"] == "responder"]
    theirs = [s for s in contained["samples"] if s["who"] == "baseline"]
    missing = [s["namespace"] for s in contained["samples"] if s["isolated_L"] is None]
    if missing:
        log(f"WARNING: not isolated according to the observed writes: {missing}")
    figures["containment_L"] = _median([s["isolated_L"] for s in mine if s["isolated_L"] is not None])
    figures["baseline_containment_L"] = _median([s["isolated_L"] for s in theirs if s["isolated_L"] is not None])
    floors = [s["isolated_L"] for s in contained["samples"] if s["who"] == "floor" and s["isolated_L"] is not None]
    figures["containment_floor_L"] = _median(floors)
    warm_ns = [s["isolated_L"] for s in contained["warm_namespace"] if s["isolated_L"] is not None]
    figures["containment_warm_ns_L"] = _median(warm_ns)
    figures["full_over_slowest_branch"] = _median(
        [s["total_ms"] / s["slowest_branch_ms"] for s in mine if s["slowest_branch_ms"]]
    )
    details = {"containment": contained, "containment_summary": _summary(contained, mine, theirs)}
    verify_isolated(bench.admin, [*spec["responder"], *spec["baseline"], *spec["floor"], *spec["warm_namespace"]])
    return figures, details
