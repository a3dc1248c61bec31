"""``Publisher`` over Pub/Sub (``google-cloud-pubsub``; gRPC).

The client honours ``PUBSUB_EMULATOR_HOST`` by itself (insecure channel, anonymous credentials), which is how the
tests and ``make demo`` reach the local emulator. Needs ``pubsub.topics.publish`` on the report topic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from responder.adapters.google_clients import LazyClient, client_kwargs, sdk
from responder.adapters.google_errors import google_call
from responder.config import Settings
from responder.errors import ConfigError, PermanentError

_TOPIC = re.compile(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}")
# PublisherClient.publish(topic, data, ordering_key=, retry=, timeout=, **attrs): these names cannot be attributes.
_RESERVED_ATTRIBUTES = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})
MAX_DATA_BYTES = 10_000_000  # Pub/Sub's per-message limit (the request limit is 10 MB)


class PubSubPublisher:
    """Publishes one message and waits until the server has it."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        """``timeout_s`` bounds the publish RPC (with the client's own retries) and the wait for its result."""
        self._settings = settings
        self._timeout_s = timeout_s
        self._client: LazyClient[Any] = LazyClient(self._build, "Pub/Sub")

    def _build(self) -> Any:
        return sdk("google.cloud.pubsub_v1").PublisherClient(**client_kwargs(self._settings, None))

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish ``data`` with ``attributes``; returns the server's message ID."""
        if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
            raise ConfigError(f"Pub/Sub topic {str(topic)[:120]!r} is not projects/<project>/topics/<topic>")
        if len(data) > MAX_DATA_BYTES:
            raise PermanentError(f"Pub/Sub message of {len(data)} bytes exceeds {MAX_DATA_BYTES}")
        attrs = dict(attributes)
        clash = _RESERVED_ATTRIBUTES.intersection(attrs)
        if clash:
            raise PermanentError(f"Pub/Sub attribute names {sorted(clash)} are reserved by the client library")
        with google_call(f"Pub/Sub publish {topic}"):
            client = self._client.get()
            try:
                future = client.publish(topic, bytes(data), timeout=self._timeout_s, **attrs)
            except (TypeError, ValueError) as exc:  # the client checks types and sizes before sending
                raise PermanentError(f"Pub/Sub publish {topic}: {exc}") from exc
            return str(future.result(timeout=self._timeout_s + 1.0))

    def close(self) -> None:
        """Flush pending batches and stop the client's commit threads."""
        if self._client.built:
            self._client.get().stop()
