"""Every Kubernetes call goes through ``kube_errors.call``: translated errors, transient ones retried within the
deadline, and the first attempt sent without the retry machinery (which a cold instance then never imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from responder.adapters.kube_errors import call
from responder.adapters.retrying import DEFAULT_ATTEMPTS
from responder.errors import Forbidden, KubeHttpError, TransientError

ROOT = Path(__file__).resolve().parents[2]


def failing(statuses: list[int]) -> tuple[list[int], object]:
    tries: list[int] = []

    def fn() -> str:
        tries.append(1)
        if len(tries) <= len(statuses):
            raise KubeHttpError(statuses[len(tries) - 1], "x", "{}")
        return "ok"

    return tries, fn


def test_a_transient_failure_is_retried_until_it_heals() -> None:
    tries, fn = failing([503, 429])
    assert call("get pod", fn) == "ok"  # type: ignore[arg-type]
    assert len(tries) == 3


def test_a_failure_that_does_not_heal_ends_after_the_attempts() -> None:
    tries, fn = failing([503] * 20)
    with pytest.raises(TransientError, match="get pod: 503"):
        call("get pod", fn)  # type: ignore[arg-type]
    assert len(tries) == DEFAULT_ATTEMPTS


def test_a_refusal_is_not_retried() -> None:
    tries, fn = failing([403])
    with pytest.raises(Forbidden):
        call("get pod", fn)  # type: ignore[arg-type]
    assert len(tries) == 1


def test_a_call_that_succeeds_loads_no_retry_library() -> None:
    probe = (
        "import sys; from responder.adapters.kube_errors import call; call('x', lambda: 1); "
        "print('tenacity' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
