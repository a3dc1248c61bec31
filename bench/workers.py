"""Fresh processes: a worker (``python -m bench.run worker NAME``) or bench/probe.py, specs and results travelling as
JSON files; or a worker that stays up and answers one request at a time (:class:`Served`)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
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
    tag: str,
    env: dict[str, str],
    events: list[dict[str, Any]],
    tmp: Path,
    mode: str | None = None,
    profile: bool = False,
    root: Path = ROOT,
) -> dict[str, Any]:
    """bench/probe.py in a fresh process configured only through RESPONDER_* variables (``mode``: default ``tag``).
    ``profile``: first-event only, profiled up to the first write (bench/coldprofile.py), with ``-X importtime``.
    ``root``: the checkout whose ``main`` and ``responder`` run (another commit's worktree: its own bench/probe.py)."""
    mode = mode or tag
    events_path, out_path = tmp / f"probe-{tag}.jsonl", tmp / f"probe-{tag}.json"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    probe_env = clean_env(**env)
    probe_env.pop("PYTHONDONTWRITEBYTECODE", None)  # a deployed instance has its bytecode
    flags, extra = (["-X", "importtime"], ["--profile"]) if profile else ([], [])
    done = subprocess.run(
        [
            sys.executable,
            *flags,
            "-m",
            "bench.probe",
            mode,
            "--events",
            str(events_path),
            "--out",
            str(out_path),
            *extra,
        ],
        cwd=root,
        env=probe_env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if profile else None,
        text=True,
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    if profile:
        from bench.coldprofile import modules_before

        result["profile"] = {**result.get("profile", {}), **modules_before(done.stderr)}
    return result


class Served:
    """A worker process that stays up between requests (``python -m bench.run serve NAME SPEC``): one JSON line in on
    its stdin, one JSON line back on its stdout, so that two workers (two commits' responders) can take turns event by
    event. Its first line, sent unasked once it is ready, says where its code came from."""

    def __init__(self, name: str, spec: dict[str, Any], tmp: Path, tag: str) -> None:
        spec_path = tmp / f"{name}-{tag}.spec.json"
        spec_path.write_text(json.dumps(spec))
        self.name = f"{name} ({tag})"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.run", "serve", name, str(spec_path)],
            cwd=ROOT,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._read()

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench: the {self.name} worker exited ({self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(factory: Callable[[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]], spec_path: str) -> int:
    """The worker side of :class:`Served`. Decision records (this process's stdout) go to /dev/null; replies go out
    on a copy of the original stdout. ``code_root`` in the spec: the checkout whose ``responder`` package is measured
    (another commit's worktree), put first on sys.path before anything imports it; the harness stays this one."""
    replies = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("code_root"):
        assert "responder" not in sys.modules, "the responder was imported before its checkout was chosen"
        sys.path.insert(0, spec["code_root"])
    handle = factory(spec)
    for line in itertools.chain([json.dumps({"op": "hello"})], sys.stdin):  # one request at a time, as it comes
        replies.write(json.dumps(handle(json.loads(line)), default=str) + "\n")
        replies.flush()
    return 0
