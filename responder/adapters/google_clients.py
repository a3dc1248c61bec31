"""Google clients, built lazily: client options and credentials from Settings, the retry budget, SDK loading.

Each Google SDK costs 0.3-0.5 s to import, so nothing here imports one at module import time; a client is built on
the first call that needs it (``LazyClient``), and ``sdk`` imports a module by name when it is first needed.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from responder.adapters.google_errors import google_call, is_transient
from responder.config import Settings
from responder.startup import ImportGate, first_load

T = TypeVar("T")


def client_kwargs(settings: Settings, endpoint: str | None) -> dict[str, Any]:
    """``client_options`` and ``credentials`` for a Google client, from Settings (one place for every adapter).

    ``endpoint`` may carry a scheme: the gapic REST transports and the Logging HTTP client keep ``http://`` when
    given, which is how tests point them at the local wire fake. Without ``anonymous_google`` the libraries use
    Application Default Credentials (the function's service account on Cloud Functions).
    """
    kwargs: dict[str, Any] = {}
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    if settings.anonymous_google:
        kwargs["credentials"] = sdk("google.auth.credentials").AnonymousCredentials()
    return kwargs


def retry_policy(deadline_s: float) -> Any:
    """Exponential backoff on transient failures within ``deadline_s`` seconds; ``None`` (one attempt) when 0."""
    if deadline_s <= 0:
        return None
    return sdk("google.api_core.retry").Retry(
        predicate=is_transient, initial=0.2, maximum=2.0, multiplier=2.0, timeout=deadline_s
    )


def sdk(module: str) -> Any:
    """Import an SDK module when it is first needed (each Google SDK costs 0.3-0.5 s of cold start), untyped."""
    return importlib.import_module(module)


def enum_name(value: Any) -> str | None:
    """An enum field's name (None for ``*_UNSPECIFIED``); proto-plus gives a bare int for a value newer than the SDK."""
    name = getattr(value, "name", None)
    if name is None:
        return str(value) if value else None
    return None if name.endswith("UNSPECIFIED") else str(name)


class LazyClient(Generic[T]):
    """Builds a client on first use, once, even when enrichment branches ask for it concurrently.

    Building a Google client imports its SDK (0.3-0.5 s each) and may look up Application Default Credentials, so
    it is deferred until an event actually needs that API. A failed build is not cached: the next call tries again.
    """

    def __init__(self, factory: Callable[[], T], what: str, gate: ImportGate | None = None) -> None:
        """``gate``: on a cold instance, the build (an SDK import) waits until containment's writes are done."""
        self._factory = factory
        self._what = what
        self._gate = gate
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The client, built now if it was not yet; build failures are translated like call failures."""
        value = self._value
        if value is not None:
            return value
        if self._gate is not None:
            self._gate.wait()
        with self._lock:
            if self._value is None:
                # An SDK's import: once per process, without the garbage collector (responder.startup).
                with google_call(f"{self._what}: building the client"), first_load(self._what):
                    self._value = self._factory()
            return self._value

    @property
    def built(self) -> bool:
        """True once the client exists (tests and ``close`` use it; no I/O)."""
        return self._value is not None
