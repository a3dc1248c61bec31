"""A cold instance loads the responder with the cyclic collector paused, then freezes what it loaded: once per name
and process, resumed when the last load ends, and never turned on where it was off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from responder import startup


@pytest.fixture(autouse=True)
def _collector() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    startup._pause = startup._Pause()  # every test starts as a fresh process would
    yield
    gc.unfreeze()  # what a test froze is the suite's to collect again
    gc.enable() if was else gc.disable()


def test_the_first_load_runs_with_the_collector_paused_and_freezes_what_it_built() -> None:
    frozen = gc.get_freeze_count()
    with startup.first_load("responder.handler"):
        assert not gc.isenabled()
        built = [[] for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(built)


def test_a_later_load_of_the_same_name_leaves_the_collector_alone() -> None:
    with startup.first_load("responder"):
        pass
    frozen = gc.get_freeze_count()
    with startup.first_load("responder"):
        assert gc.isenabled()  # an event's garbage is never frozen
        garbage = [[] for _ in range(1000)]
    assert gc.get_freeze_count() == frozen and garbage


def test_loads_on_several_threads_resume_the_collector_when_the_last_ends() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with startup.first_load("responder"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with startup.first_load("responder.handler"):
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread is still loading
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with startup.first_load("responder.handler"):
        pass
    assert not gc.isenabled()
