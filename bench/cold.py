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
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
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
        from responder.containment.base import DENY_ALL_POLICY

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

        from responder.containment.base import QUARANTINE_LABEL

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
        started = time.perf_counter()
        subprocess.run([str(python), "-c", PEER_IMPORT], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        if i:  # the first run writes bytecode: a warm-up
            samples.append(time.perf_counter() - started)
    details = {"package": PEER_PACKAGE, "versions": version, "samples_s": [round(s, 3) for s in samples]}
    return round(statistics.median(samples), 3), details
