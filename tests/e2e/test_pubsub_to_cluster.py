"""End to end: real Pub/Sub emulator → push subscription → live functions-framework → responder → kube-apiserver."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from google.cloud import pubsub_v1
from kubernetes import client

from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from tests.notifications import notification, sample
from tests.support import workloads as w
from tests.support.pubsub_emulator import create_push_subscription, create_topic

pytestmark = pytest.mark.e2e


def publish(topic: str, data: bytes) -> str:
    publisher = pubsub_v1.PublisherClient()
    return str(publisher.publish(topic, data).result(timeout=30))


def test_push_delivery_is_decided_and_acknowledged(pubsub_emulator: str, function_server_factory: Any) -> None:
    server = function_server_factory({})
    topic = create_topic()
    create_push_subscription(topic, server.url + "/", ack_deadline_seconds=10)
    good = sample("reverse_shell_v2")
    publish(topic, json.dumps(good).encode())
    publish(topic, b"\xff not json at all")
    first, second = server.wait_for_records(2)
    by_verdict = {r["verdict"]: r for r in (first, second)}
    assert by_verdict["act"]["finding"] == good["finding"]["name"]
    assert by_verdict["act"]["pod"] == {"namespace": "banking", "name": "settlement-0"}
    assert by_verdict["act"]["delivery"]["shape"] == "cloudevent"
    assert by_verdict["reject"]["code"] == "bad_finding"
    # Both were acknowledged (HTTP 200): the emulator does not push them again.
    time.sleep(12)
    assert len(server.records()) == 2


@pytest.mark.parametrize("action", ["isolate", "delete"])
def test_finding_published_to_pubsub_contains_the_pod(
    action: str,
    pubsub_emulator: str,
    function_server_factory: Any,
    kube_admin: client.ApiClient,
    kube_paths: Any,
    kube_namespace: str,
) -> None:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    w.create_policy(kube_admin, kube_namespace, "allow-all")
    target = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")[0]
    server = function_server_factory(
        {
            "RESPONDER_KUBECONFIG": str(kube_paths.responder_kubeconfig),
            "RESPONDER_MODE": "enforce",
            "RESPONDER_ACTION": action,
            "RESPONDER_VERIFY_FINDING": "false",  # no SCC here; verification is covered against the SCC wire fake
            "RESPONDER_BUDGET_MAX": "10000",
        }
    )
    topic = create_topic()
    create_push_subscription(topic, server.url + "/")
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, container="api", name_suffix=action)
    publish(topic, json.dumps(doc).encode())
    [record] = server.wait_for_records(1)
    assert record["verdict"] == "act"
    assert record["pod"] == {"namespace": kube_namespace, "name": target.metadata.name}
    statuses = {a["action"]: a["status"] for a in record["actions"]}
    assert statuses["isolate"] == "succeeded"
    assert DENY_ALL_POLICY in w.policies(kube_admin, kube_namespace)
    core = client.CoreV1Api(kube_admin)
    if action == "isolate":
        assert (
            core.read_namespaced_pod(target.metadata.name, kube_namespace).metadata.labels[QUARANTINE_LABEL] == "true"
        )
    else:
        assert statuses["delete"] == "succeeded"
        live = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web", exclude_uids={target.metadata.uid})
        assert target.metadata.uid not in {p.metadata.uid for p in live}  # replaced by its ReplicaSet
