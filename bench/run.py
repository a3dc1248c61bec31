"""`make bench`: every figure measured side by side in one run; writes bench/results.json and prints a table.

What is measured, and how (L = 50 ms, the injected latency of every remote call):

- ``import_main_s``, ``import_floor_s`` (functions_framework + pydantic), ``import_eager_s`` (every runtime SDK imported
  up front), ``python_startup_s`` (``python -c pass``): median wall time of ``python -c "import ..."`` in fresh
  processes, cwd = repository root, runs interleaved, bytecode cached (one warm-up run each first).
  ``import_main_nocache_s``: the same for a copy of main.py + responder/ without cached bytecode.
- ``cold_to_isolated_s``: a fresh process (``bench/probe.py first-event``), from just before ``import main`` to the
  moment the apiserver has accepted the isolating writes (deny-all, every exclusion, the quarantine label: seen by a
  watch on the apiserver, bench/cold.py), for one event through ``main.handle_finding`` on the GKE path: the cluster
  looked up through the GKE wire fake (anonymous credentials), the bearer token from Application Default Credentials
  (a local metadata server, as on Cloud Functions), pods on the local apiserver, no added latency. Median of
  ``COLD_SAMPLES`` after one warm-up process (which writes the bytecode a deployed instance has).
  ``cold_to_isolated_L``: the same with L on every remote call (the apiserver through the latency proxy), in L.
- ``peer_import_s``: Cloud Custodian's ``import c7n_gcp.handler`` in its own virtual environment (``.venv-peer``,
  created by the bench on first use), median of fresh interpreters, bytecode cached: the import alone of what a user
  would otherwise deploy.
- ``rss_mib``: peak RSS (``VmHWM``) of those cold processes after their first full event (isolate, capture,
  investigation, verification, marks), the highest of the samples; ``first_event_s`` is that event's wall time.
  ``ru_maxrss`` is recorded next to it but on Linux it survives ``execve``, so a process forked from this ~100 MiB one
  would report at least that (see bench/probe.py).
- ``rss_100_concurrent_mib``: the same, with 100 distinct events in flight at once (one thread each, as
  functions-framework's threaded server would run them), at latency L so that they really overlap.
- ``containment_L``: from the call into ``Responder.respond`` to the moment the pod is isolated, in multiples of L.
  Every remote call pays L: the Google wire fakes wait ``latency_s`` = L before answering, and the kube-apiserver is
  reached through ``bench/latency_proxy.py`` (in a process of its own, with microsecond timers), which delays every
  client→server chunk by L. "Isolated" is read off the
  writes themselves: a wrapper around the KubePort (:class:`TimedKube`, the responder code is untouched) timestamps
  every acknowledged write, and the pod is isolated when the last of these has been acknowledged: the deny-all policy
  exists (created, or 409 because it already did), every allowing policy that selects the pod has its NotIn
  exclusion, and the pod carries the quarantine label. Each sample is a fresh namespace (1 Deployment, an allow-all,
  an allow-app and a non-selecting policy): the first incident in a namespace, the worst realistic case. Median of
  the samples, after one warm-up event (connections open, SDKs imported). ``containment_warm_ns_L``: a second pod in
  a namespace that already has the deny-all policy and exclusions.
- ``baseline_containment_L``: the same measurement for :class:`NaiveSequential`, a script-level pipeline built from
  the same adapters and parts (``Investigator``, ``PolicyEngine``, the action registry) in the naive order "enrich
  everything, then act": parse + triage → connect → ``Investigator.investigate`` (all branches, which run
  concurrently among themselves, to completion) → plan on the investigated pod → run the plan's steps in order
  (label, isolate, capture) → security marks. Samples alternate with the responder's, on identical namespaces.
- ``time_to_cut_ms``, ``time_to_cut_floor_ms``, ``time_to_cut_floor2_ms`` (and ``_L_ms``): bench/cut.py, on the
  node only: the responder, the one-round floor (deny-all and label at once) and the two-round floor of the safe
  order (pod read ∥ deny-all, then the label), taking turns shell by shell. ``python -m bench.run cut``: alone.
- ``cold_profile`` (a detail): one more fresh process, profiled from ``import main`` to its first isolating write
  (bench/coldprofile.py): the modules imported before it (``-X importtime``) and the functions sampled. Not timed.
  ``python -m bench.run cold [--before DIR]``: the cold path alone at the API, two checkouts taking turns.
- ``containment_floor_L``: the same measurement for :class:`TwoRounds`, a client that makes exactly the two rounds
  isolation takes (pod read, policies, deny-all; then exclusions and label) and nothing else, through the same
  adapter and proxy, on identical namespaces, its samples interleaved with the others. It is what two rounds cost on
  this machine (the apiserver's own work, TLS, the relay): no responder can be faster, and
  ``containment_L / containment_floor_L`` is what the responder's own work adds.
- ``full_over_slowest_branch``: the responder's total handling time (wall time of ``respond``) divided by its slowest
  enrichment branch (``Outcome.investigation.branches[*].duration_ms``), at latency L; median of the samples.
- ``ignore_per_s``: events/s through ``Responder.respond`` in one process, with a thread pool the size of
  functions-framework's gunicorn default (4 threads per CPU), for the ignore path: INACTIVE findings and the echo SCC
  sends after our own security-marks write-back. ``full_per_s``: 100 distinct findings on 100 fresh pods, full
  handling (isolate + capture + investigation + marks), no latency. ``duplicate_per_s``: the same 100 findings
  delivered again to the instance that handled them.
- ``duplicate_cost_ratio``: CPU seconds (``time.process_time``, every thread) of those 100 redeliveries over those of
  the 100 first deliveries. ``duplicate_other_instance_cost_ratio``: the redeliveries reaching another warm instance
  that never saw the findings, which presumes them new and recognises them after the pod read (its pools are drained
  before CPU is read, so the work it abandons is counted).

- ``full_event_ms``, ``full_event_cpu_ms`` and ``redelivery_ms``, ``redelivery_cpu_ms``: a first delivery
  (``deliveryAttempt`` 1, a fresh pod in a fresh namespace: isolation, capture, investigation, verification, marks) and
  the same message delivered again (same message id, ``deliveryAttempt`` 2) to the same warm instance once the first
  has converged; wall time of ``Responder.respond`` and CPU seconds of the process that handled it
  (``time.process_time``, every thread), no added latency, median of ``REDELIVERY_SAMPLES`` pairs after one warm-up
  pair. ``redelivery_cpu_ratio``: the median redelivery's CPU over the median full event's. ``full_event_L``,
  ``redelivery_L``: the same wall times with L on every remote call (in L). ``scc_calls_full``,
  ``scc_calls_redelivery``: the SCC requests each delivery made, counted at the wire fake by the finding's id (reads,
  marks and state writes alike); ``kube_reads_*``, ``kube_writes_*``: its KubePort calls (:class:`TimedKube`), reads
  (get, list, log) and writes (create, patch, set, replace, update, delete). ``scc_calls_resume``: the redelivery of
  a finding whose first delivery met SCC refusing the verification read (one 403: isolation kept, retry);
  ``scc_calls_refuted``: a forged message (a name SCC does not know), isolated, refuted, rolled back.
  With ``--before DIR`` (``make bench BEFORE=DIR``: a worktree of an earlier commit), the same figures for that
  commit's ``responder`` package, suffixed ``_before``: each commit in a worker process of its own, the same harness,
  fake and apiserver, the two taking turns event by event. ``python -m bench.run redelivery [--before DIR]`` measures
  these alone, on the control plane alone when no cluster runs (no kubelet; the pods stay Pending, as here anyway).

- ``fleet_*``: the worm at fleet scale, ``python -m bench.run fleet [--rates 1000,600,400,250,150] [--seconds 60]``
  (bench/fleet.py; in ``make bench``'s run too, last: a minute per rate tried, plus seeding and draining).
  50 clusters as the GKE wire fake names them, all on the one local apiserver, each with its own namespaces and its
  own responder namespace (budget Lease, quarantined identities) behind a per-cluster TLS front
  (bench/fleet_front.py); the real functions-framework server running ``main.handle_finding`` on the GKE path, the
  Pub/Sub emulator pushing to it, RESPONDER_FLEET listing the 50. Distinct findings at each rate for ``--seconds``,
  SCC (the fake) vouching for each, with duplicates mixed in (the same finding published twice; redeliveries of the
  same message with ``deliveryAttempt`` 2), stepping down until a rate is sustained (nothing lost, the last finding
  contained within 15 s of its publishing). Per rate: findings handled, contained, refused by a budget, lost (no
  terminal record, still held by the emulator, or dead-lettered); publish → isolated p50/p99 (a watch on the
  apiserver: the quarantine label); CPU seconds of the function's process tree and SCC calls per finding; and from
  those the Cloud Run instances and SCC quota share at 1,000 a minute (bench/sizing.py).

Where each is measured: bench/imports.py, bench/cold.py (the cold path, memory, the peer), bench/containment.py,
bench/throughput.py, bench/cut.py (time to cut a live shell), bench/redelivery.py (redeliveries, SCC calls);
bench/cluster.py seeds the namespaces, bench/timing.py times the KubePort calls, bench/baselines.py holds the naive
baseline and the floor, bench/report.py the table.

The responder-driving measurements run in a worker process of their own (``python -m bench.run worker ...``) so that
the fakes' threads in this process do not share its interpreter lock (nor does the proxy, which has its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import Bench, Seeder, Shop, apply_rbac, local_cluster
from bench.cold import measure_cold_path, peer_import
from bench.common import (
    COLD_SAMPLES,
    CONTAINMENT_SAMPLES,
    IMPORT_RUNS,
    L_S,
    POLICY,
    RESULTS,
    ROOT,
    WORKERS,
    _median3,
    log,
)
from bench.containment import measure_containment, worker_containment
from bench.cut import measure_time_to_cut, worker_cut
from bench.imports import measure_imports
from bench.redelivery import (
    DeliveryWorker,
    RedeliveryShops,
    all_shops,
    code_roots,
    measure_redelivery,
    seed_redelivery,
)
from bench.report import notes, ratios, results_of, table, with_previous
from bench.throughput import measure_throughput, worker_throughput
from bench.workers import serve

WORKER_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "containment": worker_containment,
    "throughput": worker_throughput,
    "cut": worker_cut,
}
SERVED: dict[str, Callable[[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "redelivery": DeliveryWorker,
}


@dataclass(frozen=True)
class Shops:
    """The namespaces every measurement acts on, seeded up front."""

    samples: list[Shop]  # containment: warm-up, responder, baseline and floor samples
    tput: Shop
    tput_warm: Shop
    concurrent: Shop
    cold: list[Shop]
    redelivery: RedeliveryShops


def seed(seeder: Seeder, details: dict[str, Any], commits: list[str]) -> Shops:
    log("seeding namespaces, deployments and policies")
    redelivery = seed_redelivery(seeder, commits)
    samples = [seeder.shop("c", 1, 2) for _ in range(3 * CONTAINMENT_SAMPLES + 3)]
    tput, tput_warm = seeder.shop("tput", 10, 10), seeder.shop("tputw", 1, 1)
    concurrent_shop = seeder.shop("rss100", 10, 10)
    cold_shops = [seeder.shop("cold", 1, 1, running=True) for _ in range(2 + 2 * COLD_SAMPLES)]  # + the profiled one
    seeder.wait([*samples, tput_warm, *all_shops(redelivery)], 1)
    try:
        seeder.wait(cold_shops, 1, timeout_s=120, running=True)
        details["cold_pods"] = "running on the local node: capture execs ps and tails the log"
    except AssertionError as exc:  # no node here: the pods exist, Pending, and capture has nothing to exec in
        log(f"WARNING: the cold-path pods did not run ({exc}); their first event execs nothing")
        details["cold_pods"] = f"Pending ({exc})"
        seeder.wait(cold_shops, 1)
    seeder.wait(samples, 2)
    seeder.wait([tput, concurrent_shop], 10)
    return Shops(samples, tput, tput_warm, concurrent_shop, cold_shops, redelivery)


def open_bench(stack: contextlib.ExitStack, state: dict[str, Any], tmp: Path, details: dict[str, Any]) -> Bench:
    """Clients, the responder's RBAC, the Google wire fake and the latency proxy; each closed by ``stack``."""
    from kubernetes import config

    from bench.latency_proxy import ProxyProcess
    from tests.support.google_fakes import GoogleFake

    admin = config.new_client_from_config(config_file=state["kubeconfig"])
    responder_api = config.new_client_from_config(config_file=state["responder_kubeconfig"])
    stack.callback(admin.close)
    stack.callback(responder_api.close)
    apply_rbac(admin, responder_api, state["responder_identity"])
    direct_kc = Path(state["responder_kubeconfig"])
    fake = GoogleFake().start()
    stack.callback(fake.stop)
    proxy = ProxyProcess(direct_kc, tmp / "responder-via-proxy.kubeconfig", latency_s=L_S).start()
    stack.callback(lambda: details.setdefault("proxy", proxy.stop()))
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(POLICY)
    return Bench(admin, fake, tmp, policy_file, direct_kc, proxy.kubeconfig, proxy.port, state)


def measure(tmp: Path, before: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything, in one run (``before``: an earlier commit's worktree, for the redelivery figures). Returns
    (figures, details)."""
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}

    log("imports: fresh interpreters")
    imports, details["imports"] = measure_imports()
    figures.update(imports)
    log("the peer: Cloud Custodian's `import c7n_gcp.handler` in its own environment")
    peer, details["peer_import"] = peer_import(log, IMPORT_RUNS)
    if peer is not None:
        figures["peer_import_s"] = peer

    with local_cluster() as state, contextlib.ExitStack() as stack:
        bench = open_bench(stack, state, tmp, details)
        seeder = Seeder(bench.admin)
        stack.callback(seeder.cleanup)
        shops = seed(seeder, details, list(code_roots(before)))
        phases: list[Callable[[], tuple[dict[str, Any], dict[str, Any]]]] = [
            lambda: measure_containment(bench, shops.samples),
            lambda: measure_cold_path(bench, shops.cold, shops.concurrent),
            lambda: measure_throughput(bench, shops.tput, shops.tput_warm),
            lambda: measure_redelivery(bench, shops.redelivery, before),
        ]
        for phase in phases:
            phase_figures, phase_details = phase()
            figures.update(phase_figures)
            details.update(phase_details)
        # time to cut a live reverse shell, at the socket
        if state.get("mode") == "node":
            cut, details["time_to_cut"] = measure_time_to_cut(bench)
            figures.update(cut)
        else:
            details["time_to_cut"] = "not measured: no node (needs root)"
        # the worm at fleet scale, last: it widens the admission guard to 50 responder namespaces while it runs
        from bench.fleet import measure_fleet

        fleet, found = measure_fleet(bench, state, list(FLEET_RATES))
        figures.update(fleet)
        details.update(found)
    details["throughput_workers"] = WORKERS
    return figures, details


def measure_redelivery_alone(tmp: Path, before: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The redelivery figures alone, at the API: a healthy cluster if one runs, else the control plane alone."""
    details: dict[str, Any] = {}
    with local_cluster(node=False) as state, contextlib.ExitStack() as stack:
        bench = open_bench(stack, state, tmp, details)
        seeder = Seeder(bench.admin)
        stack.callback(seeder.cleanup)
        log("seeding namespaces, deployments and policies")
        shops = seed_redelivery(seeder, list(code_roots(before)))
        seeder.wait(all_shops(shops), 1)
        figures, found = measure_redelivery(bench, shops, before)
    details.update(found)
    details["cluster"] = state.get("mode")
    return figures, details


def measure_cold_alone(tmp: Path, before: Path | None, samples: int = 7) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cold path alone, at the API (the pods stay Pending without a node: capture execs nothing): fresh processes
    of this checkout and, with ``before``, of an earlier commit's worktree, taking turns; then one profiled process
    each (bench/coldprofile.py). ``cold_to_isolated_s`` (and ``_before``): the median of ``samples`` each."""
    from bench.cluster import kube_access
    from bench.cold import PeerBeside, measure_cold

    details: dict[str, Any] = {}
    roots = (ROOT,) if before is None else (ROOT, before.resolve())
    with local_cluster(node=False) as state, contextlib.ExitStack() as stack:
        bench = open_bench(stack, state, tmp, details)
        seeder = Seeder(bench.admin)
        stack.callback(seeder.cleanup)
        log("seeding namespaces, deployments and policies")
        shops = [seeder.shop("cold", 1, 1) for _ in range(len(roots) * (samples + 2))]
        seeder.wait(shops, 1)
        access = kube_access(bench.direct_kc)
        log(f"cold path alone: {samples} fresh processes per checkout, taking turns (one warm-up each first)")
        measure_cold(bench, access, 0.0, shops[: len(roots)], roots=roots)
        peer = PeerBeside()
        ran = measure_cold(
            bench, access, 0.0, shops[len(roots) : len(roots) * (samples + 1)], roots=roots, between=peer
        )
        profiled = measure_cold(bench, access, 0.0, shops[len(roots) * (samples + 1) :], profile=True, roots=roots)
    figures: dict[str, Any] = {}
    figures["peer_import_s"] = peer.figure()  # taken between the cold samples: what the ratio is against
    details["peer_import_beside_cold_s"] = [round(x, 3) for x in peer.samples]
    for root, suffix in zip(roots, ("", "_before"), strict=False):
        mine = [c for c in ran if c["root"] == str(root)]
        figures[f"cold_to_isolated_s{suffix}"] = _median3([c["cold_to_isolated_s"] for c in mine])
        figures[f"cold_import_s{suffix}"] = _median3([c["import_s"] for c in mine])
        details[f"cold{suffix}"] = mine
        details[f"cold_profile{suffix}"] = next(p.get("profile") for p in profiled if p["root"] == str(root))
    details["cluster"] = state.get("mode")
    return figures, details


def measure_cut_alone(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """time_to_cut alone (bench/cut.py): the responder and both floors, with and without L, on the local node."""
    details: dict[str, Any] = {}
    with local_cluster() as state, contextlib.ExitStack() as stack:
        bench = open_bench(stack, state, tmp, details)
        figures, found = measure_time_to_cut(bench)
    details["time_to_cut"] = found
    return figures, details


FLEET_RATES = (1000.0, 600.0, 400.0, 250.0, 150.0)  # findings a minute, stepped down until one is sustained


def measure_fleet_alone(tmp: Path, rates: list[float], seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The worm at fleet scale (bench/fleet.py), at the API: a healthy cluster if one runs, else the control plane."""
    from bench.fleet import measure_fleet

    details: dict[str, Any] = {}
    with local_cluster(node=False) as state, contextlib.ExitStack() as stack:
        bench = open_bench(stack, state, tmp, details)
        figures, found = measure_fleet(bench, state, rates, seconds)
    details.update(found)
    details["cluster"] = state.get("mode")
    return figures, details


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run`` (everything), or ``python -m bench.run worker NAME SPEC OUT`` (internal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "command", nargs="?", default="all", choices=("all", "redelivery", "cold", "cut", "fleet", "worker", "serve")
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--before", type=Path, help="an earlier commit's worktree: its redelivery figures too")
    parser.add_argument("--rates", help="fleet: findings a minute to try, highest first (comma-separated)")
    parser.add_argument("--seconds", type=float, default=60.0, help="fleet: how long the worm runs at each rate")
    args = parser.parse_args(argv)
    if args.command == "worker":
        name, spec_path, out_path = args.args
        spec = json.loads(Path(spec_path).read_text())
        Path(out_path).write_text(json.dumps(WORKER_FUNCTIONS[name](spec), default=str))
        return 0
    if args.command == "serve":
        name, spec_path = args.args
        return serve(SERVED[name], spec_path)

    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="rsr-bench-") as tmp:
        if args.command == "redelivery":
            figures, details = measure_redelivery_alone(Path(tmp), args.before)
        elif args.command == "fleet":
            rates = [float(r) for r in args.rates.split(",")] if args.rates else list(FLEET_RATES)
            figures, details = measure_fleet_alone(Path(tmp), rates, args.seconds)
        elif args.command == "cold":
            figures, details = measure_cold_alone(Path(tmp), args.before)
        elif args.command == "cut":
            figures, details = measure_cut_alone(Path(tmp))
        else:
            figures, details = measure(Path(tmp), args.before)
    results = results_of(figures, details, started, load_at_start)
    if args.command != "all":  # a part alone: the other figures stay as the last run left them, each run named
        results = with_previous(results, json.loads(RESULTS.read_text()) if RESULTS.exists() else None, args.command)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(figures, ratios(figures), WORKERS, notes(figures, details)))  # this run's figures
    print(
        f"\nwritten: {RESULTS.relative_to(ROOT)} ({results['duration_s']} s; load average "
        f"{load_at_start[0]:g} -> {results['host']['load_average_at_end'][0]:g} on {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
