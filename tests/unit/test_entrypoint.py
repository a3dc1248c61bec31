"""main.handle_finding through functions-framework's own app: every envelope shape, one record each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from functions_framework import create_app

from responder import handler
from tests.notifications import PUBSUB_TYPE, legacy_event, message_published, sample, structured_cloudevent
from tests.support.common import records

MAIN = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "main.py")


@pytest.fixture
def client() -> Iterator[Any]:
    handler.reset()
    app = create_app("handle_finding", MAIN, "cloudevent")
    yield app.test_client()
    handler.reset()


def test_structured_cloudevent(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    resp = client.post(
        "/",
        json=structured_cloudevent(sample("reverse_shell_v2")),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert resp.status_code == 200
    [record] = records(capsys)
    assert record["verdict"] == "act"
    assert record["pod"] == {"namespace": "banking", "name": "settlement-0"}
    assert record["delivery"]["event_id"] == "1001"


def test_binary_cloudevent(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    headers = {
        "ce-id": "42",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-specversion": "1.0",
        "ce-type": PUBSUB_TYPE,
        "Content-Type": "application/json; charset=utf-8",
    }
    resp = client.post("/", json=message_published(sample("reverse_shell_v1"), "42"), headers=headers)
    assert resp.status_code == 200
    [record] = records(capsys)
    assert (record["verdict"], record["delivery"]["message_id"]) == ("act", "42")


@pytest.mark.parametrize("path", ["/projects/example-secops/topics/scc-findings", "/"])
def test_raw_push_body(client: Any, capsys: pytest.CaptureFixture[str], path: str) -> None:
    body = message_published(sample("reverse_shell_v1"))  # functions-framework converts it, dropping subscription
    resp = client.post(path, json=body)
    assert resp.status_code == 200
    [record] = records(capsys)
    assert record["verdict"] == "act"


def test_legacy_background_event(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    resp = client.post("/", json=legacy_event(sample("reverse_shell_v1")))
    assert resp.status_code == 200
    [record] = records(capsys)
    assert record["verdict"] == "act"


def test_wrong_event_type_is_acknowledged_and_rejected(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    event = structured_cloudevent(sample(), event_type="google.cloud.storage.object.v1.finalized")
    resp = client.post("/", json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert resp.status_code == 200  # acknowledged: a retry can never make it valid
    [record] = records(capsys)
    assert (record["verdict"], record["code"]) == ("reject", "bad_envelope")


def test_bad_base64_is_acknowledged_and_rejected(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    event = structured_cloudevent(sample())
    event["data"]["message"]["data"] = "!!!"
    resp = client.post("/", json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert resp.status_code == 200
    [record] = records(capsys)
    assert "base64" in record["reason"]


def test_invalid_settings_refuse_to_act_and_keep_the_message(
    client: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESPONDER_MODE", "yolo")
    resp = client.post(
        "/", json=structured_cloudevent(sample()), headers={"Content-Type": "application/cloudevents+json"}
    )
    assert resp.status_code == 500  # redelivered (and finally dead-lettered), never silently dropped
    [record] = records(capsys)
    assert record["code"] == "config_error"
    assert "RESPONDER_MODE" in record["reason"]
    assert record["outcome"] == "retry"


def test_endpoint_choice_prefers_dns_then_public_then_what_the_operator_names() -> None:
    from responder.adapters.kube_connect import choose_endpoint
    from responder.ports import ClusterInfo

    full = ClusterInfo(
        name="c",
        location="l",
        endpoint="1.2.3.4",
        public_endpoint="1.2.3.4",
        private_endpoint="10.0.0.2",
        dns_endpoint="gke-x.goog",
        dns_endpoint_external=True,
    )
    assert choose_endpoint(full, "auto") == ("dns", "gke-x.goog")
    assert choose_endpoint(full.model_copy(update={"dns_endpoint_external": False}), "auto") == ("public", "1.2.3.4")
    assert choose_endpoint(full, "private") == ("private", "10.0.0.2")
    assert choose_endpoint(full, "public") == ("public", "1.2.3.4")
    private_only = ClusterInfo(name="c", location="l", endpoint="10.0.0.2", private_endpoint="10.0.0.2")
    assert choose_endpoint(private_only, "public") is None  # Cluster.endpoint is never dialled as the public one
    assert choose_endpoint(private_only, "auto") == ("private", "10.0.0.2")
    assert choose_endpoint(private_only, "dns") is None
