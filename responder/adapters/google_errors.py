"""Google SDK errors translated into ``responder.errors``: one mapping for every Google adapter.

Nothing here imports a Google SDK at module import time: the translation looks SDK exception classes up in
``sys.modules`` (an exception of a module that was never imported cannot have been raised), and the helpers that need
an SDK import it when they are called. Importing this module therefore costs almost nothing at cold start.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from responder.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PermanentError,
    ResponderError,
    TransientError,
    Unavailable,
)
from responder.intake.sanitize import clean

T = TypeVar("T")

# Over REST, api_core picks the exception class from the HTTP status alone, so FAILED_PRECONDITION (HTTP 400) arrives
# as BadRequest; the canonical status string in the error body tells the two apart.
_CONFLICT_STATUSES = frozenset({"ABORTED", "ALREADY_EXISTS", "FAILED_PRECONDITION"})
# Some Google APIs still answer a rate limit with 403; that heals by waiting, unlike a missing permission.
_RATE_LIMIT_REASONS = frozenset({"RATE_LIMIT_EXCEEDED", "rateLimitExceeded", "userRateLimitExceeded"})


def translate(exc: BaseException, what: str) -> ResponderError | None:
    """Map an SDK or transport exception to ``responder.errors``; None when ``exc`` is not a dependency failure.

    ``what`` names the call ("GKE get_cluster projects/p/locations/l/clusters/c") and prefixes the message.
    Programming errors (TypeError, KeyError ...) return None so that they surface unchanged.
    """
    if isinstance(exc, ResponderError):
        return exc
    if isinstance(exc, TimeoutError):  # also concurrent.futures.TimeoutError and socket.timeout on 3.11
        return TransientError(f"{what}: timed out")
    core = sys.modules.get("google.api_core.exceptions")
    if core is not None:
        if isinstance(exc, core.RetryError):  # the retry budget ran out on transient errors
            cause = exc.cause
            detail = f"{type(cause).__name__}: {clean(cause, 200)}" if cause is not None else clean(exc, 200)
            return TransientError(f"{what}: retries exhausted ({detail})")
        if isinstance(exc, core.GoogleAPICallError):
            return _from_call_error(exc, what, core)
    transport = _from_transport(exc, what)
    if transport is not None:
        return transport
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(exc, auth.GoogleAuthError):
        if isinstance(exc, auth.DefaultCredentialsError):
            return Unavailable(f"{what}: no Google credentials here: {clean(exc, 300)}")
        if isinstance(exc, auth.TransportError) or getattr(exc, "retryable", False):
            return TransientError(f"{what}: credential refresh failed: {clean(exc, 300)}")
        return Forbidden(f"{what}: credentials rejected: {clean(exc, 300)}")
    grpc = sys.modules.get("grpc")
    if grpc is not None and core is not None and isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return translate(core.from_grpc_error(exc), what)
    if isinstance(exc, ConnectionError):  # the builtin one: refused / reset below any SDK
        return TransientError(f"{what}: {type(exc).__name__}: {clean(exc, 300)}")
    return None


def _from_transport(exc: BaseException, what: str) -> ResponderError | None:
    """requests' errors (the SDKs' REST transports) and urllib3's (beneath some SDK transports)."""
    text = f"{what}: {type(exc).__name__}: {clean(exc, 300)}"
    rq = sys.modules.get("requests.exceptions")
    if rq is not None and isinstance(exc, rq.RequestException):
        if isinstance(exc, rq.ConnectionError | rq.Timeout | rq.ChunkedEncodingError):
            return TransientError(text)
        return PermanentError(text)  # InvalidURL, MissingSchema ...
    u3 = sys.modules.get("urllib3.exceptions")
    if u3 is not None and isinstance(exc, u3.HTTPError):
        if isinstance(exc, u3.LocationValueError):  # a URL that cannot be dialled: no retry mends it
            return PermanentError(text)
        return TransientError(text)  # refused, reset, timed out
    return None


def _from_call_error(exc: Any, what: str, core: Any) -> ResponderError:
    status = _canonical_status(exc)
    code = exc.code
    message = f"{what}: HTTP {code} {status or type(exc).__name__}: {clean(exc.message, 400)}"
    if isinstance(exc, core.NotFound):
        return NotFound(message)
    if (
        isinstance(exc, core.Conflict | core.PreconditionFailed | core.FailedPrecondition)
        or status in _CONFLICT_STATUSES
    ):
        return Conflict(message)
    if isinstance(exc, core.Unauthorized | core.Forbidden):
        if exc.reason in _RATE_LIMIT_REASONS:
            return TransientError(message)
        return Forbidden(message)
    if isinstance(exc, core.TooManyRequests | core.Cancelled):
        return TransientError(message)
    if isinstance(exc, core.MethodNotImplemented):
        return PermanentError(message)
    if isinstance(exc, core.ServerError):  # 500, 502, 503, 504 / DeadlineExceeded, UNKNOWN, DATA_LOSS
        return TransientError(message)
    if code is None:  # a status api_core has no class for: retrying is the safe side of an at-least-once pipeline
        return TransientError(message)
    return PermanentError(message)  # 400 InvalidArgument/OutOfRange, 3xx, other 4xx


def _canonical_status(exc: Any) -> str | None:
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return str(grpc_code.name)
    response = getattr(exc, "response", None)
    if response is None or not hasattr(response, "json"):
        return None
    try:
        status = response.json().get("error", {}).get("status")
    except Exception:  # any non-JSON body
        return None
    return status if isinstance(status, str) else None


def is_transient(exc: BaseException) -> bool:
    """The retry predicate: exactly the failures :func:`translate` calls transient."""
    return isinstance(translate(exc, ""), TransientError)


@contextmanager
def google_call(what: str) -> Iterator[None]:
    """Translate what the block raises into ``responder.errors`` (``raise ... from exc``)."""
    try:
        yield
    except Exception as exc:
        translated = translate(exc, what)
        if translated is None or translated is exc:
            raise
        raise translated from exc
