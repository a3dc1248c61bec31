"""The guard tier: the Go evaluator, built once per session, and the unit tier's clean environment (these tests run
the responder in process, as the unit tests of the guard do)."""

from __future__ import annotations

import pytest

from tests.support import celguard
from tests.support.admission_guard import Guard, load_guard
from tests.unit.conftest import _clean_env

__all__ = ["_clean_env", "guard", "kubernetes_cel"]


@pytest.fixture(scope="session")
def kubernetes_cel() -> celguard.CelGuard:
    """The Go evaluator (built on first use; skipped without Go, failed under CI)."""
    return celguard.CelGuard(celguard.build())


@pytest.fixture(scope="module")
def guard() -> Guard:
    """The manifest's policy, as cel-python evaluates it (its match constraints decide what the Go one is asked)."""
    return load_guard()
