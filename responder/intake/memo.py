"""The findings this instance decoded lately, by the bytes they came from.

A redelivery carries the very bytes of the delivery before it (Pub/Sub delivers the message again, not a new rendering
of it), and decoding them (bounded JSON, the notification schema, the reduction to a :class:`Finding`) is a pure
function of those bytes: the same bytes give the same, frozen, Finding. So an instance keeps what it decoded, keyed by
the bytes' SHA-256, and a redelivery to it skips that work (a tenth of a converged redelivery's CPU; see
docs/performance.md). Nothing else is reused: the redelivery is judged afresh (SCC's word, the cluster's state).
Bytes that fail to decode are not kept; they fail again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

from responder.intake.findings import Finding

DECODED_MEMORY = 256  # findings kept per instance (a few KiB each)


class Decoded:
    """Bounded, thread-safe, least recently used first out."""

    def __init__(self, size: int = DECODED_MEMORY) -> None:
        self._known: OrderedDict[bytes, Finding] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def finding(self, payload: bytes, decode: Callable[[bytes], Finding]) -> Finding:
        """The Finding ``decode`` makes of ``payload``: decoded once per instance; its errors raised every time."""
        key = hashlib.sha256(payload).digest()
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
                return known
        decoded = decode(payload)
        with self._lock:
            self._known[key] = decoded
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return decoded
