"""The cold path, as a user would meet it: a fresh process, the GKE path, and the peer's import as the yardstick.

- :class:`MetadataServer`: the responder's GKE connector gets the cluster's bearer token from Application Default
  Credentials, as on Cloud Functions, where the metadata server answers; this one hands out the responder identity's
  apiserver token. The Google APIs themselves (GKE lookup, SCC, Logging) are the wire fake, with anonymous
  credentials.
- :class:`IsolationWatch`: watches the pod and the namespace's NetworkPolicies directly on the apiserver (not through
  the latency proxy) and notes when each isolating write was first seen: the deny-all policy, the ``NotIn`` exclusion
  on every allowing policy that selects the pod, the quarantine label. The pod is isolated at the latest of these.
  A watch event arrives a millisecond or so after the write was accepted, so the figure errs on the slow side.
- :func:`peer_import`: Cloud Custodian's ``import c7n_gcp.handler`` in its own virtual environment (``.venv-peer``,
  created and filled by the bench on first use).
- :func:`measure_cold_path`: ``cold_to_isolated_s``, ``cold_to_isolated_L``, ``rss_mib``, ``first_event_s`` and
  ``rss_100_concurrent_mib`` (bench/run.py says how each is defined), from bench/probe.py in fresh processes.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.cluster import Bench, Shop, kube_access, verify_isolated
from bench.common import COLD_SAMPLES, L_S, ROOT, _median, _median3, log
from bench.workers import run_probe

PEER_VENV = ROOT / ".venv-peer"
PEER_PACKAGE = "c7n-gcp"
PEER_IMPORT = "import c7n_gcp.handler"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


# ===================================================================================================== metadata server


class MetadataServer:
    """The Compute Engine metadata server, as far as Application Default Credentials use it on Cloud Functions.

    google-auth finds it through ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` (:meth:`env`): a ping, the service
    account's info, then its access token, which is the responder identity's apiserver token here. It answers at once,
    like the real one, which is link-local to the instance (the injected latency is for remote calls only).
    """

    EMAIL = "responder@rsr-test.iam.gserviceaccount.com"

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server names it
                server.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                body: Any
                if path in ("", "/"):
                    body = ""
                elif path.endswith("/service-accounts/default/token"):
                    body = {"access_token": server.token, "expires_in": 3600, "token_type": "Bearer"}
                elif "/service-accounts/default" in path:
                    body = {"email": server.EMAIL, "scopes": [CLOUD_PLATFORM], "aliases": ["default"]}
                elif path.endswith("/project/project-id"):
                    body = "rsr-bench"
                elif path.endswith("/universe/universe-domain"):
                    body = "googleapis.com"
                else:
                    self.send_response(404)
                    self.send_header("Metadata-Flavor", "Google")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(200)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metadata-server", daemon=True)

    def start(self) -> MetadataServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def env(self, scratch: Path) -> dict[str, str]:
        """What makes google-auth's ADC use this server (and nothing else: no gcloud configuration)."""
        host = f"127.0.0.1:{self._httpd.server_address[1]}"
        scratch.mkdir(parents=True, exist_ok=True)
        return {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host, "CLOUDSDK_CONFIG": str(scratch)}


# ======================================================================================================= the watch


class IsolationWatch:
    """When the apiserver had accepted each write that isolates ``pod`` (monotonic clock, shared by processes)."""

    def __init__(self, admin: Any, namespace: str, pod: str, allowing: list[str]) -> None:
        from responder.containment.keys import DENY_ALL_POLICY

        self.admin = admin
        self.namespace = namespace
        self.pod = pod
        self.wanted = {"label": None, "deny_all": None} | {f"exclude:{p}": None for p in allowing}
        self.seen: dict[str, float | None] = dict(self.wanted)
        self._deny_all = DENY_ALL_POLICY
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watches: list[Any] = []
        self._threads: list[threading.Thread] = []

    def _note(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if key in self.seen and self.seen[key] is None:
                self.seen[key] = now
            if all(v is not None for v in self.seen.values()):
                self._done.set()

    def start(self) -> IsolationWatch:
        from kubernetes import client, watch

        from responder.containment.keys import QUARANTINE_LABEL

        core, net = client.CoreV1Api(self.admin), client.NetworkingV1Api(self.admin)
        pods_rv = core.list_namespaced_pod(self.namespace).metadata.resource_version
        policies_rv = net.list_namespaced_network_policy(self.namespace).metadata.resource_version

        def pods() -> None:
            w = watch.Watch()
            self._watches.append(w)
            for event in w.stream(
                core.list_namespaced_pod,
                self.namespace,
                field_selector=f"metadata.name={self.pod}",
                resource_version=pods_rv,
                timeout_seconds=120,
            ):
                labels = event["object"].metadata.labels or {}
                if labels.get(QUARANTINE_LABEL) == "true":
                    self._note("label")

        def policies() -> None:
            w = watch.Watch()
            self._watches.append(w)
            for event in w.stream(
                net.list_namespaced_network_policy, self.namespace, resource_version=policies_rv, timeout_seconds=120
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    continue
                if obj.metadata.name == self._deny_all:
                    self._note("deny_all")
                    continue
                exprs = obj.spec.pod_selector.match_expressions or []
                if any(e.key == QUARANTINE_LABEL and e.operator == "NotIn" for e in exprs):
                    self._note(f"exclude:{obj.metadata.name}")

        def quietly(fn: Any) -> Any:
            def run() -> None:
                with contextlib.suppress(Exception):  # stop() ends the stream under the reader: not a failure
                    fn()

            return run

        for target in (pods, policies):
            thread = threading.Thread(target=quietly(target), daemon=True, name=f"watch-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        time.sleep(0.3)  # both watches established before the measured process starts
        return self

    def isolated_at(self, timeout_s: float = 30.0) -> float | None:
        """The latest of the isolating writes, once all were seen (None: not isolated within the timeout)."""
        if not self._done.wait(timeout_s):
            return None
        with self._lock:
            return max(v for v in self.seen.values() if v is not None)

    def stop(self) -> None:
        for w in self._watches:
            with contextlib.suppress(Exception):
                w.stop()


# ==================================================================================================== the peer


def ensure_peer_venv(log: Any) -> tuple[Path | None, str]:
    """The peer's virtual environment with ``c7n-gcp`` installed: (python, "") or (None, why it cannot be had)."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", PEER_IMPORT]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python, ""
    log(f"installing {PEER_PACKAGE} into {PEER_VENV.name} (the peer's own environment; once)")
    steps = [
        ["python3", "-m", "venv", str(PEER_VENV)],  # the system interpreter: an environment of its own
        [str(PEER_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", PEER_PACKAGE],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"{' '.join(step[:3])} failed: {tail[0][:200]}"
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        return None, f"{PEER_IMPORT} fails in {PEER_VENV.name}"
    return python, ""


def peer_import(log: Any, runs: int) -> tuple[float | None, dict[str, Any]]:
    """Median wall time of ``python -c "import c7n_gcp.handler"`` in fresh processes (bytecode cached, one warm-up)."""
    python, why = ensure_peer_venv(log)
    if python is None:
        print(f"[bench] peer_import_s skipped: {why}", file=sys.stderr, flush=True)
        return None, {"skipped": why}
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('c7n-gcp'), m.version('c7n'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    samples = []
    for i in range(runs + 1):
        took = one_peer_import(python)
        if i:  # the first run writes bytecode: a warm-up
            samples.append(took)
    details = {"package": PEER_PACKAGE, "versions": version, "samples_s": [round(s, 3) for s in samples]}
    return round(statistics.median(samples), 3), details


def one_peer_import(python: Path) -> float:
    """Seconds of one fresh ``python -c "import c7n_gcp.handler"`` in the peer's environment."""
    started = time.perf_counter()
    subprocess.run([str(python), "-c", PEER_IMPORT], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


class PeerBeside:
    """The peer's import taken between the cold samples, so that the ratio compares two things measured under the same
    load (the cold samples run beside the node and the rest of the bench): call it after each sample."""

    def __init__(self) -> None:
        self.python, self.why = ensure_peer_venv(log)
        self.samples: list[float] = []

    def __call__(self) -> None:
        if self.python is not None:
            self.samples.append(one_peer_import(self.python))

    def figure(self) -> float | None:
        return round(statistics.median(self.samples), 3) if self.samples else None


# ========================================================================================================= measuring


def _cold_sample(
    bench: Bench,
    metadata: MetadataServer,
    access: tuple[str, str],
    tag: str,
    shop: Shop,
    profile: bool = False,
    root: Path = ROOT,
) -> dict[str, Any]:
    """One fresh process: ``import main`` and one event on the GKE path, timed until the pod is isolated
    (``profile``: profiled up to its first write, bench/coldprofile.py; ``root``: the checkout that runs)."""
    from tests.notifications import message_published

    kube_host, ca_b64 = access
    fake = bench.fake
    sample = bench.event(shop, "web0", 0, f"k{int(fake.latency_s * 1000)}")
    cluster = sample["doc"]["finding"]["resourceName"].removeprefix("//container.googleapis.com/")
    # Dataplane V2: isolation cuts established connections, so `auto` needs no escalation (as on most clusters
    # created today); a Calico cluster would add the live-session escalation's capture and delete.
    fake.add_cluster(cluster, endpoint=kube_host, ca_certificate=ca_b64, datapath_provider="ADVANCED_DATAPATH")
    env = {**bench.responder_env(), **metadata.env(bench.tmp / "gcloud")}
    watch = IsolationWatch(bench.admin, shop.namespace, sample["pod"], sample["policies"]).start()
    try:
        spawned = time.monotonic()
        events = [message_published(sample["doc"])]
        probe = run_probe(tag, env, events, bench.tmp, mode="first-event", profile=profile, root=root)
        isolated = watch.isolated_at()
    finally:
        watch.stop()
    t0 = probe["t0_monotonic"]
    verify_isolated(bench.admin, [sample])
    return {
        "namespace": shop.namespace,
        "status": probe["status"],
        "cold_to_isolated_s": None if isolated is None else isolated - t0,
        "spawn_to_isolated_s": None if isolated is None else isolated - spawned,
        "seen_s": {k: None if v is None else round(v - t0, 3) for k, v in watch.seen.items()},
        **{k: v for k, v in probe.items() if k not in ("t0_monotonic",)},
    }


def measure_cold(
    bench: Bench,
    access: tuple[str, str, str],
    latency_s: float,
    shops: list[Shop],
    profile: bool = False,
    roots: tuple[Path, ...] = (ROOT,),
    between: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """One fresh process per shop: ``import main`` and one event on the GKE path, timed until the pod is isolated.

    The GKE wire fake describes the cluster (``access``: the endpoint, the apiserver or the latency proxy in front of
    it; its CA; the token), Application Default Credentials hand out the responder's apiserver token through a local
    metadata server (:class:`MetadataServer`), every Google call waits ``latency_s``. No RESPONDER_KUBECONFIG: the
    production wiring. ``roots``: the checkouts that take turns, shop by shop (another commit's worktree beside
    this one); each sample says which ran it (``root``).
    """
    kube_host, ca_b64, token = access
    metadata = MetadataServer(token).start()
    try:
        bench.fake.latency_s = latency_s
        out = []
        for i, shop in enumerate(shops):
            root = roots[i % len(roots)]
            sample = _cold_sample(bench, metadata, (kube_host, ca_b64), f"cold-{i}", shop, profile, root)
            out.append({**sample, "root": str(root)})
            if between is not None:
                between()  # the peer's import, under the same load (PeerBeside)
        return out
    finally:
        metadata.stop()
        bench.fake.latency_s = 0.0


def measure_cold_path(
    bench: Bench, cold_shops: list[Shop], concurrent_shop: Shop
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cold path and memory, fresh processes; returns (figures, details)."""
    from tests.notifications import message_published

    kube_host, ca_b64, token = kube_access(bench.direct_kc)
    log("cold path: a fresh process per event, GKE path, no latency (one warm-up writes the bytecode)")
    measure_cold(bench, (kube_host, ca_b64, token), 0.0, cold_shops[:1])
    log("cold path: one more fresh process, profiled up to its first write (bench/coldprofile.py)")
    profiled = measure_cold(bench, (kube_host, ca_b64, token), 0.0, cold_shops[-1:], profile=True)[0]
    peer = PeerBeside()
    cold = measure_cold(bench, (kube_host, ca_b64, token), 0.0, cold_shops[1 : 1 + COLD_SAMPLES], between=peer)
    log(f"cold path at L = {L_S * 1000:.0f} ms (apiserver through the latency proxy)")
    proxied = (f"127.0.0.1:{bench.proxy_port}", ca_b64, token)
    cold_l = measure_cold(bench, proxied, L_S, cold_shops[1 + COLD_SAMPLES : 1 + 2 * COLD_SAMPLES])
    details: dict[str, Any] = {
        "cold": cold,
        "cold_latency": cold_l,
        "first_event_probe": cold[0],
        "cold_profile": profiled.get("profile"),
    }
    figures: dict[str, Any] = {
        "cold_to_isolated_s": _median3([c["cold_to_isolated_s"] for c in cold]),
        "cold_to_isolated_L": _median([c["cold_to_isolated_s"] / L_S for c in cold_l if c["cold_to_isolated_s"]]),
        "rss_mib": round(max(c["rss_mib"] for c in cold), 1),
        "first_event_s": _median3([c["first_event_s"] for c in cold]),
    }
    if peer.figure() is not None:  # the peer beside the cold samples replaces the one of the first phase
        figures["peer_import_s"] = peer.figure()
        details["peer_import_beside_cold_s"] = [round(x, 3) for x in peer.samples]
    log(f"memory: 100 events in flight in a fresh process (L = {L_S * 1000:.0f} ms)")
    bench.fake.latency_s = L_S
    many = [bench.event(concurrent_shop, dep, i, "rc") for dep in concurrent_shop.pods for i in range(10)]
    probe_env = {
        "RESPONDER_KUBECONFIG": str(bench.proxy_kc),
        **bench.responder_env(),
        "RESPONDER_NETPOL_ENFORCEMENT": "established",
    }
    probe = run_probe("concurrent", probe_env, [message_published(e["doc"]) for e in many], bench.tmp)
    details["concurrent_probe"] = probe
    figures["rss_100_concurrent_mib"] = round(probe["rss_mib"], 1)
    verify_isolated(bench.admin, many)
    return figures, details
