"""A live functions-framework server running ``main.handle_finding`` on loopback, for end-to-end tests.

It is the real server (the same ``functions-framework`` command Cloud Functions runs), in its own process, with the
responder configured only through environment variables, exactly as in production.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.pubsub_emulator import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FunctionServer:
    """Handle on a running server: its URL and the decision records it printed."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def records(self) -> list[dict[str, Any]]:
        """Every decision record printed so far (one JSON line each)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"verdict"' in line:
                out.append(json.loads(line))
        return out

    def wait_for_records(self, count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Poll until ``count`` records exist (Pub/Sub push is asynchronous)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) >= count:
                return records
            if self.process.poll() is not None:
                raise AssertionError(f"function server exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(
            f"only {len(self.records())} of {count} records after {timeout_s}s:\n{self.log_path.read_text()[-3000:]}"
        )


def start_function_server(tmp: Path, env: Mapping[str, str]) -> FunctionServer:
    """Start ``functions-framework --target handle_finding`` with ``env`` added; wait until it accepts connections."""
    port = free_port()
    log_path = tmp / f"function-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    full_env["RESPONDER_NETPOL_ENFORCEMENT"] = "established"  # the test clusters' behaviour (tests/conftest.py)
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    exe = Path(sys.executable).parent / "functions-framework"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(exe),
            "--target",
            "handle_finding",
            "--source",
            str(ROOT / "main.py"),
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"functions-framework exited:\n{log_path.read_text()}") from None
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError("functions-framework did not start within 30s")
    return FunctionServer(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)


@pytest.fixture
def function_server_factory(tmp_path: Path) -> Iterator[Any]:
    """Call with an env mapping to start a server; all are stopped at teardown."""
    servers: list[FunctionServer] = []

    def factory(env: Mapping[str, str]) -> FunctionServer:
        server = start_function_server(tmp_path, env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
