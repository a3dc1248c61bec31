"""One retry policy for transient failures, shared by every adapter.

Backoff with jitter inside a deadline: enough to ride out a 503 or a 429 burst, short enough that a Pub/Sub
redelivery (which is the outer retry) takes over instead of the function timing out mid-containment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

from responder.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_DEADLINE_S = 20.0
DEFAULT_ATTEMPTS = 6


def transient_retry(
    deadline_s: float = DEFAULT_DEADLINE_S, attempts: int = DEFAULT_ATTEMPTS
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry :class:`TransientError` with jittered exponential backoff until ``deadline_s`` or ``attempts``."""
    return retry(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(deadline_s) | stop_after_attempt(attempts),
        reraise=True,
    )
