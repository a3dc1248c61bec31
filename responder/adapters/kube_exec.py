"""Exec into a container over the apiserver's websocket (``v4.channel.k8s.io``), with websocket-client alone.

Why not ``kubernetes.stream``: it needs the whole official client (every API and model class, ≈25 MiB resident) for
one call, and evidence capture makes that call on every first event. The protocol is small: each binary frame starts
with its channel (1 stdout, 2 stderr, 3 the final status), and the server closes the socket when the command ends.

The container is the attacker's: it decides how much ``ps`` prints and how slowly. So output is consumed frame by
frame and the socket is closed as soon as ``limit_bytes`` are held or ``timeout_s`` has passed; memory stays at the cap
plus one frame whatever the container does.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from responder.adapters.kube_http import REQUEST_TIMEOUT, KubeHttp, segment
from responder.errors import Forbidden, NotFound, Unavailable
from responder.intake.sanitize import clean

_STDOUT, _STDERR = 1, 2
SUBPROTOCOL = "v4.channel.k8s.io"


def run(
    http: KubeHttp,
    namespace: str,
    name: str,
    container: str | None,
    argv: list[str],
    timeout_s: float,
    limit_bytes: int,
) -> str:
    """Run argv (no shell, no stdin, no tty); stdout and stderr interleaved as they come, capped and bounded."""
    query: list[tuple[str, str]] = [("command", a) for a in argv]
    query += [("stdout", "true"), ("stderr", "true"), ("stdin", "false"), ("tty", "false")]
    if container:
        query.append(("container", container))
    base = http.host.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    url = f"{base}/api/v1/namespaces/{segment(namespace)}/pods/{segment(name)}/exec?{urlencode(query)}"
    deadline = time.monotonic() + timeout_s
    ws = _connect(http, url, f"exec in {namespace}/{name}", timeout_s)
    try:
        return _read(ws, deadline, timeout_s, limit_bytes)
    finally:
        ws.close()


def _connect(http: KubeHttp, url: str, where: str, timeout_s: float) -> Any:
    """The exec websocket, or the failure translated (404 NotFound, 401/403 Forbidden, anything else Unavailable)."""
    import ssl

    import websocket

    sslopt: dict[str, object] = {
        "cert_reqs": ssl.CERT_REQUIRED if http.verify else ssl.CERT_NONE,
        "ca_certs": http.ca_file,
        "certfile": http.cert_file,
        "keyfile": http.key_file,
    }
    if http.server_hostname:
        sslopt["server_hostname"] = http.server_hostname
    try:
        return websocket.create_connection(
            url,
            timeout=min(REQUEST_TIMEOUT[0], timeout_s),
            header=[f"{k}: {v}" for k, v in http.headers().items() if k.lower() != "accept"],
            sslopt={k: v for k, v in sslopt.items() if v is not None},
            subprotocols=[SUBPROTOCOL],
        )
    except websocket.WebSocketBadStatusException as exc:
        status = getattr(exc, "status_code", 0)
        if status == 404:
            raise NotFound(f"{where}: 404 {clean(exc, 200)}") from exc
        if status in (401, 403):
            raise Forbidden(f"{where}: {status} {clean(exc, 200)}") from exc
        raise Unavailable(f"exec unavailable: {clean(exc, 200)}") from exc
    except Exception as exc:  # refused, TLS, timeout: no container to run in, as far as evidence is concerned
        raise Unavailable(f"exec unavailable: {type(exc).__name__}: {clean(exc, 200)}") from exc


def _read(ws: Any, deadline: float, timeout_s: float, limit_bytes: int) -> str:
    """The command's output until it ends, the deadline passes or ``limit_bytes`` are held (then said so)."""
    import websocket

    held: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _joined(held, f"\n[stopped after {timeout_s:g} s: deadline]")
        ws.settimeout(min(remaining, 1.0))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return _joined(held, "")
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return _joined(held, "")
        if not data or data[0] not in (_STDOUT, _STDERR):
            continue  # the status channel, or an empty frame: the output is what evidence keeps
        take = bytes(data[1 : 1 + max(limit_bytes - size, 0)])
        held.append(take)
        size += len(take)
        if size >= limit_bytes:
            return _joined(held, f"\n[truncated at {limit_bytes} bytes]")


def _joined(held: list[bytes], ending: str) -> str:
    return b"".join(held).decode("utf-8", errors="replace") + ending
