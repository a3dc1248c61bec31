"""Google's Pub/Sub emulator (Java, in the machine image) for tests with the real ``google-cloud-pubsub`` client.

The session fixture :func:`pubsub_emulator` starts it once on a free loopback port, points ``PUBSUB_EMULATOR_HOST`` at
it for as long as the session runs (restoring the previous value afterwards), and kills its process group at the end.
The emulator cannot be reinstalled on these machines (the image's Google apt source is disabled). When it is missing,
the dependent tests FAIL under ``CI`` (a tier must never vanish silently there) and are skipped with a loud reason on a
developer's machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EMULATOR = Path(
    os.environ.get(
        "PUBSUB_EMULATOR_BIN", "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    )
)
START_TIMEOUT_S = 30.0
PROJECT = "demo-project"


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Pub/Sub emulator exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Pub/Sub emulator not listening after {START_TIMEOUT_S}s:\n{log_path.read_text()[-2000:]}")


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """Start the emulator, yield ``127.0.0.1:PORT``, kill its process group on exit (no env changes)."""
    if not EMULATOR.is_file():
        reason = (
            f"!!! Pub/Sub emulator NOT FOUND at {EMULATOR}: the machine image should ship it (google-cloud-sdk "
            "platform/pubsub-emulator) and it cannot be reinstalled here"
        )
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}; under CI this is a failure, not a skip !!!", pytrace=False)
        pytest.skip(f"{reason}; Pub/Sub tests are SKIPPED, not passed !!!")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pubsub-emulator-"))
    log_path = workdir / "emulator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(EMULATOR), "--host=127.0.0.1", f"--port={port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,  # its own process group: the wrapper script forks java
        )
    try:
        _wait_for_port(port, process, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """``host:port`` of a running emulator; ``PUBSUB_EMULATOR_HOST`` is set while the session runs."""
    with running_emulator() as host, pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", host)  # undone when the session ends, whatever tests did meanwhile
        yield host


def _require_emulator_env() -> None:
    # The clients read PUBSUB_EMULATOR_HOST when built: without it they would try Google's real endpoint.
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        raise RuntimeError("PUBSUB_EMULATOR_HOST is not set: request the pubsub_emulator fixture first")


def unique_name(prefix: str) -> str:
    """A topic or subscription ID that no other test uses (the emulator lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(project: str = PROJECT, topic_id: str | None = None) -> str:
    """Create a topic with the real client; returns ``projects/P/topics/T``."""
    from google.cloud import pubsub_v1

    _require_emulator_env()
    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(project, topic_id or unique_name("topic"))
    publisher.create_topic(name=path)
    return str(path)


def create_pull_subscription(topic: str, subscription_id: str | None = None, **extra: Any) -> str:
    """Create a pull subscription on ``topic``; returns ``projects/P/subscriptions/S``."""
    from google.cloud import pubsub_v1

    _require_emulator_env()
    project = topic.split("/")[1]
    with pubsub_v1.SubscriberClient() as subscriber:
        path = subscriber.subscription_path(project, subscription_id or unique_name("sub"))
        subscriber.create_subscription(request={"name": path, "topic": topic, **extra})
    return str(path)


def create_push_subscription(topic: str, push_endpoint: str, subscription_id: str | None = None, **extra: Any) -> str:
    """Create a push subscription delivering to ``push_endpoint`` (e.g. a local functions-framework URL)."""
    return create_pull_subscription(topic, subscription_id, push_config={"push_endpoint": push_endpoint}, **extra)


def pull(subscription: str, max_messages: int = 10, timeout_s: float = 10.0) -> list[Any]:
    """Pull and acknowledge up to ``max_messages`` ``PubsubMessage`` objects, waiting up to ``timeout_s`` for one."""
    from google.cloud import pubsub_v1

    _require_emulator_env()
    deadline = time.monotonic() + timeout_s
    with pubsub_v1.SubscriberClient() as subscriber:
        while True:
            response = subscriber.pull(
                request={"subscription": subscription, "max_messages": max_messages}, timeout=timeout_s
            )
            if response.received_messages:
                subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
                return [m.message for m in response.received_messages]
            if time.monotonic() > deadline:
                return []
            time.sleep(0.1)
