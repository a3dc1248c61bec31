"""Throughput with no latency (``ignore_per_s``, ``full_per_s``, ``duplicate_per_s``) and the CPU cost of a duplicate
delivery (``duplicate_cost_ratio``, ``duplicate_other_instance_cost_ratio``): see bench/run.py."""

from __future__ import annotations

import time
from typing import Any

from bench.cluster import Bench, Shop, echo_doc, finding_doc, verify_isolated
from bench.common import IGNORE_EVENTS, WORKERS, log
from bench.timing import _deps, _payload
from bench.workers import run_worker


def _run(who: Any, docs: list[dict[str, Any]], workers: int) -> tuple[float, list[Any]]:
    """(wall s, outcomes) of ``docs`` through ``who.respond`` on ``workers`` threads (functions-framework's pool)."""
    from concurrent.futures import ThreadPoolExecutor

    deliveries = [_payload(d) for d in docs]
    with ThreadPoolExecutor(workers, thread_name_prefix="ff") as pool:
        started = time.perf_counter()
        outcomes = list(pool.map(who.respond, deliveries))
        return time.perf_counter() - started, outcomes


def _cpu(who: Any, docs: list[dict[str, Any]], workers: int, drain: bool) -> tuple[float, float, list[Any]]:
    """(wall s, CPU s of the whole process, outcomes); with ``drain``, ``who``'s pools are drained before CPU is read,
    so work an event left running in the background (an abandoned investigation) is counted too."""
    before = time.process_time()
    wall, outcomes = _run(who, docs, workers)
    if drain:
        who.workers.shutdown(wait=True)
        who.coordinators.shutdown(wait=True)
    return wall, time.process_time() - before, outcomes


def _summary(outcomes: list[Any]) -> dict[str, Any]:
    verdicts: dict[str, int] = {}
    isolate: dict[str, int] = {}
    for o in outcomes:
        key = f"{o.record.verdict.value}/{o.record.code}"
        verdicts[key] = verdicts.get(key, 0) + 1
        for a in o.record.actions:
            if a.action == "isolate":
                isolate[a.status.value] = isolate.get(a.status.value, 0) + 1
    return {"verdicts": verdicts, "isolate": isolate, "retry": sum(1 for o in outcomes if o.retry)}


def worker_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    """Events/s through Responder.respond with WORKERS threads: ignore path, full handling, duplicates."""
    from responder.service import Responder

    responder = Responder(_deps(spec))
    workers = spec["workers"]
    _run(responder, spec["warmup"], workers)  # SDK imports, connections, the namespace's deny-all: not steady state
    _run(responder, spec["ignore"][:50], workers)
    ignore_s, ignore_out = _run(responder, spec["ignore"], workers)
    full_s, full_cpu, full_out = _cpu(responder, spec["full"], workers, drain=False)
    dup_s, dup_cpu, dup_out = _cpu(responder, spec["full"], workers, drain=False)  # to the instance that handled them
    # The same redeliveries reaching another (warm) instance, which has not seen these findings: recognised after
    # the pod read, with the investigation it had already started abandoned.
    other = Responder(_deps(spec))
    _run(other, spec["warmup"], workers)
    other_s, other_cpu, other_out = _cpu(other, spec["full"], workers, drain=True)
    return {
        "workers": workers,
        "ignore": {"events": len(ignore_out), "wall_s": ignore_s, **_summary(ignore_out)},
        "full": {"events": len(full_out), "wall_s": full_s, "cpu_s": full_cpu, **_summary(full_out)},
        "duplicate": {"events": len(dup_out), "wall_s": dup_s, "cpu_s": dup_cpu, **_summary(dup_out)},
        "duplicate_other_instance": {
            "events": len(other_out),
            "wall_s": other_s,
            "cpu_s": other_cpu,
            **_summary(other_out),
        },
    }


def measure_throughput(bench: Bench, tput: Shop, tput_warm: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """The throughput figures, from a worker process, no latency; returns (figures, details)."""
    log(f"throughput: {WORKERS} worker threads, no latency")
    bench.fake.latency_s = 0.0
    full = [bench.event(tput, dep, i, "tf") for dep in tput.pods for i in range(10)]
    ignore_docs: list[dict[str, Any]] = []
    for i in range(IGNORE_EVENTS // 2):
        inactive = finding_doc(tput.namespace, full[i % len(full)]["pod"], f"ti{i:06d}", state="INACTIVE")
        ignore_docs += [inactive, echo_doc(full[i % len(full)]["doc"])]
    tspec = {
        "settings": bench.settings(bench.direct_kc),
        "workers": WORKERS,
        "warmup": [bench.event(tput_warm, "web0", 0, "tw")["doc"]],
        "ignore": ignore_docs,
        "full": [e["doc"] for e in full],
    }
    throughput = run_worker("throughput", tspec, bench.tmp)
    figures: dict[str, Any] = {}
    for name in ("ignore", "full", "duplicate"):
        part = throughput[name]
        figures[f"{name}_per_s"] = round(part["events"] / part["wall_s"], 1)
    full_cpu = throughput["full"]["cpu_s"]
    figures["duplicate_cost_ratio"] = round(throughput["duplicate"]["cpu_s"] / full_cpu, 3)
    figures["duplicate_other_instance_cost_ratio"] = round(
        throughput["duplicate_other_instance"]["cpu_s"] / full_cpu, 3
    )
    verify_isolated(bench.admin, full)
    return figures, {"throughput": throughput}
