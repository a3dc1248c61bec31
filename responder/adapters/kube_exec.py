"""Exec into a container over the apiserver's websocket (``v4.channel.k8s.io``), with websocket-client alone.

Why not ``kubernetes.stream``: it needs the whole official client (every API and model class, ≈25 MiB resident) for
one call, and evidence capture makes that call on every first event. The protocol is small: each binary frame starts
with its channel (1 stdout, 2 stderr, 3 the final status), and the server closes the socket when the command ends.

The container is the attacker's: it decides how much ``ps`` prints and how slowly. So output is consumed frame by
frame and the socket is closed as soon as ``limit_bytes`` are held or ``timeout_s`` has passed; memory stays at the cap
plus one frame whatever the container does.

How the command ended comes from the status channel (3), a ``v1.Status`` the kubelet writes, never from the output:
a failed ``cat`` prints nothing on stdout, and without its status that would read as an empty socket table.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from responder.adapters.kube_errors import translate
from responder.adapters.kube_http import REQUEST_TIMEOUT, KubeHttp, segment
from responder.errors import Forbidden, NotFound, Unavailable
from responder.intake.sanitize import clean
from responder.ports import ExecOutput

_STDOUT, _STDERR, _STATUS = 1, 2, 3
SUBPROTOCOL = "v4.channel.k8s.io"
_STATUS_LIMIT = 64 * 1024  # a v1.Status is a few hundred bytes; more is not one


def run(
    http: KubeHttp,
    namespace: str,
    name: str,
    container: str | None,
    argv: list[str],
    timeout_s: float,
    limit_bytes: int,
) -> ExecOutput:
    """Run argv (no shell, no stdin, no tty); stdout and stderr interleaved as they come, capped and bounded, and
    how the command ended (its status frame)."""
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


def _read(ws: Any, deadline: float, timeout_s: float, limit_bytes: int) -> ExecOutput:
    """The command's output and status until it ends, the deadline passes or ``limit_bytes`` are held."""
    import websocket

    held = _Held(limit_bytes)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return held.output(stopped_after_s=timeout_s)
        ws.settimeout(min(remaining, 1.0))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return held.output()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return held.output()
        if not data:
            continue
        if data[0] == _STATUS:
            held.status += bytes(data[1 : 1 + max(_STATUS_LIMIT - len(held.status), 0)])
        elif data[0] in (_STDOUT, _STDERR) and held.take(bytes(data[1:])):
            return held.output(truncated=True)


class _Held:
    """Output held under the cap, and the status frame's bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = b""

    def take(self, chunk: bytes) -> bool:
        """Hold what fits under the cap; True once the cap is reached."""
        take = chunk[: max(self.limit - self.size, 0)]
        self.chunks.append(take)
        self.size += len(take)
        return self.size >= self.limit

    def output(self, *, truncated: bool = False, stopped_after_s: float | None = None) -> ExecOutput:
        exit_code, failure = status(self.status) if self.status else (None, None)
        return ExecOutput(
            text=b"".join(self.chunks).decode("utf-8", errors="replace"),
            exit_code=exit_code,
            failure=failure,
            truncated_at=self.limit if truncated else None,
            stopped_after_s=stopped_after_s,
        )


def status(raw: bytes | str) -> tuple[int | None, str | None]:
    """(exit code, failure message) from the status channel's ``v1.Status``.

    ``Success`` is exit 0. A non-zero exit is ``Failure`` with reason ``NonZeroExitCode`` and the code as the
    ``ExitCode`` cause's message; any other ``Failure`` (the command could not start: no such executable, the
    container is gone) has no exit code. A frame that is not a Status is a failure to say what happened."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return None, f"unreadable exec status: {clean(text, 120)}"
    if doc.get("status") == "Success":
        return 0, None
    message = clean(doc.get("message") or doc.get("reason") or "the command failed", 300)
    details = doc.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else ():
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return int(str(cause.get("message"))), message
            except ValueError:
                break
    return None, message


def run_via_client(
    core: Any,
    namespace: str,
    name: str,
    container: str | None,
    argv: list[str],
    timeout_s: float,
    limit_bytes: int,
) -> ExecOutput:
    """The same exec through the official client's ``kubernetes.stream`` (``core``: its CoreV1Api), for an
    apiserver behind an HTTP proxy; consumed frame by frame under the same cap and deadline."""
    from kubernetes.stream import stream

    try:
        resp = stream(
            core.connect_get_namespaced_pod_exec,
            name,
            namespace,
            command=argv,
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except Exception as exc:
        translated = translate(exc, f"exec in {namespace}/{name}")
        if isinstance(translated, NotFound | Forbidden):
            raise translated from exc
        raise Unavailable(f"exec unavailable: {clean(exc, 200)}") from exc
    held = _Held(limit_bytes)
    deadline = time.monotonic() + timeout_s
    try:
        while resp.is_open():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return held.output(stopped_after_s=timeout_s)
            resp.update(timeout=min(remaining, 1.0))
            for chunk in (
                resp.read_stdout() if resp.peek_stdout() else "",
                resp.read_stderr() if resp.peek_stderr() else "",
            ):
                if chunk and held.take(chunk.encode("utf-8")):
                    return held.output(truncated=True)
        held.status = str(resp.read_channel(_STATUS)).encode("utf-8")[:_STATUS_LIMIT]
        return held.output()
    finally:
        resp.close()
