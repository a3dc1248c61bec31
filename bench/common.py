"""What every part of the bench shares: paths, the latency L, sample counts, the policy, logging, medians."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
KUBEENV = ROOT / "tools" / "kubeenv.py"
SHARED_ENV = ROOT / ".testenv"
BENCH_ENV = ROOT / ".testenv-bench"
BENCH_API_ENV = ROOT / ".testenv-bench-api"  # control plane only (`--no-node`): no kubelet, no containers
RBAC_MANIFEST = ROOT / "deploy" / "kubernetes" / "rbac.yaml"
TEST_NAMESPACE_LABEL = "rsr-test"  # what tests/support/kube.py labels its namespaces with: leftovers are findable
L_S = 0.050
IMPORT_RUNS = 9
CONTAINMENT_SAMPLES = 5
COLD_SAMPLES = 3
REDELIVERY_SAMPLES = 7  # full event + converged redelivery pairs per commit and latency
RESUME_SAMPLES = 3  # per commit: findings redelivered after SCC failed, forged messages
CUT_SAMPLES = 5  # live reverse shells per side and latency (each is two pods on the node)
IGNORE_EVENTS = 2000
WORKERS = (os.cpu_count() or 1) * 4  # functions-framework's gunicorn: THREADS defaults to 4 per CPU
POLICY = """\
version: 1
defaults:
  mode: enforce
  budget: {max_actions: 100000, window_s: 3600}
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without RESPONDER_* (the measured processes are configured explicitly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(extra)
    return env


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def _median3(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else float("nan")
