"""One retry policy for transient failures, shared by every adapter.

Backoff with jitter inside a deadline: enough to ride out a 503 or a 429 burst, short enough that a Pub/Sub
redelivery (which is the outer retry) takes over instead of the function timing out mid-containment.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from responder.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_DEADLINE_S = 20.0
DEFAULT_ATTEMPTS = 6
FIRST_WAIT_S = 0.1  # the backoff's first step: the wait before the second attempt is uniform in [0, this]


def transient_retry(
    deadline_s: float = DEFAULT_DEADLINE_S, attempts: int = DEFAULT_ATTEMPTS
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry :class:`TransientError` with jittered exponential backoff until ``deadline_s`` or ``attempts``."""
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

    return retry(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=FIRST_WAIT_S, max=2.0),
        stop=stop_after_delay(deadline_s) | stop_after_attempt(attempts),
        reraise=True,
    )


def retry_failed(fn: Callable[[], R], started: float, deadline_s: float = DEFAULT_DEADLINE_S) -> R:
    """The rest of :func:`transient_retry`'s schedule for a call whose first attempt (at ``started``, monotonic)
    already failed transiently: the first wait, then the other attempts within what is left of the deadline. For
    callers that send the first attempt without the retry machinery (its CPU and its import on a cold instance)."""
    time.sleep(random.uniform(0, FIRST_WAIT_S))  # noqa: S311 - jitter, not security
    left = max(0.0, deadline_s - (time.monotonic() - started))
    retried: Any = transient_retry(deadline_s=left, attempts=DEFAULT_ATTEMPTS - 1)(fn)
    return retried()  # type: ignore[no-any-return]
