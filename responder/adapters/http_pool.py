"""Keep-alive HTTP/1.1 connections to one origin over the standard library's ``http.client``: the transport of every
call made before the isolating writes (the apiserver's, ``kube_http``; the GKE lookup, ``gke``; the metadata server's
token, ``google_token``).

Why not urllib3, which all three used until issue 33: each of them talks to one origin and makes its own retries, so
urllib3's pool manager, URL parsing, header containers and response wrapper add nothing but CPU (~0.35 ms a call on
the bench machine, nearly half of an apiserver read's) and, on a cold instance, its import ahead of the first write.
:class:`Pool` keeps what urllib3 gave that matters here: a connection per thread that needs one, a connection the
server closed is never reused, TCP_NODELAY, a connect and a read timeout, and one write per request.

Transport failures are raised as they come (:data:`TRANSPORT_ERRORS`: refused, reset, TLS, timeouts, an answer cut
short); each caller translates them into ``responder.errors``.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from responder.errors import ConfigError

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (OSError, http.client.HTTPException)
# Idle connections kept: one per thread that may call (32 workers, 16 coordinators), so none is discarded and set up
# again (a TLS handshake is CPU that concurrent events would share).
MAX_IDLE = 48


Request = tuple[str, str, bytes | None, Mapping[str, str]]  # method, path and query, body, headers


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    body: bytes


_SENT = Answer(0, "sent, not answered yet", b"")  # a placeholder in send_together's slots


class _Connection(http.client.HTTPConnection):
    """One keep-alive connection: TLS when asked, TCP_NODELAY, and each request in one write.

    http.client (like urllib3) writes the header block and then the body: two TCP segments. Anything on the path that
    still runs Nagle's algorithm (a relay, a proxy, a load balancer's backend leg) then holds the body until the first
    segment is acknowledged, and a delayed ACK makes that ~40 ms: on every write to the apiserver, which is where
    isolation spends its time. Holding the header block until the body comes makes each request one write.
    """

    def __init__(self, pool: Pool, host: str, port: int) -> None:
        super().__init__(host, port, timeout=pool.timeout[0])
        self.pool = pool
        self.closing = False  # the last answer said the server closes the connection after it
        self._held: bytes | None = None

    def connect(self) -> None:
        super().connect()  # TCP, and the CONNECT through a proxy (set_tunnel) when there is one
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.pool.tls is not None:
            name = self.pool.server_name or self.pool.host
            self.sock = self.pool.tls.wrap_socket(self.sock, server_hostname=name)
        self.sock.settimeout(self.pool.timeout[1])

    def exchange(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        self.put(method, url, body, headers)
        return self.answer()

    def put(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        self._held = b"" if body else None  # with a body, the header block waits for it
        try:
            self.request(method, url, body=body, headers=headers)
        finally:
            self._held = None

    def answer(self) -> Answer:
        response = self.getresponse()
        answer = Answer(response.status, response.reason or "", response.read())
        self.closing = response.will_close
        return answer

    def send(self, data: Any) -> None:
        if self._held is not None:
            if not self._held:
                self._held = bytes(data)  # the header block: it leaves with the body
                return
            data, self._held = self._held + bytes(data), None
        super().send(data)

    def dropped(self) -> bool:
        """The server closed it (or sent what nobody asked for) while it sat idle: not to be used again."""
        sock = self.sock
        if sock is None:
            return True
        try:
            poller = select.poll()  # not select(): it cannot watch a descriptor past 1024
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class Pool:
    """Keep-alive connections to ``origin`` (``https://host[:port]`` or ``http://...``), each used by one thread at a
    time, the newest idle one first. ``tls``: the context for https (see :func:`tls_context`); ``server_name``: the
    name the certificate carries when it is not the host's; ``proxy``: an ``http://`` proxy to tunnel through;
    ``timeout``: (connect, read) in seconds."""

    def __init__(
        self,
        origin: str,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        proxy: str | None = None,
        timeout: tuple[float, float] = (5.0, 20.0),
    ) -> None:
        where = urlsplit(origin)
        if where.scheme not in ("https", "http") or not where.hostname:
            raise ConfigError(f"URL {origin!r}: expected https://host[:port] or http://host[:port]")
        self.host, self.port = where.hostname, where.port or (443 if where.scheme == "https" else 80)
        self.prefix = where.path.rstrip("/")  # an apiserver behind a path (a proxy's /k8s/clusters/c-1): kept
        self.tls = (tls or ssl.create_default_context()) if where.scheme == "https" else None
        self.server_name = server_name
        self.proxy = proxy_address(proxy) if proxy else None
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def send(
        self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """One request (``url``: the path and query, under the origin's own path). The connection goes back for
        reuse only after a complete answer that leaves it open; on any error it is closed, and the error raised
        (:data:`TRANSPORT_ERRORS`)."""
        conn = self._take()
        try:
            answer = conn.exchange(method, self.prefix + url, body, headers or {})
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return answer

    def send_together(self, requests: Sequence[Request]) -> list[Answer | Exception]:
        """Several requests at once from this thread, each on a connection of its own: all are sent, then the answers
        read in turn. One round, as many calls handed to as many threads would take, without the hand-offs: on an
        apiserver read that is about half the CPU (see bench/run.py's redelivery figures). Each slot holds its answer
        or its transport error (:data:`TRANSPORT_ERRORS`), as :meth:`send` would have raised it."""
        out: list[Answer | Exception] = []
        waiting: list[_Connection] = []  # sent, answer not read yet: closed if anything else goes wrong
        try:
            for method, url, body, headers in requests:
                conn = self._take()
                try:
                    conn.put(method, self.prefix + url, body, headers)
                except TRANSPORT_ERRORS as exc:
                    conn.close()
                    out.append(exc)
                    continue
                waiting.append(conn)
                out.append(_SENT)
            for i, answered in enumerate(out):
                if answered is _SENT:
                    out[i] = self._answer(waiting[0])
                    waiting.pop(0)
        except BaseException:
            for conn in waiting:
                conn.close()  # an answer half read must not be read by the next request
            raise
        return out

    def _answer(self, conn: _Connection) -> Answer | Exception:
        try:
            answer = conn.answer()
        except TRANSPORT_ERRORS as exc:
            conn.close()
            return exc
        self._give_back(conn)
        return answer

    def clear(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if not conn.dropped():
                return conn
            conn.close()

    def _new(self) -> _Connection:
        if self.proxy is None:
            return _Connection(self, self.host, self.port)
        conn = _Connection(self, *self.proxy)
        conn.set_tunnel(self.host, self.port)
        return conn

    def _give_back(self, conn: _Connection) -> None:
        kept = False
        if not conn.closing:
            with self._lock:
                kept = len(self._idle) < MAX_IDLE
                if kept:
                    self._idle.append(conn)
        if not kept:
            conn.close()


def tls_context(
    ca_file: str | None, *, verify: bool = True, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """Trust ``ca_file`` (None: the system's), present a client certificate when given; ``verify=False``: no check."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def proxy_address(url: str) -> tuple[str, int]:
    """An HTTP proxy the requests tunnel through (CONNECT): the only kind a kubeconfig's proxy-url may name here."""
    where = urlsplit(url)
    if where.scheme != "http" or not where.hostname:
        raise ConfigError(f"proxy-url {url!r}: only an http:// proxy (CONNECT tunnel) is supported")
    return where.hostname, where.port or 80
