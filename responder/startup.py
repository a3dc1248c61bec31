"""What an instance does once: it loads the responder, and later each SDK, without the cyclic garbage collector in
the way (:func:`first_load`), and on a cold instance it holds the SDK loads back until its first containment's
writes are done (:class:`ImportGate`).

A load (the responder's import and build; a Google client's SDK; the ``kubernetes`` client) allocates tens of
thousands of objects that live as long as the process: modules, classes, functions, compiled patterns. With the
collector on, every young collection during the load walks what it has allocated so far, and the older generations
walk it again as it is promoted: 30 to 50 ms of the cold path before the first isolating write, on a path of about
250 ms (``python -m bench.run cold``). None of it is garbage worth the walk (a full collection after the responder's
load frees under 1,000 objects of about 54,000), so the collector is paused during a load, and what was loaded is
then frozen (:func:`gc.freeze`): moved where no later collection walks it again. That matters as much on a warm
instance: with the SDKs loaded, one full collection walked about 230,000 objects and took 143 ms of CPU on the bench
machine, about 0.24 ms of every converged redelivery's 2.5 ms. Frozen objects are still freed when nothing refers to
them; only the cycles among what was alive at a freeze stay, a few per load, once per process.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pause:
    """Which one-time loads have run, how many run now, and whether the collector ran before the first began."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: set[str] = set()
        self.loading = 0
        self.resume = False


_pause = _Pause()


@contextmanager
def first_load(name: str) -> Iterator[None]:
    """The first time per process that ``name`` loads: the cyclic collector paused, then what it built frozen and the
    collector resumed (if it ran before). Every later time: nothing (freezing then would keep an event's garbage, or a
    test's, for good).

    Loads on several threads at once (a cold instance given several events) resume the collector when the last ends.
    """
    with _pause.lock:
        first = name not in _pause.done
        if first:
            _pause.done.add(name)
            if _pause.loading == 0:
                _pause.resume = gc.isenabled()
                gc.disable()
            _pause.loading += 1
    if not first:
        yield
        return
    try:
        yield
    finally:
        with _pause.lock:
            _pause.loading -= 1
            if _pause.loading == 0:
                gc.freeze()
                if _pause.resume:
                    gc.enable()


class ImportGate:
    """Holds heavy SDK loads back on a cold instance until the first containment's writes are done.

    Loading a Google SDK or the ``kubernetes`` client is seconds of CPU in total and takes the import lock; on a cold
    instance those loads would run in the investigation's and the verification's threads while the pod read and the
    isolating writes are being built and parsed, and slow them down. So an adapter that is about to load an SDK waits
    here first; the pipeline opens the gate as soon as its writes are done (or when it has none to make). Once open,
    it stays open: a warm instance never waits. ``max_wait_s`` bounds every wait, so a path that forgets to open the
    gate costs time, never a deadlock. A gate made with ``closed=False`` (the default for adapters built by hand, in
    tests and operator commands) never holds anything.
    """

    def __init__(self, *, closed: bool = False, max_wait_s: float = 3.0) -> None:
        self._event = threading.Event()
        self.max_wait_s = max_wait_s
        if not closed:
            self._event.set()

    def open(self) -> None:
        """Let every waiting and future load through."""
        self._event.set()

    @property
    def is_open(self) -> bool:
        """Whether loads go through without waiting."""
        return self._event.is_set()

    def wait(self) -> None:
        """Block until open, at most ``max_wait_s``."""
        self._event.wait(self.max_wait_s)
