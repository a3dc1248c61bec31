"""`make demo` is the README's first command: run it (JSON mode) and check what it claims happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_contains_both_pods() -> None:
    was_running = (
        subprocess.run(
            [sys.executable, "tools/kubeenv.py", "status", "--dir", ".testenv"],
            cwd=ROOT,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    try:
        result = subprocess.run(
            [sys.executable, "tools/demo.py", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    finally:
        if not was_running:
            subprocess.run(
                [sys.executable, "tools/kubeenv.py", "down", "--dir", ".testenv"],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
    assert result.returncode == 0, result.stderr[-3000:]
    prod, dev = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert prod["rule"] == "production-isolate"
    assert prod["pod"]["namespace"].startswith("prod-shop-")
    assert {a["action"]: a["status"] for a in prod["actions"]}["isolate"] == "succeeded"
    assert dev["rule"] == "development-delete"
    assert {a["action"]: a["status"] for a in dev["actions"]}["delete"] == "succeeded"
