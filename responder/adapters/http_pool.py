"""Keep-alive HTTP/1.1 connections to one origin (:mod:`responder.adapters.http_wire`): the transport of every call
made before the isolating writes (the apiserver's, ``kube_http``; the GKE lookup, ``gke``; the metadata server's
token, ``google_token``).

Why not urllib3, which all three used until issue 33: each of them talks to one origin and makes its own retries, so
urllib3's pool manager, URL parsing, header containers and response wrapper add nothing but CPU (~0.35 ms a call on
the bench machine, nearly half of an apiserver read's) and, on a cold instance, its import ahead of the first write.
:class:`Pool` keeps what urllib3 gave that matters here: a connection per thread that needs one, a connection the
server closed is never reused, TCP_NODELAY, a connect and a read timeout, and one write per request.

Transport failures are raised as they come (:data:`TRANSPORT_ERRORS`: refused, reset, TLS, timeouts, an answer cut
short or malformed); each caller translates them into ``responder.errors``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from responder.adapters.http_wire import TRANSPORT_ERRORS, Answer, Connection
from responder.errors import ConfigError

__all__ = ["TRANSPORT_ERRORS", "Answer", "Pool", "Request", "proxy_address", "tls_context"]

# Idle connections kept: one per thread that may call (32 workers, 16 coordinators), so none is discarded and set up
# again (a TLS handshake is CPU that concurrent events would share).
MAX_IDLE = 48

Request = tuple[str, str, bytes | None, Mapping[str, str]]  # method, path and query, body, headers
_SENT = Answer(0, "sent, not answered yet", b"")  # a placeholder in send_together's slots


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
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    @property
    def authority(self) -> str:
        """The origin as ``Host`` and CONNECT name it: the port only when not the scheme's own, IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls is not None else 80
        return host if self.port == default else f"{host}:{self.port}"

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
        waiting: list[Connection] = []  # sent, answer not read yet: closed if anything else goes wrong
        try:
            for method, url, body, headers in requests:
                conn = self._take()
                waiting.append(conn)  # from here on, closed on any failure but its own transport error's
                try:
                    conn.put(method, self.prefix + url, body, headers)
                except TRANSPORT_ERRORS as exc:
                    waiting.pop().close()
                    out.append(exc)
                    continue
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

    def _answer(self, conn: Connection) -> Answer | Exception:
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

    def _take(self) -> Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if not conn.dropped():
                return conn
            conn.close()

    def _new(self) -> Connection:
        return Connection(self)

    def _give_back(self, conn: Connection) -> None:
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
