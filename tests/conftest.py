"""The test tiers are folders: a test's tier marker is the folder it lives in (tests/README.md), added here, so
``-m unit`` or ``-m node`` selects exactly tests/unit or tests/node and a tier runs with what it needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests' clusters are taken to cut established connections (the local node's dataplane does, in its default
# `established` mode; GKE Dataplane V2 does) unless a test states another behaviour: with a kubeconfig the
# responder's `auto` would assume new-only and escalate every isolation to a delete. Tests of `auto`, `new-only` and
# `none` set RESPONDER_NETPOL_ENFORCEMENT themselves (a Settings argument or the replay's environment).
os.environ.setdefault("RESPONDER_NETPOL_ENFORCEMENT", "established")

pytest_plugins = [
    "tests.support.kube",
    "tests.support.google_fakes",
    "tests.support.pubsub_emulator",
    "tests.support.ffserver",
]

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "guard", "contract", "integration", "node", "e2e", "terraform")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its folder's tier marker; one that names another tier is an error, not a second tier."""
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(TESTS):
            continue
        relative = path.relative_to(TESTS).parts
        tier = relative[0] if len(relative) > 1 and relative[0] in TIERS else None
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of the tier folders {', '.join(TIERS)}")
        other = sorted({m.name for m in item.iter_markers() if m.name in TIERS} - {tier})
        if other:
            raise pytest.UsageError(f"{item.nodeid} is marked {', '.join(other)}, but its folder says {tier}")
        item.add_marker(tier)
