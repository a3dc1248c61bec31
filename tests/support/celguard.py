"""The admission guard as a Kubernetes apiserver compiles and evaluates it: tests/celguard, built with Go.

cel-python (tests/support/admission_guard.py) runs the guard's expressions, but it is not Kubernetes' CEL: it accepts
expressions a 1.30+ apiserver refuses when the policy is created (a map literal with mixed value types, a function
outside Kubernetes' library set), and it has no cost limits. tests/celguard is a small Go program on k8s.io/apiserver
that compiles every expression in Kubernetes' own CEL environment, as the apiserver's validation does on create, and
evaluates requests with the admission plugin's own code. This module builds it once per source version into a cache
directory (``$RSR_CACHE_DIR`` or ``~/.cache/rsr``, next to the Kubernetes binaries), Go fetching the pinned modules
through the module proxy with go.sum checked, and runs it: JSON on stdin, JSON on stdout.

Without a Go toolchain the tests that need it are skipped, loudly, and under ``CI=true`` they fail: a check of what the
cluster would refuse must never vanish silently there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.admission_guard import IDENTITY, REPO_ROOT, Decision
from tests.support.common import ci

SOURCE = REPO_ROOT / "tests" / "celguard"
BUILD_TIMEOUT_S = 900  # the first build downloads k8s.io/apiserver's modules and compiles them
RUN_TIMEOUT_S = 120


def _cache_root() -> Path:
    return Path(os.environ.get("RSR_CACHE_DIR") or Path.home() / ".cache" / "rsr")


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        if path.is_file() and (path.suffix == ".go" or path.name in {"go.mod", "go.sum"}):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build() -> Path:
    """The tool's binary for the current sources, built if the cache has none. Skips (fails under CI) without Go."""
    go = shutil.which("go")
    if go is None:
        reason = (
            "!!! Go toolchain NOT FOUND: the admission guard cannot be compiled in Kubernetes' CEL environment "
            "(tests/celguard needs `go` on PATH)"
        )
        if ci():
            pytest.fail(f"{reason}; under CI this is a failure, not a skip !!!", pytrace=False)
        pytest.skip(f"{reason}; these checks are SKIPPED, not passed !!!")
    target = _cache_root() / f"celguard-{_source_digest()}" / "celguard"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # -mod=readonly: go.mod and go.sum are used as committed (a missing or wrong sum is an error, not an update).
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / "celguard"
        done = subprocess.run(
            [go, "build", "-trimpath", "-o", str(built), "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"building tests/celguard failed:\n{done.stderr[-4000:]}", pytrace=False)
        os.replace(built, target)  # atomic: a concurrent run sees either no binary or a whole one
    return target


@dataclass(frozen=True)
class CompileError:
    """One expression the apiserver would refuse (``field`` as in its error, ``mode`` the environment used)."""

    field: str
    mode: str
    detail: str


@dataclass(frozen=True)
class Request:
    """One admission request: as ``tests.support.admission_guard.admission_request`` shapes it, plus its objects."""

    request: Mapping[str, Any]
    obj: Any = None
    old: Any = None


class CelGuard:
    """Runs the built tool on one policy."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(
        self, policy: Mapping[str, Any], requests: Sequence[Request] = ()
    ) -> tuple[list[CompileError], list[Decision]]:
        """Compile errors, and (when there are none) one decision per request, in order."""
        payload = {"policy": policy, "requests": [_wire(r) for r in requests]}
        done = subprocess.run(
            [str(self.binary), "check"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"celguard failed ({done.returncode}): {done.stderr[-2000:]}")
        out = json.loads(done.stdout)
        errors = [CompileError(**e) for e in out["compile"] or ()]
        decisions = [
            Decision(
                matched=r["matched"],
                refusals=tuple(r["refusals"]) + tuple(f"(error: {e})" for e in r["errors"]),
            )
            for r in out["reviews"]
        ]
        return errors, decisions

    def compile_errors(self, policy: Mapping[str, Any]) -> list[CompileError]:
        return self.run(policy)[0]

    def review(self, policy: Mapping[str, Any], requests: Sequence[Request]) -> list[Decision]:
        """Decisions for requests the policy's match constraints select (the caller checks those, see Guard)."""
        errors, decisions = self.run(policy, requests)
        if errors:
            raise AssertionError(f"the policy does not compile in Kubernetes' CEL environment: {errors}")
        assert len(decisions) == len(requests), (len(decisions), len(requests))
        return decisions


def _wire(r: Request) -> dict[str, Any]:
    request = r.request
    user = request.get("userInfo", {})
    return {
        "operation": request["operation"],
        "resource": request["resource"],
        "subResource": request.get("subResource", ""),
        "namespace": request.get("namespace", ""),
        "name": request.get("name", ""),
        "user": user.get("username", ""),
        "groups": user.get("groups", []),
        "object": r.obj,
        "oldObject": r.old,
    }


__all__ = ["IDENTITY", "CelGuard", "CompileError", "Request", "build"]
