"""Unit tests see a clean environment: no RESPONDER_* variable from the developer's shell leaks in, except the
dataplane behaviour every test cluster is taken to have (see tests/conftest.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RESPONDER_") or key in {"K_SERVICE", "PUBSUB_EMULATOR_HOST"}:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RESPONDER_NETPOL_ENFORCEMENT", "established")
