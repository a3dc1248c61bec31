"""publish-sample: a harmless finding through the real Pub/Sub emulator, reported and never acted on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.common import responder_cli
from tests.support.pubsub_emulator import create_pull_subscription, create_topic, pull

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")} | (env or {})
    return responder_cli(*args, env=full)


def test_publish_sample_then_replay_it_reports_only(pubsub_emulator: str, tmp_path: Path) -> None:
    topic = create_topic(project="rsr-test")
    subscription = create_pull_subscription(topic)
    published = cli("publish-sample", "--topic", topic)
    assert published.returncode == 0, published.stderr
    [message] = pull(subscription)
    assert message.attributes["rsr-sample"] == "true"
    assert json.loads(published.stdout)["published"] == message.message_id

    path = tmp_path / "sample.json"
    path.write_bytes(message.data)
    # Even in enforce mode with delete as the action, the sample is reported and nothing is planned.
    replay = cli("replay", str(path), env={"RESPONDER_MODE": "enforce", "RESPONDER_ACTION": "delete"})
    assert replay.returncode == 0, replay.stderr
    record = json.loads(replay.stdout)
    assert (record["verdict"], record["code"]) == ("ignore", "sample")  # nothing done or attempted
    assert record["actions"] == []
    assert record["skipped"] == ["sample finding from publish-sample: report only"]
    assert record["pod"] == {"namespace": "rsr-sample", "name": "rsr-sample-pod"}


def test_publish_sample_rejects_a_malformed_topic() -> None:
    result = cli("publish-sample", "--topic", "my-topic")
    assert result.returncode == 1
    assert "projects/PROJECT/topics/TOPIC" in result.stderr
