"""The Kubernetes API as raw JSON over urllib3: what containment needs, without the ``kubernetes`` package.

Why not the official client here: importing ``kubernetes.client`` loads every API and model class (≈0.3 s of CPU and
≈25 MiB on a cold instance), and each read is then turned into model objects only to be turned back into JSON. The
pod read and the isolating writes are the cold path of the whole function, so they go out as JSON over one urllib3
pool; the ``kubernetes`` package is still used for what it is good at (kubeconfig loading, the exec websocket), and is
imported only when one of those is needed.

Failures are raised as :class:`KubeHttpError`, which carries ``status``, ``reason`` and ``body`` like the official
client's ``ApiException``, so ``kube_errors`` translates both the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from responder.errors import KubeHttpError

REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read
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
        self.server_hostname = server_hostname  # kubeconfig's tls-server-name: the name the certificate carries
        self._authorization = authorization
        self._headers = {"Accept": "application/json", "User-Agent": "reverse-shell-responder", **(headers or {})}
        self._lock = threading.Lock()
        self._pool: Any = None

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

    def _manager(self) -> Any:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                import urllib3

                options: dict[str, Any] = {
                    "num_pools": 4,
                    # One connection per thread that may call (32 workers, 16 coordinators): none is discarded and
                    # set up again (a TLS handshake is CPU that concurrent events would share).
                    "maxsize": 48,
                    "cert_reqs": "CERT_REQUIRED" if self.verify else "CERT_NONE",
                    "ca_certs": self.ca_file,
                    "cert_file": self.cert_file,
                    "key_file": self.key_file,
                    "retries": False,  # retries are kube_errors.call's, on translated errors only
                }
                if self.server_hostname:
                    options["server_hostname"] = self.server_hostname
                if self.proxy:
                    self._pool = urllib3.ProxyManager(self.proxy, **options)
                else:
                    self._pool = urllib3.PoolManager(**options)
                    self._pool.pool_classes_by_scheme = _one_write_pools()
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
        and lets urllib3's transport errors (connection refused, timeouts) through for ``kube_errors`` to translate."""
        import urllib3

        url = self.host + path
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
        response = self._manager().request(
            method,
            url,
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT[0], read=REQUEST_TIMEOUT[1]),
            redirect=False,
        )
        text = response.data.decode("utf-8", errors="replace")
        if not 200 <= response.status < 300:
            raise KubeHttpError(response.status, response.reason or "", text)
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


def _one_write_pools() -> dict[str, Any]:
    """Connection pools whose connections send a request's headers and its body in one write.

    urllib3 (like http.client) writes the header block and then the body: two TCP segments. Anything on the path that
    still runs Nagle's algorithm (a relay, a proxy, a load balancer's backend leg) then holds the body until the first
    segment is acknowledged, and a delayed ACK makes that ~40 ms: on every write to the apiserver, which is where
    isolation spends its time. Holding the header block until the body comes makes each request one write.
    """
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class OneWrite:
        _hold = False
        _held = b""

        def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
            # Only bytes bodies on an open connection: a tunnel's CONNECT or a streamed body goes out as before.
            self._hold = isinstance(body, bytes) and bool(body) and getattr(self, "sock", None) is not None
            try:
                return super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
            finally:
                self._hold = False
                held, self._held = self._held, b""
                if held:
                    super().send(held)  # type: ignore[misc]

        def send(self, data: Any) -> None:
            if self._hold and not self._held:
                self._held = bytes(data)  # the header block: it leaves with the body
                return
            if self._held:
                data, self._held = self._held + bytes(data), b""
            super().send(data)  # type: ignore[misc]

    class OneWriteHTTP(OneWrite, HTTPConnection):
        pass

    class OneWriteHTTPS(OneWrite, HTTPSConnection):
        pass

    class HTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = OneWriteHTTP

    class HTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = OneWriteHTTPS

    return {"http": HTTPPool, "https": HTTPSPool}


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def segment(value: str) -> str:
    """A path segment: names reach URLs only after validation, but are quoted all the same."""
    return quote(value, safe="")
