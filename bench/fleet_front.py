"""Fifty clusters on one apiserver: a front per cluster that gives each its own responder namespace.

On GKE every cluster has its own apiserver, so the responder's own namespace (``responder-system``: the
blast-radius budget Lease, the quarantined identities) exists once per cluster, and so does each budget. The bench
has one apiserver for all fifty, where one ``responder-system`` would give the fleet one shared budget. So each
cluster's endpoint, as the GKE wire fake describes it, is a port of this front: it terminates TLS with the
apiserver's own serving certificate (so the CA the fake hands out is the apiserver's, and the responder checks it as
on GKE), maps ``responder-system`` to that cluster's namespace in the request path and body and back in the answer,
and forwards each request with the responder's own bearer token, so RBAC is the responder's. Nothing else changes;
the responder is untouched. Exec (a WebSocket upgrade) is not forwarded: the fleet's pods stay Pending.

It runs in a process of its own (``python -m bench.fleet_front SPEC``), so its CPU is not the function's nor the
bench's; it prints its ports as one JSON line once it listens, and stops when its stdin closes.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OWN = "responder-system"  # the responder's own namespace as it names it (Settings.budget_namespace's default)
_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


def rewrite_path(path: str, own: str) -> str:
    """The request path with the responder's own namespace mapped to this cluster's."""
    for tail in ("/", "?"):
        path = path.replace(f"/namespaces/{OWN}{tail}", f"/namespaces/{own}{tail}")
    if path.endswith(f"/namespaces/{OWN}"):
        path = path[: -len(OWN)] + own
    return path


class _Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, own: str, upstream: tuple[str, int], upstream_ctx: ssl.SSLContext, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.own = own
        self.upstream = upstream
        self.upstream_ctx = upstream_ctx
        # The handshake happens in the connection's own thread (not in the accept loop).
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the responder's urllib3 pool expects
    server: _Front
    _conn: http.client.HTTPSConnection | None = None

    def _upstream(self, fresh: bool = False) -> http.client.HTTPSConnection:
        if fresh or self._conn is None:
            if self._conn is not None:
                self._conn.close()
            host, port = self.server.upstream
            self._conn = http.client.HTTPSConnection(host, port, context=self.server.upstream_ctx, timeout=60)
        return self._conn

    def _forward(self) -> None:
        own = self.server.own
        self.server.requests += 1
        if self.headers.get("Upgrade"):
            self._answer(501, [], b'{"kind":"Status","message":"the fleet front does not forward upgrades"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if body:
            body = body.replace(f'"{OWN}"'.encode(), f'"{own}"'.encode())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        path = rewrite_path(self.path, own)
        for attempt in range(2):  # a kept-alive upstream connection the apiserver closed: once more on a new one
            try:
                conn = self._upstream(fresh=attempt > 0)
                conn.request(self.command, path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                if attempt:
                    self.close_connection = True
                    return
        data = data.replace(own.encode(), OWN.encode())
        self._answer(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP], data)

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args: Any) -> None:
        pass


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    upstream_ctx = ssl.create_default_context(cadata=spec["ca_pem"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(spec["cert_file"], spec["key_file"])
    host, port = spec["upstream"].rsplit(":", 1)
    fronts = {cluster: _Front(own, (host, int(port)), upstream_ctx, tls) for cluster, own in spec["own"].items()}
    for front in fronts.values():
        threading.Thread(target=front.serve_forever, daemon=True).start()
    print(json.dumps({c: f.server_address[1] for c, f in fronts.items()}), flush=True)
    sys.stdin.read()  # until the bench closes it
    cpu = os.times()
    print(
        json.dumps(
            {
                "requests": sum(f.requests for f in fronts.values()),
                "cpu_s": round(cpu.user + cpu.system, 2),
                "at": time.time(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
