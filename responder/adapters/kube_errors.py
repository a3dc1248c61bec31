"""Kubernetes client errors translated into ``responder.errors``, and the one retried call every request goes through.

404 is NotFound, 409 Conflict, 401/403 Forbidden (never "not found"), 429/5xx/connection failures transient (retried
here within a deadline, then redelivered by Pub/Sub); any other status is permanent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from responder.adapters.http_pool import TRANSPORT_ERRORS
from responder.adapters.retrying import retry_failed
from responder.errors import Conflict, Forbidden, KubeHttpError, NotFound, PermanentError, TransientError
from responder.intake.sanitize import clean

T = TypeVar("T")


def _is_api_error(exc: Exception) -> bool:
    """An HTTP answer from the apiserver: ours (raw JSON transport) or the official client's ApiException (looked
    up in ``sys.modules``: an exception of a module never imported cannot have been raised, and importing the
    ``kubernetes`` package just to compare classes would cost the cold path what the raw transport saves)."""
    if isinstance(exc, KubeHttpError):
        return True
    client_exceptions = sys.modules.get("kubernetes.client.exceptions")
    return client_exceptions is not None and isinstance(exc, client_exceptions.ApiException)


def translate(exc: Exception, what: str) -> Exception:
    urllib3_exceptions = sys.modules.get("urllib3.exceptions")
    # kube_http's transport (http_pool): OSError (refused, reset, TLS, timeouts, an answer cut short), HttpParserError
    transport_errors: tuple[type[BaseException], ...] = TRANSPORT_ERRORS
    if urllib3_exceptions is not None:
        transport_errors += (urllib3_exceptions.HTTPError,)
    if _is_api_error(exc):
        exc_any: Any = exc
        status = exc_any.status or 0
        reason = _api_message(exc_any)
        text = f"{what}: {status} {reason}"
        if status == 404:
            return NotFound(text)
        if status == 409:
            return Conflict(text)
        if status in (401, 403):
            return Forbidden(text)
        if status == 429 or status >= 500 or status == 0:
            return TransientError(text)
        return PermanentError(text)
    if isinstance(exc, transport_errors):
        return TransientError(f"{what}: {type(exc).__name__}: {clean(exc, 200)}")
    return exc


def is_uid_mismatch(exc: BaseException | None) -> bool:
    """A 422 whose cause is ``metadata.uid`` (immutable): the object under that name is another one now."""
    if getattr(exc, "status", None) != 422:
        return False
    try:
        causes = json.loads(getattr(exc, "body", "") or "{}").get("details", {}).get("causes", [])
    except (TypeError, ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("field") == "metadata.uid" for c in causes)


def _api_message(exc: Any) -> str:
    try:
        return clean(json.loads(exc.body).get("message", exc.reason), 300)
    except (TypeError, ValueError, AttributeError):
        return clean(exc.reason, 200)


def call(what: str, fn: Callable[[], T]) -> T:
    """``fn`` with its errors translated; a transient failure is retried (``adapters.retrying``) within its deadline.

    The first attempt goes out on its own: nearly every call succeeds at once, and the retry machinery (tenacity,
    ~30 us of CPU a call, and its import on a cold instance) is only brought in once an attempt has failed."""

    def attempt() -> T:
        try:
            return fn()
        except Exception as exc:
            translated = translate(exc, what)
            if translated is exc:
                raise
            raise translated from exc

    started = time.monotonic()
    try:
        return attempt()
    except TransientError:
        return retry_failed(attempt, started)
