"""An instance decodes a message's bytes once: a redelivery (the same bytes) reuses the Finding; failures are not
kept, and other bytes are decoded afresh."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from responder.errors import InvalidFinding
from responder.intake.findings import Finding, to_finding
from responder.intake.memo import Decoded
from responder.intake.notification import parse_notification
from tests.notifications import notification

POD = "web-5d9c-abcde"


def counting() -> tuple[list[bytes], Callable[[bytes], Finding]]:
    seen: list[bytes] = []

    def decode(payload: bytes) -> Finding:
        seen.append(payload)
        return to_finding(parse_notification(payload))

    return seen, decode


def test_the_same_bytes_are_decoded_once_and_give_the_same_finding() -> None:
    seen, decode = counting()
    memo = Decoded()
    payload = json.dumps(notification(pod=POD)).encode()
    first = memo.finding(payload, decode)
    again = memo.finding(bytes(payload), decode)
    assert again is first and len(seen) == 1
    other = memo.finding(payload.replace(POD.encode(), b"other-pod"), decode)
    assert other.pod_name == "other-pod" and len(seen) == 2


def test_bytes_that_fail_are_refused_every_time() -> None:
    seen, decode = counting()
    memo = Decoded()
    for _ in range(2):
        with pytest.raises(InvalidFinding):
            memo.finding(b"[1, 2]", decode)
    assert len(seen) == 2


def test_it_keeps_the_most_recently_used() -> None:
    seen, decode = counting()
    memo = Decoded(size=2)
    payloads = [json.dumps(notification(pod=f"web-{i}")).encode() for i in range(3)]
    memo.finding(payloads[0], decode)
    memo.finding(payloads[1], decode)
    memo.finding(payloads[0], decode)  # used again: now the newest
    memo.finding(payloads[2], decode)  # pushes out payloads[1]
    memo.finding(payloads[0], decode)
    memo.finding(payloads[1], decode)
    assert seen == [payloads[0], payloads[1], payloads[2], payloads[1]]
