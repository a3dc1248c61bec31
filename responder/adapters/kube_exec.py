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
    import ssl

    import websocket

    query: list[tuple[str, str]] = [("command", a) for a in argv]
    query += [("stdout", "true"), ("stderr", "true"), ("stdin", "false"), ("tty", "false")]
    if container:
        query.append(("container", container))
    base = http.host.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    url = f"{base}/api/v1/namespaces/{segment(namespace)}/pods/{segment(name)}/exec?{urlencode(query)}"
    sslopt: dict[str, object] = {
        "cert_reqs": ssl.CERT_REQUIRED if http.verify else ssl.CERT_NONE,
        "ca_certs": http.ca_file,
        "certfile": http.cert_file,
        "keyfile": http.key_file,
    }
    if http.server_hostname:
        sslopt["server_hostname"] = http.server_hostname
    where = f"exec in {namespace}/{name}"
    deadline = time.monotonic() + timeout_s
    try:
        ws = websocket.create_connection(
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
    held: list[bytes] = []
    size = 0
    ending = ""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ending = f"\n[stopped after {timeout_s:g} s: deadline]"
                break
            ws.settimeout(min(remaining, 1.0))
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if not data or data[0] not in (_STDOUT, _STDERR):
                continue  # the status channel, or an empty frame: the output is what evidence keeps
            take = bytes(data[1 : 1 + max(limit_bytes - size, 0)])
            held.append(take)
            size += len(take)
            if size >= limit_bytes:
                ending = f"\n[truncated at {limit_bytes} bytes]"
                break
    finally:
        ws.close()
    return b"".join(held).decode("utf-8", errors="replace") + ending
