"""Starting, awaiting, checking and stopping the cluster's processes (each in its own session, its pid recorded at
once so `down` can stop it even after a crash)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node import host

from cluster.common import PROCESS_ORDER, log
from cluster.layout import Layout, write_private


def process_alive(pid: int, binary: str | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, runs `binary`: a recycled PID must never be signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # Field 3 is the state; it follows the parenthesised command name, which may itself contain spaces.
    if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        return False  # our detached children are reaped by init, which may be slow (or absent in a container)
    return binary is None or (bool(cmdline) and cmdline[0].decode(errors="replace") == binary)


def https_get(url: str, ca_file: Path, token: str | None = None, timeout: float = 3.0) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def check_health(state: dict[str, Any]) -> list[str]:
    """Problems with a recorded cluster; empty means healthy."""
    problems = []
    for name, pid in state.get("pids", {}).items():
        if not process_alive(int(pid), state.get("binaries", {}).get(name)):
            problems.append(f"{name} (pid {pid}) is not running")
    if problems:
        return problems
    try:
        status, body = https_get(f"{state['server']}/readyz", Path(state["ca_file"]), state["admin_token"])
    except (OSError, KeyError, ssl.SSLError) as exc:
        return [f"apiserver /readyz unreachable: {exc}"]
    if status != 200:
        problems.append(f"apiserver /readyz answered {status}: {body[:200]}")
    elif state.get("mode") == "node":
        try:
            ready, reason = node_status(state["server"], Path(state["ca_file"]), state["admin_token"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            ready, reason = False, str(exc)
        if not ready:
            problems.append(f"node {host.NODE_NAME} not Ready: {reason[:200]}")
    return problems


def start_process(
    name: str, args: list[str], layout: Layout, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    layout.logs.mkdir(parents=True, exist_ok=True)
    with (layout.logs / f"{name}.log").open("ab") as log_file:
        # No shell; own session, so the processes outlive `up` and a Ctrl-C in the user's terminal does not reach them.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=layout.dir,
            env={**os.environ, **env} if env else None,
        )
    # Recorded at once, so `down` can stop it even if `up` dies before writing state.json.
    pids = json.loads(layout.pids.read_text()) if layout.pids.exists() else {"pids": {}, "binaries": {}}
    pids["pids"][name] = proc.pid
    # nsenter execs the program: once running, the process is the binary itself (the identity `down` checks).
    pids["binaries"][name] = args[args.index("--") + 1] if args[0] == "nsenter" else args[0]
    write_private(layout.pids, json.dumps(pids))
    return proc


def log_tail(layout: Layout, name: str, lines: int = 30) -> str:
    try:
        return "".join((layout.logs / f"{name}.log").read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, procs: dict[str, subprocess.Popen[bytes]]
) -> float:
    """Polls check() until it returns True; fails early (with the log tail) if a started process exits."""
    started = time.monotonic()
    last_error = ""
    while time.monotonic() - started < timeout:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise StartupError(f"{name} exited with {proc.returncode} while waiting for {what}", name)
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ssl.SSLError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what} {last_error}".rstrip(), None)


class StartupError(Exception):
    def __init__(self, message: str, process: str | None) -> None:
        super().__init__(message)
        self.process = process


def stop_pids(pids: dict[str, int], binaries: dict[str, str], timeout: float = 10.0) -> None:
    """SIGTERM in reverse start order, SIGKILL whatever is still alive after `timeout`."""
    ordered = sorted(pids, key=lambda n: PROCESS_ORDER.index(n) if n in PROCESS_ORDER else -1, reverse=True)
    for name in ordered:
        pid = int(pids[name])
        if not process_alive(pid, binaries.get(name)):
            continue
        log(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid, binaries.get(name)) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps it if it happens to be our own child
            time.sleep(0.1)
        if process_alive(pid, binaries.get(name)):
            log(f"{name} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def node_status(server: str, ca_file: Path, token: str) -> tuple[bool, str]:
    """(Ready, a short reason) for the node named 127.0.0.1."""
    code, body = https_get(f"{server}/api/v1/nodes/{host.NODE_NAME}", ca_file, token)
    if code != 200:
        return False, f"node {host.NODE_NAME}: HTTP {code}"
    for condition in json.loads(body).get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status") == "True", condition.get("message", "")
    return False, "no Ready condition yet"


def kill_pids(pids: list[int], what: str) -> None:
    for pid in pids:
        log(f"stopping {what} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def cgroup_pids(names: host.NodeNames) -> list[int]:
    """Every process in the node's cgroup parent: the pods' processes, nothing else (the kubelet put them there)."""
    pids: set[int] = set()
    for top in host.cgroup_dirs(names):
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return sorted(pids)
