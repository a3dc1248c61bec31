"""`make demo` is the README's first command: run it (JSON mode) and check what it claims happened, in the cluster
and at the attacker's end of each reverse shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kube import KubeEnv

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_contains_both_pods(kube_env: KubeEnv) -> None:
    # On the session's cluster: a second node beside it would share /var/log/pods, and each kubelet removes the log
    # folders of pods it does not know (the attacker's answers among them). The demo itself brings it `up` as usual.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env["RSR_DEMO_DIR"] = str(kube_env.directory)
    result = subprocess.run(
        [sys.executable, "tools/demo.py", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    prod, dev = [line for line in lines if "verdict" in line]
    if os.geteuid() == 0:  # the node runs the pods: each shop pod opened a real shell to an attacker pod
        seen = [line["attacker"] for line in lines if "attacker" in line]
        assert len(seen) == 2, lines
        for attacker in seen:  # the attacker's commands stopped getting answers, and stayed unanswered
            assert attacker["cut"] and attacker["answers_after_last"] == 0, attacker
            assert attacker["last_answer_ms_after_writes"] is not None, attacker
            assert attacker["last_answer_ms_after_writes"] < 5000, attacker
    assert prod["rule"] == "production-isolate"
    assert prod["pod"]["namespace"].startswith("prod-shop-")
    assert {a["action"]: a["status"] for a in prod["actions"]}["isolate"] == "succeeded"
    assert dev["rule"] == "development-delete"
    assert {a["action"]: a["status"] for a in dev["actions"]}["delete"] == "succeeded"
