"""Property tests: whatever arrives, the responder decides, and never crashes or escapes its sanitiser."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.config import Settings
from responder.errors import InvalidEnvelope
from responder.intake.envelope import Delivery, detect
from responder.intake.sanitize import surrogate_free, untrusted_text
from responder.policy.rules import Policy, PolicyEngine
from responder.service import Dependencies, Responder
from tests.notifications import notification

SETTINGS = Settings()
RESPONDER = Responder(Dependencies(settings=SETTINGS, policy=PolicyEngine(Policy(), SETTINGS)))
VERDICTS = {"act", "ignore", "reject"}

# Text includes lone surrogates and terminal controls, which hypothesis' default alphabet leaves out.
text_chars = st.characters(codec=None) | st.characters(categories=["Cs"]) | st.sampled_from(["\x1b", "\r", "\x9b"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(text_chars, max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(text_chars, max_size=15), children, max_size=5)
    ),
    max_leaves=30,
)
FINDING_KEYS = [
    "name",
    "canonicalName",
    "resourceName",
    "state",
    "category",
    "sourceProperties",
    "eventTime",
    "severity",
    "mute",
    "findingClass",
    "mitreAttack",
    "processes",
    "containers",
    "kubernetes",
    "securityMarks",
]


def _check(payload: bytes) -> None:
    record = RESPONDER.respond(Delivery(payload=payload, shape="fuzz")).record
    line = record.to_json()
    assert record.verdict.value in VERDICTS
    assert "\n" not in line
    assert json.loads(line)["verdict"] == record.verdict.value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_always_yield_a_decision(payload: bytes) -> None:
    _check(payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_always_yields_a_decision(value: Any) -> None:
    _check(json.dumps(value).encode())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FINDING_KEYS), json_values, max_size=8))
def test_notification_shaped_garbage_always_yields_a_decision(overrides: dict[str, Any]) -> None:
    doc = notification()
    doc["finding"].update(overrides)
    _check(json.dumps(doc).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=80))
def test_any_identifier_text_is_either_valid_kubernetes_or_rejected(pod: str, namespace: str, container: str) -> None:
    doc = notification(pod=pod, namespace=namespace, container=container)
    record = RESPONDER.respond(Delivery(payload=json.dumps(doc).encode(), shape="fuzz")).record
    if record.verdict.value == "act":
        assert record.pod is not None
        for value in (record.pod.name, record.pod.namespace):
            assert value == value.lower() and all(c.isalnum() or c in "-." for c in value)


@settings(max_examples=300)
@given(json_values)
def test_envelope_detection_only_raises_invalid_envelope(value: Any) -> None:
    with contextlib.suppress(InvalidEnvelope):
        detect(value)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "eventTime",
                "createTime",
                "severity",
                "mute",
                "processes",
                "containers",
                "kubernetes",
                "securityMarks",
                "mitreAttack",
                "sourceProperties",
            ]
        ),
        json_values,
        max_size=4,
    ),
    st.sampled_from(["isolate", "delete", "none"]),
    st.sampled_from(["enforce", "dry-run"]),
)
def test_the_act_path_with_a_cluster_always_decides(overrides: dict[str, Any], action: str, mode: str) -> None:
    from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube

    kube = FakeKube()
    kube.add_pod("shop", "web-1", {"app": "web"})
    findings = FakeFindings()
    doc = notification(namespace="shop", pod="web-1")
    findings.add(doc["finding"]["name"])
    doc["finding"].update(overrides)
    s = Settings(mode=mode, action=action)  # type: ignore[arg-type]
    responder = Responder(
        Dependencies(settings=s, policy=PolicyEngine(Policy(), s), connector=FakeConnector(kube), findings_api=findings)
    )
    try:
        record = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="fuzz")).record
    finally:
        responder.workers.shutdown(wait=False)
        responder.coordinators.shutdown(wait=False)
    assert record.verdict.value in VERDICTS
    assert record.outcome == "done"


@given(json_values, st.booleans(), st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_one_scan_check_never_clears_text_that_decodes_to_a_surrogate(
    tree: Any, ascii_only: bool, as_bytes: bool
) -> None:
    """``surrogate_free`` lets ``safejson.loads`` skip the per-string search: it must never say "free" for JSON text
    whose decoded strings hold a surrogate, however the text spells it (escaped in either case, or raw)."""
    text = json.dumps(tree, ensure_ascii=ascii_only)
    if not ascii_only and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert not surrogate_free(text)  # raw: refused by the scan itself
        return
    raw: str | bytes = text.encode("utf-8") if as_bytes else text
    if surrogate_free(raw):
        assert untrusted_text(json.loads(raw)) is None
    assert (untrusted_text(json.loads(raw)) is None) or not surrogate_free(raw)
