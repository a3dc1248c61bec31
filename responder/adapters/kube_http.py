"""The Kubernetes API as raw JSON over the standard library's HTTP client: what containment needs, without the
``kubernetes`` package.

Why not the official client here: importing ``kubernetes.client`` loads every API and model class (≈0.3 s of CPU and
≈25 MiB on a cold instance), and each read is then turned into model objects only to be turned back into JSON. The
pod read and the isolating writes are the cold path of the whole function, so they go out as JSON over keep-alive
connections; the ``kubernetes`` package is still used for what it is good at (kubeconfig loading, the exec websocket),
and is imported only when one of those is needed.

Why ``http.client`` and not urllib3 (which it used until issue 33): every call here goes to one host, with retries
made by ``kube_errors``, so urllib3's pool manager, URL parsing, header containers and response wrapper add nothing
but CPU: ~0.35 ms a call on the bench machine, nearly half of a read's. A converged redelivery is four reads, so that
was most of what separated it from its target. :class:`_Pool` keeps what urllib3 gave that matters here: a connection
per thread that needs one, a connection the server closed is never reused, TCP_NODELAY, and one write per request.

Failures are raised as :class:`KubeHttpError`, which carries ``status``, ``reason`` and ``body`` like the official
client's ``ApiException``, so ``kube_errors`` translates both the same way.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from responder.errors import ConfigError, KubeHttpError

REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read
# Idle connections kept: one per thread that may call (32 workers, 16 coordinators), so none is discarded and set up
# again (a TLS handshake is CPU that concurrent events would share).
MAX_IDLE = 48
# How long a kubeconfig's bearer token is reused before its refresh hook is asked again. The hook re-reads an
# expiring token (exec plugins, OIDC) and costs a Configuration object per call; tokens live minutes to hours.
AUTH_RECHECK_S = 30.0


class KubeHttp:
    """One apiserver: base URL, TLS trust, and how to authenticate. Thread-safe (urllib3's pool is)."""

    def __init__(  # noqa: PLR0913 - a kubeconfig's connection settings, keyword-only, as kubernetes.client names them
        self,
        host: str,
        *,
        ca_file: str | None,
        authorization: Callable[[], str | None] = lambda: None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify: bool = True,
        proxy: str | None = None,
        server_hostname: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``authorization``: the ``Authorization`` header value, asked for on every request (tokens rotate)."""
        self.host = host.rstrip("/")
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.verify = verify
        self.proxy = proxy
        if proxy:
            _proxy(proxy)  # refused here, with the kubeconfig, rather than at the first request
        self.server_hostname = server_hostname  # kubeconfig's tls-server-name: the name the certificate carries
        self._authorization = authorization
        self._headers = {"Accept": "application/json", "User-Agent": "reverse-shell-responder", **(headers or {})}
        self._lock = threading.Lock()
        self._pool: _Pool | None = None

    @classmethod
    def from_configuration(cls, cfg: Any, headers: Mapping[str, str] | None = None) -> KubeHttp:
        """From a ``kubernetes.client.Configuration`` (what a kubeconfig loads into); tokens refreshed through it.
        ``headers``: an ApiClient's default headers (impersonation, for instance) go along on every request."""
        return cls(
            cfg.host,
            ca_file=cfg.ssl_ca_cert,
            authorization=_ttl_cached(
                lambda: cfg.get_api_key_with_prefix("BearerToken", alias="authorization"), AUTH_RECHECK_S
            ),
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            verify=bool(cfg.verify_ssl),
            proxy=cfg.proxy,
            server_hostname=getattr(cfg, "tls_server_name", None),
            headers=headers,
        )

    def _connections(self) -> _Pool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = _Pool(self)
            return self._pool

    def headers(self) -> dict[str, str]:
        """The headers every request carries (authorization included), for calls made outside the pool (exec)."""
        headers = dict(self._headers)
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """Send one request; the decoded JSON answer (``raw``: the text). Raises :class:`KubeHttpError` for non-2xx
        and lets transport errors (``OSError``: refused, reset, TLS, timeouts; ``http.client.HTTPException``: a
        broken answer) through for ``kube_errors`` to translate."""
        url = path
        params = {k: _param(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        headers = dict(self._headers)
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        status, reason, payload = self._connections().send(method, url, data, headers)
        text = payload.decode("utf-8", errors="replace")
        if not 200 <= status < 300:
            raise KubeHttpError(status, reason, text)
        if raw:
            return text
        return json.loads(text) if text else {}

    def close(self) -> None:
        """Drop pooled connections."""
        if self._pool is not None:
            self._pool.clear()


def _ttl_cached(fn: Callable[[], str | None], ttl_s: float) -> Callable[[], str | None]:
    state: list[Any] = [None, float("-inf")]  # value, when it was read
    lock = threading.Lock()

    def cached() -> str | None:
        with lock:
            if time.monotonic() - state[1] > ttl_s:
                state[0], state[1] = fn(), time.monotonic()
            value: str | None = state[0]
            return value

    return cached


class _Connection(http.client.HTTPConnection):
    """One keep-alive connection: TLS as the kubeconfig says, TCP_NODELAY, and each request in one write.

    http.client (like urllib3) writes the header block and then the body: two TCP segments. Anything on the path that
    still runs Nagle's algorithm (a relay, a proxy, a load balancer's backend leg) then holds the body until the first
    segment is acknowledged, and a delayed ACK makes that ~40 ms: on every write to the apiserver, which is where
    isolation spends its time. Holding the header block until the body comes makes each request one write.
    """

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, server_name: str | None) -> None:
        super().__init__(host, port, timeout=REQUEST_TIMEOUT[0])
        self.tls, self.server_name = tls, server_name
        self._held: bytes | None = None

    def connect(self) -> None:
        super().connect()  # TCP, and the CONNECT through a proxy (set_tunnel) when there is one
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(
                self.sock, server_hostname=self.server_name or getattr(self, "_tunnel_host", None) or self.host
            )
        self.sock.settimeout(REQUEST_TIMEOUT[1])

    def exchange(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> http.client.HTTPResponse:
        self._held = b"" if body else None  # with a body, the header block waits for it
        try:
            self.request(method, url, body=body, headers=dict(headers))
        finally:
            self._held = None
        return self.getresponse()

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
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True


class _Pool:
    """Keep-alive connections to one apiserver, each used by one thread at a time; the newest idle one first."""

    def __init__(self, http: KubeHttp) -> None:
        where = urlsplit(http.host)
        if where.scheme not in ("https", "http") or not where.hostname:
            raise ConfigError(f"apiserver URL {http.host!r}: expected https://host[:port]")
        self.host, self.port = where.hostname, where.port or (443 if where.scheme == "https" else 80)
        self.tls = _tls(http) if where.scheme == "https" else None
        self.server_name = http.server_hostname
        self.proxy = _proxy(http.proxy) if http.proxy else None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

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
            return _Connection(self.host, self.port, self.tls, self.server_name)
        conn = _Connection(self.proxy[0], self.proxy[1], self.tls, self.server_name)
        conn.set_tunnel(self.host, self.port)
        return conn

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
        """One request: (status, reason, body). The connection goes back for reuse only after a complete answer
        that leaves it open; on any error it is closed, and the error raised for ``kube_errors`` to translate."""
        conn = self._take()
        try:
            response = conn.exchange(method, url, body, headers)
            payload = response.read()
        except BaseException:
            conn.close()
            raise
        kept = False
        if not response.will_close:
            with self._lock:
                kept = len(self._idle) < MAX_IDLE
                if kept:
                    self._idle.append(conn)
        if not kept:
            conn.close()
        return response.status, response.reason or "", payload

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _tls(http: KubeHttp) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=http.ca_file)
    if not http.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if http.cert_file:
        context.load_cert_chain(http.cert_file, http.key_file)
    return context


def _proxy(url: str) -> tuple[str, int]:
    """An HTTP proxy the requests tunnel through (CONNECT): the only kind a kubeconfig's proxy-url may name here."""
    where = urlsplit(url)
    if where.scheme != "http" or not where.hostname:
        raise ConfigError(f"proxy-url {url!r}: only an http:// proxy (CONNECT tunnel) is supported")
    return where.hostname, where.port or 80


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def segment(value: str) -> str:
    """A path segment: names reach URLs only after validation, but are quoted all the same."""
    return quote(value, safe="")
