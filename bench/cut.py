"""``time_to_cut``: from the responder's receipt of a finding to the last answer that reaches the attacker.

Measured on the local node with the NetworkPolicy dataplane in ``established`` mode (tools/node/netpol.py): real
reverse shells (tests/support/reverse_shell.py), one per sample, each to its own attacker pod sending a command every
:data:`INTERVAL_S`. The attacker's container log stamps every answer it gets (CRI timestamps), so "the last answer"
is read where the attacker sits, to within one interval.

Beside it, in the same run and interleaved, two floors through the same adapter and dataplane:

- ``floor`` (one round): a client that only writes the deny-all NetworkPolicy and the quarantine label, both at
  once, the pod read before receipt (what the dataplane itself takes to react: its informers see the writes, its
  conntrack sweep cuts the flow);
- ``floor2`` (two rounds, the safe order, issue 33): the pod read and the deny-all together, then the label (the
  deny-all must exist before the label lands). What a responder that keeps the safe order can at best reach.

All with no added latency and with L on every apiserver call. The responder and the floors run in a worker process
of their own (as the other containment figures do), taking turns; receipt is the wall-clock time just before
``Responder.respond`` (the floors: just before their first request after the receipt).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.cluster import Bench, _kubeenv, seed_finding
from bench.common import CUT_SAMPLES, L_S, log
from bench.timing import TimedConnector, Timeline, _deps, _payload, _timeline_rows
from bench.workers import run_worker

INTERVAL_S = 0.005  # the attacker's command rate: the figure's resolution (the no-latency figures are 10-40 ms)
QUIET_S = 2.0  # no answer for this long (while the attacker keeps sending) means the shell is cut


def worker_cut(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs the responder's and the floor's events, alternating; returns each one's receipt time (epoch seconds)."""
    from responder.containment.keys import QUARANTINE_LABEL
    from responder.containment.shape import deny_all_body
    from responder.service import Responder

    timeline = Timeline()
    deps = _deps(spec)
    deps.connector = TimedConnector(deps.connector, timeline)
    responder = Responder(deps)
    floor_kube = TimedConnector(_deps(spec).connector, Timeline()).connect(None).kube
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="floor")

    def floor(sample: dict[str, Any]) -> dict[str, Any]:
        pod = floor_kube.get_pod(sample["namespace"], sample["pod"])  # the UID precondition, read before receipt
        t0 = time.time()
        writes = [
            pool.submit(floor_kube.create_network_policy, sample["namespace"], deny_all_body()),
            pool.submit(
                floor_kube.patch_pod_metadata, sample["namespace"], pod.name, pod.uid, {QUARANTINE_LABEL: "true"}, {}
            ),
        ]
        for write in writes:
            write.result()
        return {"who": "floor", "id": sample["id"], "receipt": t0, "done": time.time()}

    def floor2(sample: dict[str, Any]) -> dict[str, Any]:
        t0 = time.time()
        reading = pool.submit(floor_kube.get_pod, sample["namespace"], sample["pod"])  # round one: read ∥ deny-all
        creating = pool.submit(floor_kube.create_network_policy, sample["namespace"], deny_all_body())
        pod = reading.result()
        creating.result()
        floor_kube.patch_pod_metadata(sample["namespace"], pod.name, pod.uid, {QUARANTINE_LABEL: "true"}, {})  # two
        return {"who": "floor2", "id": sample["id"], "receipt": t0, "done": time.time()}

    def respond(sample: dict[str, Any]) -> dict[str, Any]:
        delivery = _payload(sample["doc"])
        t0, m0 = time.time(), time.monotonic()
        outcome = responder.respond(delivery)
        isolate = next((a for a in outcome.record.actions if a.action == "isolate"), None)
        return {
            "who": "responder",
            "id": sample["id"],
            "receipt": t0,
            "done": time.time(),
            "isolate": None if isolate is None else isolate.details.get("established_connections"),
            # Its kube calls in ms from receipt, up to the label: what went out before the cut, and when.
            "kube_ms": _timeline_rows(timeline.started_between(m0, time.monotonic()), m0, 0.001)[:8],
        }

    respond(spec["warmup"])
    out = []
    for i, trio in enumerate(zip(spec["responder"], spec["floor"], spec["floor2"], strict=True)):
        runs = [(respond, trio[0]), (floor, trio[1]), (floor2, trio[2])]
        for fn, sample in runs[i % 3 :] + runs[: i % 3]:  # each takes each place in turn
            out.append(fn(sample))
            time.sleep(1.0)  # the dataplane settles; the next shell is untouched meanwhile
    return {"samples": out}


def cut_after(shell: Any, receipt: float) -> float | None:
    """Seconds from ``receipt`` to the last answer the attacker got, once it has stopped getting any; None if the
    shell still answered after the wait (not cut), or when the attacker's log was lost (said in a warning)."""
    try:
        last = shell.wait_for_silence(quiet_s=QUIET_S, timeout_s=60.0)
    except AssertionError as exc:
        log(f"WARNING: sample not measured: {exc}")
        return None
    if last is None:
        return None
    return (last - datetime.fromtimestamp(receipt, UTC)).total_seconds()


def measure_time_to_cut(bench: Bench) -> tuple[dict[str, Any], dict[str, Any]]:
    """time_to_cut (bench/cut.py) with and without L, beside its floor; one live shell per sample."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from tests.support import reverse_shell as rs

    if _kubeenv("netpol", "--dir", bench.state["dir"], "--mode", "established") != 0:
        raise SystemExit("bench: could not switch the node's dataplane to `established`")
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for label, kubeconfig, latency in (("", bench.direct_kc, 0.0), ("_L", bench.proxy_kc, L_S)):
        log(f"time to cut: {CUT_SAMPLES} shells each, responder vs floors, latency {latency * 1000:g} ms")
        bench.fake.latency_s = latency
        shells = {}
        events = []
        for i in range(1 + 3 * CUT_SAMPLES):
            victims, attackers = rs.create_namespace(bench.admin, "cut"), rs.create_namespace(bench.admin, "cutc2")
            shell = rs.open_shell(bench.admin, victims, attackers, interval_s=INTERVAL_S)
            doc = shell.finding()
            seed_finding(bench.fake, doc)
            shells[str(i)] = shell
            events.append({"id": str(i), "doc": doc, "namespace": victims, "pod": shell.victim_pod.metadata.name})
        spec = {
            "settings": {**bench.settings(kubeconfig), "netpol_enforcement": "established"},
            "warmup": events[0],
            "responder": events[1 : 1 + CUT_SAMPLES],
            "floor": events[1 + CUT_SAMPLES : 1 + 2 * CUT_SAMPLES],
            "floor2": events[1 + 2 * CUT_SAMPLES :],
        }
        ran = run_worker("cut", spec, bench.tmp)["samples"]
        for sample in ran:
            sample["cut_s"] = cut_after(shells[sample["id"]], sample["receipt"])
        details[f"samples{label}"] = ran
        for who in ("responder", "floor", "floor2"):
            values = [s["cut_s"] for s in ran if s["who"] == who and s["cut_s"] is not None]
            if len([s for s in ran if s["who"] == who]) != len(values):
                log(f"WARNING: {who}: a shell was not cut within the wait")
            name = f"time_to_cut{'' if who == 'responder' else '_' + who}{label}_ms"
            figures[name] = round(statistics.median(values) * 1000, 1) if values else None
        for shell in shells.values():
            for namespace in (shell.victim_namespace, shell.attacker_namespace):
                with contextlib.suppress(ApiException):
                    CoreV1Api(bench.admin).delete_namespace(namespace)
    details["resolution_ms"] = INTERVAL_S * 1000
    return figures, details
