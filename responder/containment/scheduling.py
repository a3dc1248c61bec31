"""One home for "what waits for what" within an event.

Time to containment is the product, so an event's isolating writes go out first and alone: work that is not
containment's own (evidence, the investigation, SCC's verification) is queued behind them (:class:`WritesOut`), and on
a cold instance the SDK loads that work needs are held back too (:class:`responder.startup.ImportGate`). An event's
:class:`Schedule` owns both: the pipeline and the runner ask it to queue work or to let what waits go ahead, and
nothing else opens either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from responder.errors import ResponderError
from responder.startup import ImportGate

T = TypeVar("T")


def attempt(call: Callable[[], object]) -> object:
    """What ``call`` returned, or the :class:`ResponderError` it raised (returned, so one failure hides no other)."""
    try:
        return call()
    except ResponderError as exc:
        return exc


def at_once(pool: Executor | None, calls: list[Callable[[], object]]) -> list[object]:
    """Run independent calls at once on ``pool``: what each returned, or its error (see :func:`attempt`). Without a
    pool they run in turn; a single call runs on the caller's thread, which would only wait for it."""
    if pool is None or len(calls) < 2:
        return [attempt(c) for c in calls]
    futures = [pool.submit(attempt, c) for c in calls]
    return [f.result() for f in futures]


class WritesOut:
    """Opens once: when an event's isolating writes are acknowledged, or when it turns out there are none to make.

    Work that is not containment's own (evidence, the investigation, SCC's verification) is queued here with
    :meth:`later` and submitted to its pool when this opens, so its requests go out behind the isolating writes
    instead of ahead of or alongside them, competing for the same round trip, the same interpreter and the
    apiserver. Acknowledged, not merely sent (issue 33): reads sent right behind the pod patch made the apiserver
    take 25–95 ms over it instead of 10–27 ms on the bench's node, and the cut waited for that. Nothing waits
    in a thread meanwhile (no pool can fill up with waiters); whoever runs an event opens it when done, whatever
    happened, so queued work always starts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._queued: list[Callable[[], None]] = []

    @property
    def is_open(self) -> bool:
        """Whether queued work has been released (and new work starts at once)."""
        return self._open

    def open(self) -> None:
        """Release the queued work (idempotent)."""
        with self._lock:
            if self._open:
                return
            self._open = True
            queued, self._queued = self._queued, []
        for start in queued:
            start()

    def later(self, pool: Executor, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``pool.submit(fn, *args)`` once open (at once if it is); the returned future stands for it meanwhile."""
        out: Future[T] = Future()

        def start() -> None:
            try:
                inner = pool.submit(fn, *args)
            except RuntimeError as exc:  # the pool was shut down meanwhile (the process is ending)
                out.set_exception(exc)
                return
            inner.add_done_callback(lambda done: _settle_from(out, done))

        with self._lock:
            if not self._open:
                self._queued.append(start)
                return out
        start()
        return out


def _settle_from(out: Future[T], done: Future[T]) -> None:
    error = done.exception()
    if error is not None:
        out.set_exception(error)
    else:
        out.set_result(done.result())


class Schedule:
    """One event's order of work: what waits for its isolating writes, and (on a cold instance) for SDK loads.

    ``gate`` is the process's import gate (None: nothing is held back); ``writes_out`` is this event's own latch.
    """

    def __init__(self, gate: ImportGate | None) -> None:
        self.gate = gate
        self.writes_out = WritesOut()

    @property
    def cold(self) -> bool:
        """A cold instance's first containment: SDK loads are still held back."""
        return self.gate is not None and not self.gate.is_open

    def later(self, pool: Executor, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` on ``pool`` behind the isolating writes (see :meth:`WritesOut.later`)."""
        return self.writes_out.later(pool, fn, *args)

    def writes_done(self) -> None:
        """The isolating writes are acknowledged, or there are none to make: what was queued behind them starts."""
        self.writes_out.open()

    def warm(self) -> None:
        """Let the SDK loads that a cold instance held back go ahead (idempotent; see ``ImportGate``)."""
        if self.gate is not None:
            self.gate.open()

    def settle(self) -> None:
        """About to wait on something other than the event's own writes: let everything held back go ahead."""
        self.writes_done()
        self.warm()

    def when_warm(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` once the instance is warm (at once, unless this is a cold instance's first containment)."""
        if self.gate is not None:
            self.gate.wait()
        return fn(*args)


def resolved(value: T) -> Future[T]:
    """A future that already holds ``value``: a read made synchronously, handed where a read under way would go."""
    future: Future[T] = Future()
    future.set_result(value)
    return future
