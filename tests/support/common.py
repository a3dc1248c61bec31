"""Helpers every test tier shares: delivering a notification, reading an outcome, naming, running the CLI.

Only what was written the same way in several test modules lives here; a helper with a module's own defaults (its
sample finding, its policy) stays in that module and builds on these.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from responder.intake.envelope import Delivery

if TYPE_CHECKING:  # the service's import graph is large, and the pytest plugins load this module before any test
    import pytest

    from responder.report.outcome import Outcome
    from responder.service import Responder

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------ one delivery


def deliver(responder: Responder, doc: dict[str, Any], attempt: int | None = None) -> Outcome:
    """``doc`` as one test delivery (attempt ``attempt``, as Pub/Sub counts them)."""
    return responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test", delivery_attempt=attempt))


def acts(outcome: Any) -> dict[str, Any]:
    """The record's steps and write-backs by action name (of a response's outcome or a release's)."""
    return {a.action: a for a in [*outcome.record.actions, *outcome.record.writebacks]}


def records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The decision records this process printed since the last read (stdout's JSON lines)."""
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------------------------------------------ naming


def unique(prefix: str) -> str:
    """A fresh name: on a reused cluster other runs' objects exist too."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------- the CLI, as a user


def ci() -> bool:
    """Whether this run is CI's, where a missing prerequisite is a broken machine rather than a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def environ_without_settings() -> dict[str, str]:
    """This process's environment minus the responder's settings and K_SERVICE (in Google Cloud: APIs on)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_") and k != "K_SERVICE"}


def responder_cli(
    *args: str, env: Mapping[str, str] | None, timeout: float | None = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m responder ARGS`` from the repository root; ``env=None`` inherits this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "responder", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
