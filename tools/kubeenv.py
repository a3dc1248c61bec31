#!/usr/bin/env python3
"""The local Kubernetes cluster's command: ``python3 tools/kubeenv.py build|up|down|status|rbac|netpol``.

A thin entry to tools/cluster/ (standard library only), kept at this path because the Makefile, the tests, the bench
and the demo run it; ``import kubeenv`` (tools/ on sys.path) still offers ``footprint``, ``up``, ``down`` and ``main``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster.cli import main
from cluster.down import down, footprint
from cluster.up import up

__all__ = ["down", "footprint", "main", "up"]

if __name__ == "__main__":
    sys.exit(main())
