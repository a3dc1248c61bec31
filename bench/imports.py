"""Import times in fresh interpreters (``import_main_s``, ``import_floor_s``, ``import_eager_s``,
``python_startup_s``, ``import_main_nocache_s``) and where ``import main`` spends its time."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import IMPORT_RUNS, ROOT, clean_env

EAGER_IMPORTS = (
    "functions_framework, pydantic, pydantic_settings, google.cloud.securitycenter_v1, "
    "google.cloud.securitycenter_v2, google.cloud.logging, google.cloud.pubsub_v1, google.cloud.container_v1, "
    "kubernetes, google.auth, yaml, tenacity"
)


def _wall(code: str, cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_imports(runs: int = IMPORT_RUNS) -> tuple[dict[str, float], dict[str, Any]]:
    """Median wall times of fresh interpreters importing the entry point, its floor, everything eagerly."""
    snippets = {
        "python_startup_s": "pass",
        "import_floor_s": "import functions_framework, pydantic",
        "import_main_s": "import main",
        "import_eager_s": f"import {EAGER_IMPORTS}",
    }
    cached = clean_env()
    cached.pop("PYTHONDONTWRITEBYTECODE", None)  # a deployed instance has its bytecode: let the warm-up write it
    nocache_dir = Path(tempfile.mkdtemp(prefix="rsr-bench-src-"))
    try:
        shutil.copy2(ROOT / "main.py", nocache_dir / "main.py")
        shutil.copytree(ROOT / "responder", nocache_dir / "responder", ignore=shutil.ignore_patterns("__pycache__"))
        nocache = clean_env(PYTHONDONTWRITEBYTECODE="1")
        for code in snippets.values():
            _wall(code, ROOT, cached)  # warm-up: bytecode and the OS page cache
        samples: dict[str, list[float]] = {name: [] for name in [*snippets, "import_main_nocache_s"]}
        for _ in range(runs):
            for name, code in snippets.items():
                samples[name].append(_wall(code, ROOT, cached))
            samples["import_main_nocache_s"].append(_wall("import main", nocache_dir, nocache))
    finally:
        shutil.rmtree(nocache_dir, ignore_errors=True)
    figures = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    details = {"runs": runs, "samples_s": {k: [round(v, 3) for v in vs] for k, vs in samples.items()}}
    details["main_import_breakdown_ms"] = import_breakdown(cached)
    return figures, details


def import_breakdown(env: dict[str, str], top: int = 12) -> dict[str, float]:
    """``-X importtime`` of ``import main``: the heaviest modules by cumulative time (a hint where the time goes)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[int, str, int]] = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, name.strip(), int(parts[1])))
    # Direct children of main and of responder.handler: the layers `import main` pulls in.
    wanted = [r for r in rows if r[0] <= 2]
    wanted.sort(key=lambda r: r[2], reverse=True)
    return {name: round(us / 1000, 1) for _, name, us in wanted[:top]}
