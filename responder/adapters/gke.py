"""``ClusterAPI`` over the GKE API's documented REST endpoint (``GET /v1/projects/P/locations/L/clusters/C``).

Needs ``container.clusters.get`` (``roles/container.clusterViewer``). This lookup stands between a finding and the
first write to its cluster, so it is plain JSON over the Kubernetes transport's connections (``http_pool``) with the
token from ``google_token``: the ``google-cloud-container`` SDK's import (≈0.3 s of CPU on a cold instance) bought
nothing here but a proto object to read a dozen fields from, and google-auth's ``AuthorizedSession`` brings
``requests`` and ``cryptography`` with it. Errors become api_core's exceptions from the HTTP answer, as the SDKs'
REST transports make them, and go through the same translation as every Google adapter.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from responder.adapters.google_clients import sdk
from responder.adapters.google_errors import google_call, is_transient, translate
from responder.adapters.google_token import TokenSource, token_source
from responder.adapters.http_pool import TRANSPORT_ERRORS, Answer, Pool, tls_context
from responder.config import Settings
from responder.errors import TransientError, Unavailable
from responder.intake import identifiers
from responder.intake.identifiers import ClusterRef
from responder.intake.sanitize import clean
from responder.ports import ClusterInfo

DEFAULT_ENDPOINT = "https://container.googleapis.com"
# The REST API answers enums by name; numbers are accepted too, as proto3 JSON allows either.
_CLUSTER_STATUS = {1: "PROVISIONING", 2: "RUNNING", 3: "RECONCILING", 4: "STOPPING", 5: "ERROR", 6: "DEGRADED"}
_DATAPATH = {1: "LEGACY_DATAPATH", 2: "ADVANCED_DATAPATH"}


class GkeClusterAPI:
    """Reads cluster metadata: endpoints, CA, labels, and whether NetworkPolicy is enforced."""

    def __init__(
        self, settings: Settings, *, timeout_s: float = 10.0, deadline_s: float = 20.0, token: TokenSource | None = None
    ) -> None:
        """``timeout_s`` bounds one HTTP attempt; ``deadline_s`` bounds retries of transient failures (0: none).
        ``token``: where the bearer comes from (default: :func:`google_token.token_source`; none when the settings
        ask for anonymous calls, to a local wire fake)."""
        self._settings = settings
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        self._base = _base_url(settings.container_endpoint)
        self._token = None if settings.anonymous_google else token or token_source(settings.k_service)
        self._lock = threading.Lock()
        self._pool: Pool | None = None

    def _connections(self) -> Pool:
        with self._lock:
            if self._pool is None:
                # The CA bundle requests would use (certifi): the same trust as the SDK clients.
                import certifi

                tls = tls_context(certifi.where()) if self._base.startswith("https://") else None
                self._pool = Pool(self._base, tls=tls, timeout=(self._timeout_s, self._timeout_s))
            return self._pool

    def get_cluster(self, ref: ClusterRef) -> ClusterInfo:
        """``GET /v1/projects/P/locations/L/clusters/C`` (L is a region or a zone)."""
        # A ClusterRef can be built by hand; the parts reach a URL path, so they are checked again here.
        identifiers.project(ref.project)
        identifiers.location(ref.location)
        identifiers.cluster_name(ref.name)
        what = f"GKE get_cluster {ref.path}"
        url = f"/v1/{ref.path}"
        started = time.monotonic()
        delay = 0.2
        while True:
            try:
                return cluster_info(self._get(what, url))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                left = self._deadline_s - (time.monotonic() - started)
                if left <= 0 or self._deadline_s <= 0:
                    if self._deadline_s <= 0:
                        raise
                    raise TransientError(f"{what}: retries exhausted ({clean(exc, 200)})") from exc
                time.sleep(min(delay * random.uniform(0.5, 1.0), left))  # noqa: S311 - jitter, not security
                delay = min(delay * 2, 2.0)

    def _get(self, what: str, url: str) -> dict[str, Any]:
        with google_call(what):
            answer = self._send(what, url, self._headers())
            if answer.status == 401 and self._token is not None:
                # The token was refused (revoked, expired early): one fresh one, as google-auth's session does.
                answer = self._send(what, url, self._headers(fresh=True))
            if answer.status >= 400:
                error = sdk("google.api_core.exceptions").from_http_response(_Answer(answer, self._base + url))
                if answer.status == 401 and self._token is None:
                    raise Unavailable(f"{what}: HTTP 401, and no credentials to present (anonymous)") from error
                raise translate(error, what) or error from error
            body = _json(answer.body)
        if not isinstance(body, dict):
            raise TransientError(f"{what}: the answer is not a JSON object")
        return body

    def _send(self, what: str, url: str, headers: dict[str, str]) -> Answer:
        try:
            return self._connections().send("GET", url, headers=headers)
        except TRANSPORT_ERRORS as exc:  # refused, reset, TLS, timed out: the endpoint may answer next time
            raise TransientError(f"{what}: {type(exc).__name__}: {clean(exc, 200)}") from exc

    def _headers(self, fresh: bool = False) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "reverse-shell-responder"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.token(fresh)[0]}"
        return headers

    def close(self) -> None:
        """Drop pooled connections (no-op when none was made)."""
        if self._pool is not None:
            self._pool.clear()


class _Answer:
    """What api_core's ``from_http_response`` reads of a ``requests.Response``, from an :class:`Answer`."""

    def __init__(self, answer: Answer, url: str) -> None:
        self.status_code = answer.status
        self.text = answer.body.decode("utf-8", errors="replace")
        self.request = _Request(url)

    def json(self) -> Any:
        return json.loads(self.text)


class _Request:
    method = "GET"

    def __init__(self, url: str) -> None:
        self.url = url


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None  # not JSON: reported as "not a JSON object"


def _base_url(endpoint: str | None) -> str:
    """``RESPONDER_CONTAINER_ENDPOINT`` may be a bare host (https) or carry its scheme (``http://`` for wire fakes)."""
    if not endpoint:
        return DEFAULT_ENDPOINT
    endpoint = endpoint.rstrip("/")
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def _enum(value: Any, names: dict[int, str]) -> str | None:
    if isinstance(value, int):
        return names.get(value, str(value)) if value else None
    if not isinstance(value, str) or not value or value.endswith("UNSPECIFIED"):
        return None
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _public_endpoint(cluster: dict[str, Any]) -> str | None:
    """The public IP endpoint, or None. Not ``Cluster.endpoint``: that is the private IP when
    ``privateClusterConfig.enablePrivateEndpoint`` is set, and empty when IP endpoints are off. The dedicated fields are
    ``controlPlaneEndpointsConfig.ipEndpointsConfig.publicEndpoint`` (populated only when IP access and the public
    endpoint are on), then the older ``privateClusterConfig.publicEndpoint``."""
    ip_config = _dict(_dict(cluster.get("controlPlaneEndpointsConfig")).get("ipEndpointsConfig"))
    legacy = _dict(cluster.get("privateClusterConfig"))
    if ip_config.get("enabled") is False or ip_config.get("enablePublicEndpoint") is False:
        return None
    if ip_config.get("publicEndpoint"):
        return str(ip_config["publicEndpoint"])
    if legacy.get("enablePrivateEndpoint") is True:
        return None
    return str(legacy["publicEndpoint"]) if legacy.get("publicEndpoint") else None


def cluster_info(cluster: dict[str, Any]) -> ClusterInfo:
    """Map a ``Cluster`` JSON object to :class:`ClusterInfo` (absent or empty fields and UNSPECIFIED enums: None)."""
    endpoints = _dict(cluster.get("controlPlaneEndpointsConfig"))
    ip_config = _dict(endpoints.get("ipEndpointsConfig"))
    dns_config = _dict(endpoints.get("dnsEndpointConfig"))
    legacy_private = _dict(cluster.get("privateClusterConfig")).get("privateEndpoint")
    return ClusterInfo(
        name=cluster.get("name") or "",
        location=cluster.get("location") or "",
        status=_enum(cluster.get("status"), _CLUSTER_STATUS),
        version=cluster.get("currentMasterVersion") or None,
        endpoint=cluster.get("endpoint") or None,
        public_endpoint=_public_endpoint(cluster),
        private_endpoint=ip_config.get("privateEndpoint") or legacy_private or None,
        dns_endpoint=dns_config.get("endpoint") or None,
        dns_endpoint_external=bool(dns_config.get("allowExternalTraffic")),
        ca_certificate=_dict(cluster.get("masterAuth")).get("clusterCaCertificate") or None,
        labels={str(k): str(v) for k, v in _dict(cluster.get("resourceLabels")).items()},
        network_policy_enabled=bool(_dict(cluster.get("networkPolicy")).get("enabled")),
        datapath_provider=_enum(_dict(cluster.get("networkConfig")).get("datapathProvider"), _DATAPATH),
        autopilot=bool(_dict(cluster.get("autopilot")).get("enabled")),
        self_link=cluster.get("selfLink") or None,
    )
