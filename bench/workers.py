"""Fresh processes: a worker (``python -m bench.run worker NAME``) or bench/probe.py; specs and results travel as
JSON files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, clean_env


def run_worker(name: str, spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run a worker in a fresh process; the spec and the result travel as JSON files."""
    spec_path, out_path = tmp / f"{name}.spec.json", tmp / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "bench.run", "worker", name, str(spec_path), str(out_path)],
        cwd=ROOT,
        env=clean_env(),
        check=True,
        stdout=subprocess.DEVNULL,  # decision records
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


def run_probe(
    tag: str, env: dict[str, str], events: list[dict[str, Any]], tmp: Path, mode: str | None = None
) -> dict[str, Any]:
    """bench/probe.py in a fresh process configured only through RESPONDER_* variables (``mode``: default ``tag``)."""
    mode = mode or tag
    events_path, out_path = tmp / f"probe-{tag}.jsonl", tmp / f"probe-{tag}.json"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    probe_env = clean_env(**env)
    probe_env.pop("PYTHONDONTWRITEBYTECODE", None)  # a deployed instance has its bytecode
    subprocess.run(
        [sys.executable, "-m", "bench.probe", mode, "--events", str(events_path), "--out", str(out_path)],
        cwd=ROOT,
        env=probe_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result
