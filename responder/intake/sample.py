"""A harmless test finding for checking a deployment end to end (``python -m responder publish-sample``).

It is a realistic Reverse Shell notification (so it travels the whole path: SCC format, Pub/Sub, Eventarc, triage,
planning, investigation, report) carrying ``sourceProperties.Responder_Sample = "true"``, which makes the policy engine
plan no action at all. It names a pod that does not exist in a namespace of its own, so even a policy bug could not
touch a real workload.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from responder.intake.findings import SAMPLE_PROPERTY
from responder.intake.identifiers import ClusterRef

SAMPLE_NAMESPACE = "rsr-sample"
SAMPLE_POD = "rsr-sample-pod"


def sample_notification(cluster: ClusterRef, organization: str = "0", now: datetime | None = None) -> bytes:
    """The JSON bytes of a v2 notification naming ``rsr-sample/rsr-sample-pod`` in ``cluster``."""
    now = now or datetime.now(UTC)
    finding_id = f"rsrsample{uuid.uuid4().hex[:23]}"
    source = f"organizations/{organization}/sources/0/locations/global"
    resource = f"//container.googleapis.com/{cluster.path}"
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {
        "notificationConfigName": f"organizations/{organization}/locations/global/notificationConfigs/rsr-sample",
        "finding": {
            "name": f"{source}/findings/{finding_id}",
            "parent": source,
            "resourceName": resource,
            "state": "ACTIVE",
            "category": "Reverse Shell",
            "findingClass": "THREAT",
            "severity": "LOW",
            "eventTime": stamp,
            "createTime": stamp,
            "description": "Test finding from `python -m responder publish-sample`: the responder only reports it.",
            "sourceProperties": {
                SAMPLE_PROPERTY: "true",
                "Pod_Namespace": SAMPLE_NAMESPACE,
                "Pod_Name": SAMPLE_POD,
                "Container_Name": "sample",
                "Reverse_Shell_Stdin_Redirection_Dst_Ip": "192.0.2.1",
                "Reverse_Shell_Stdin_Redirection_Dst_Port": "4444",
            },
            "processes": [{"name": "sh", "binary": {"path": "/bin/sh"}, "args": ["sh", "-i"], "pid": "1"}],
        },
        "resource": {"name": resource, "type": "google.container.Cluster", "service": "container.googleapis.com"},
    }
    return json.dumps(document).encode("utf-8")
