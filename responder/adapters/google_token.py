"""The access token every Google call before the isolating writes carries: the GKE lookup and the apiserver's bearer.

On Cloud Functions (and anywhere the Compute Engine metadata server is Application Default Credentials' answer) the
token is one GET to the metadata server. google-auth's own way there (``google.auth.default()`` then
``compute_engine.Credentials.refresh``) imports ``requests`` and ``cryptography`` on the way (google-auth 2.62's
``compute_engine`` loads its mTLS and IAM-signing support), about 70 ms of CPU on a cold instance, which is a fifth of
the time from ``import main`` to the pod isolated (docs/performance.md). :class:`MetadataToken` asks the same server
the same question over the Kubernetes transport's connections (``http_pool``); the SDK clients that come after the
writes (SCC, Logging) still authenticate through google-auth.

:func:`token_source` chooses: the metadata server only where ADC itself would end there (a Google runtime, or
``GCE_METADATA_HOST`` naming one, with no ``GOOGLE_APPLICATION_CREDENTIALS`` and no gcloud ADC file, which ADC reads
first); otherwise google-auth's ADC (:class:`AdcToken`), whatever credentials it finds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from responder.adapters.http_pool import TRANSPORT_ERRORS, Pool
from responder.errors import TransientError, Unavailable
from responder.intake.sanitize import clean

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_METADATA_HOST = "metadata.google.internal"  # what google-auth dials when GCE_METADATA_HOST is unset
SERVICE_ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default"
REFRESH_MARGIN_S = 300.0  # refreshed this long before it expires, as google-auth does (its clock skew is 225 s)
TIMEOUT_S = 3.0  # the metadata server is link-local: an answer takes milliseconds


class TokenSource(Protocol):
    def token(self, fresh: bool = False) -> tuple[str, float]:
        """A valid access token and when it expires (epoch seconds); ``fresh``: not the cached one (it was refused)."""
        ...


class MetadataToken:
    """The runtime's service-account token from the metadata server, cached until it nears expiry. Thread-safe."""

    def __init__(self, host: str | None = None, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)) -> None:
        self._host = host or os.environ.get("GCE_METADATA_HOST") or DEFAULT_METADATA_HOST
        self._scopes = scopes
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None
        self._pool: Pool | None = None

    def token(self, fresh: bool = False) -> tuple[str, float]:
        with self._lock:
            cached = self._cached
            if fresh or cached is None or cached[1] - time.time() < REFRESH_MARGIN_S:
                cached = self._cached = self._fetch()
            return cached

    def _fetch(self) -> tuple[str, float]:
        if self._pool is None:
            self._pool = Pool(f"http://{self._host}", timeout=(TIMEOUT_S, TIMEOUT_S))
        url = f"{SERVICE_ACCOUNT_PATH}/token?scopes={quote(','.join(self._scopes), safe='')}"
        try:
            answer = self._pool.send("GET", url, headers={"Metadata-Flavor": "Google"})
        except TRANSPORT_ERRORS as exc:
            raise TransientError(f"metadata server token: {type(exc).__name__}: {clean(exc, 200)}") from exc
        if answer.status in (401, 403, 404):
            raise Unavailable(f"metadata server token: HTTP {answer.status}: no service account for this instance")
        if answer.status != 200:
            raise TransientError(f"metadata server token: HTTP {answer.status}")
        try:
            body = json.loads(answer.body)
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(f"metadata server token: unreadable answer ({type(exc).__name__})") from exc
        if not token or lifetime <= 0:
            raise TransientError("metadata server token: empty token or lifetime")
        return token, time.time() + lifetime


class AdcToken:
    """google-auth's Application Default Credentials (or the credentials given), refreshed when they near expiry."""

    def __init__(self, credentials: Any = None, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)) -> None:
        self._credentials = credentials
        self._scopes = scopes
        self._lock = threading.Lock()

    def token(self, fresh: bool = False) -> tuple[str, float]:
        import google.auth
        import google.auth.transport.requests
        from google.auth.exceptions import DefaultCredentialsError, RefreshError

        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=list(self._scopes))
                creds = self._credentials
                if fresh or not creds.valid or _epoch(creds.expiry) - time.time() < REFRESH_MARGIN_S:
                    creds.refresh(google.auth.transport.requests.Request())
            except DefaultCredentialsError as exc:
                raise Unavailable(f"no Google credentials: {clean(exc, 200)}") from exc
            except RefreshError as exc:
                raise TransientError(f"token refresh failed: {clean(exc, 200)}") from exc
            return str(creds.token), _epoch(creds.expiry)


def _epoch(expiry: datetime | None) -> float:
    """google-auth keeps expiry as a naive datetime in UTC (None: a token without one, taken as half an hour)."""
    if expiry is None:
        return time.time() + 1800
    return (expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)).timestamp()


def metadata_is_adc(k_service: str | None) -> bool:
    """Whether ADC would answer with the metadata server's token here: on a Google runtime (``K_SERVICE``) or with
    ``GCE_METADATA_HOST`` set, and nothing ADC reads first (the key file variable, gcloud's ADC file)."""
    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return False
    config = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    if Path(config, "application_default_credentials.json").exists():
        return False
    return bool(k_service or os.environ.get("GCE_METADATA_HOST"))


def token_source(k_service: str | None, credentials: Any = None) -> TokenSource:
    """The metadata server when ADC would end there (and no credentials are given), else google-auth's ADC."""
    if credentials is None and metadata_is_adc(k_service):
        return MetadataToken()
    return AdcToken(credentials)
