"""The Kubernetes API as raw JSON over the standard library's HTTP client: what containment needs, without the
``kubernetes`` package.

Why not the official client here: importing ``kubernetes.client`` loads every API and model class (≈0.3 s of CPU and
≈25 MiB on a cold instance), and each read is then turned into model objects only to be turned back into JSON. The
pod read and the isolating writes are the cold path of the whole function, so they go out as JSON over keep-alive
connections; the ``kubernetes`` package is still used for what it is good at (kubeconfig loading, the exec websocket),
and is imported only when one of those is needed.

The connections are :mod:`responder.adapters.http_pool`'s (answers parsed by httptools; urllib3, then ``http.client``,
until issue 33).

Failures are raised as :class:`KubeHttpError`, which carries ``status``, ``reason`` and ``body`` like the official
client's ``ApiException``, so ``kube_errors`` translates both the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from responder.adapters.http_pool import Answer, Pool, Request, proxy_address, tls_context
from responder.errors import KubeHttpError

REQUEST_TIMEOUT = (5.0, 20.0)  # connect, read
# How long a kubeconfig's bearer token is reused before its refresh hook is asked again. The hook re-reads an
# expiring token (exec plugins, OIDC) and costs a Configuration object per call; tokens live minutes to hours.
AUTH_RECHECK_S = 30.0


class KubeHttp:
    """One apiserver: base URL, TLS trust, and how to authenticate. Thread-safe (its pool is)."""

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
            proxy_address(proxy)  # refused here, with the kubeconfig, rather than at the first request
        self.server_hostname = server_hostname  # kubeconfig's tls-server-name: the name the certificate carries
        self._authorization = authorization
        self._headers = {"Accept": "application/json", "User-Agent": "reverse-shell-responder", **(headers or {})}
        self._lock = threading.Lock()
        self._pool: Pool | None = None

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

    def _connections(self) -> Pool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                tls = tls_context(self.ca_file, verify=self.verify, cert_file=self.cert_file, key_file=self.key_file)
                self._pool = Pool(
                    self.host, tls=tls, server_name=self.server_hostname, proxy=self.proxy, timeout=REQUEST_TIMEOUT
                )
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
        and lets transport errors (``OSError``: refused, reset, TLS, timeouts; ``httptools.HttpParserError``: a
        broken answer) through for ``kube_errors`` to translate."""
        answer = self._connections().send(*self._request(method, path, query, body, content_type))
        return _decoded(answer, raw)

    def get_together(self, reads: Sequence[tuple[str, Mapping[str, str | int | bool | None] | None]]) -> list[Any]:
        """GETs of (path, query) sent at once from this thread (:meth:`Pool.send_together`): each slot holds the
        decoded JSON answer, or the exception :meth:`request` would have raised for it (returned, not raised)."""
        requests = [self._request("GET", path, query, None, "") for path, query in reads]
        out: list[Any] = []
        for answer in self._connections().send_together(requests):
            try:
                out.append(answer if isinstance(answer, Exception) else _decoded(answer, raw=False))
            except (KubeHttpError, ValueError) as exc:
                out.append(exc)
        return out

    def _request(
        self, method: str, path: str, query: Mapping[str, str | int | bool | None] | None, body: Any, content_type: str
    ) -> Request:
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
        return method, url, data, headers

    def close(self) -> None:
        """Drop pooled connections."""
        if self._pool is not None:
            self._pool.clear()


def _decoded(answer: Answer, raw: bool) -> Any:
    text = answer.body.decode("utf-8", errors="replace")
    if not 200 <= answer.status < 300:
        raise KubeHttpError(answer.status, answer.reason, text)
    if raw:
        return text
    return json.loads(text) if text else {}


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


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def segment(value: str) -> str:
    """A path segment: names reach URLs only after validation, but are quoted all the same."""
    return quote(value, safe="")
