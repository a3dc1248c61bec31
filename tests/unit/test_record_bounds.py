"""The decision record stays under Cloud Logging's entry limit, whatever it holds (issue 27, item 7).

Cloud Logging refuses an entry over 256 KB; a record line it cannot take whole is not parsed into ``jsonPayload``,
and then no alert filter or metric sees it. Isolation in a namespace of ~1,150 allowing NetworkPolicies used to write
such a line (one named exclusion per policy, in the action's ``changes`` and again in its ``reason``). Here: the real
pipeline on that namespace, the guard on records no pipeline writes, and the line of a record that needs no bound.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from responder.containment.keys import QUARANTINE_LABEL
from responder.containment.results import ActionResult, Status
from responder.intake.triage import Verdict
from responder.ports import LabelSelectorRequirement
from responder.report import bounds
from responder.report.record import DecisionRecord, PodRef, emit, make_record
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import NS, POD, make, run

CLOUD_LOGGING_LIMIT = 256 * 1024
POLICIES = 1_500
CHANGES = 300
MARKER = re.compile(r"…\[(\d+) chars left out\]…")


def line_of(record: DecisionRecord) -> str:
    """What :func:`emit` writes for ``record``: exactly one line, ASCII, within the budget."""
    out = io.StringIO()
    emit(record, out)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, text[:200]
    line = text.rstrip("\n")
    assert line.isascii()
    assert len(line) <= bounds.BUDGET, len(line)
    return line


def crowded_namespace() -> FakeKube:
    """The suspect pod in a namespace where 1,500 policies, each with a name as long as real ones are, allow it in."""
    kube = FakeKube()
    kube.add_web_deployment(NS, POD)
    for i in range(POLICIES):
        kube.add_policy(NS, f"allow-ingress-from-storefront-frontend-{i:04d}")
    return kube


@pytest.fixture
def crowded() -> FakeKube:
    return crowded_namespace()


def test_isolating_in_a_namespace_of_1500_allowing_policies_writes_a_record_cloud_logging_parses(
    crowded: FakeKube,
) -> None:
    outcome = run(make(crowded, netpol_enforcement="established"))
    record = outcome.record
    isolate = next(a for a in record.actions if a.action == "isolate")
    # The decision itself is whole: every exclusion was made and is named in the record the report is built from...
    assert len(isolate.changes) == POLICIES + 2  # + the deny-all created, the pod labelled
    exclusion = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))
    excluded = [p for p in crowded.policies.values() if exclusion in p.pod_selector.match_expressions]
    assert len(excluded) == POLICIES
    # ...and written out unbounded it would be over the limit: this is the line that escaped the alerts.
    assert len(record.model_dump_json()) > CLOUD_LOGGING_LIMIT

    written = strict(line_of(record))
    # What the alert filters and metrics read is all there, as decided.
    assert (written["verdict"], written["code"], written["outcome"], written["severity"]) == (
        "act",
        "reverse_shell",
        "done",
        "NOTICE",
    )
    assert written["contained_ms"] == record.contained_ms is not None
    assert written["duration_ms"] == record.duration_ms
    assert written["pod"] == {"namespace": NS, "name": POD}
    assert [a["action"] for a in written["actions"]] == [a.action for a in record.actions]
    shown = next(a for a in written["actions"] if a["action"] == "isolate")
    assert shown["status"] == "succeeded"
    # The first changes are named, the rest counted; the reason keeps its head (what was done) and its tail (what
    # that means for the live session), with the count of what was left out between.
    assert shown["changes"] == list(isolate.changes[: bounds.MAX_ITEMS])
    assert written["truncated"]["actions[].changes"] == POLICIES + 2 - bounds.MAX_ITEMS
    assert shown["reason"].startswith(isolate.reason[:200])
    assert shown["reason"].endswith(isolate.reason[-200:])
    assert "established connections: cut" in isolate.reason[-200:]
    assert len(shown["reason"]) <= bounds.MAX_TEXT
    marker = MARKER.search(shown["reason"])
    assert marker is not None
    left_out = len(isolate.reason) - len(MARKER.sub("", shown["reason"]))
    assert written["truncated"]["actions[].reason"] == int(marker.group(1)) == left_out
    assert shown["details"]["established_connections"] == "cut"  # detail survives where it fits


def test_the_same_record_always_gives_the_same_line(crowded: FakeKube) -> None:
    record = run(make(crowded, netpol_enforcement="established")).record
    assert line_of(record) == line_of(record) == record.to_json()


def test_a_record_within_the_bounds_is_written_exactly_as_serialised() -> None:
    record = make_record(
        Verdict.ACT,
        "reverse_shell",
        "active Reverse Shell finding on a GKE pod",
        pod=PodRef(namespace=NS, name=POD),
        actions=[ActionResult(action="isolate", status=Status.SUCCEEDED, reason="isolated", changes=("a",) * 50)],
        warnings=["w"] * 50,
    )
    line = line_of(record)
    assert line == record.model_dump_json(ensure_ascii=True)
    assert "truncated" not in json.loads(line)


# ------------------------------------------------------------------------------------------------- the guard


def absurd(actions: int) -> DecisionRecord:
    """A record no pipeline writes: every list, object and string far past its bound, nested 30 deep, in text that
    needs 6-byte escapes, with a NaN."""
    text = "é" * 3_000
    deep: dict[str, Any] = {"leaf": text}
    for _ in range(30):
        deep = {"deeper": deep}
    results = [
        ActionResult(
            action=f"isolate-{i}-{text}",
            status=Status.FAILED,
            reason=text,
            changes=tuple(f"change {i} " + "x" * 100 for i in range(CHANGES)),
            details={"blob": text, "deep": deep, "many": {f"k{i}": i for i in range(500)}, "nan": float("nan")},
        )
        for i in range(actions)
    ]
    return make_record(
        Verdict.ACT,
        "reverse_shell",
        "r" * 1_000_000,
        finding="organizations/1/sources/2/findings/" + "f" * 100_000,
        cluster="projects/p/locations/l/clusters/" + text,
        pod=PodRef(namespace=NS, name=text),
        actions=results,
        writebacks=results,
        outcome="retry",
        warnings=[f"warning {i}" for i in range(10_000)],
        skipped=[text] * 200,
        enrichment={f"source-{i}": "ok" for i in range(5_000)},
        contained_ms=12.5,
        duration_ms=99.0,
    )


def strict(line: str) -> dict[str, Any]:
    """``line`` parsed as Cloud Logging would: JSON proper, no NaN or Infinity."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    document: dict[str, Any] = json.loads(line, parse_constant=refuse)
    return document


@pytest.mark.parametrize("actions", [1, 3, 100])
def test_the_guard_keeps_the_contract_of_an_absurd_record_and_counts_what_it_left_out(actions: int) -> None:
    record = absurd(actions)
    written = strict(line_of(record))
    assert (written["verdict"], written["code"], written["outcome"], written["severity"]) == (
        "act",
        "reverse_shell",
        "retry",
        "ERROR",
    )
    assert (written["contained_ms"], written["duration_ms"]) == (12.5, 99.0)
    assert set(bounds.CONTRACT) - {"record_error"} <= set(written)
    assert written["finding"].startswith("organizations/1/sources/2/findings/f")
    assert written["cluster"].startswith("projects/p/locations/l/clusters/")
    assert written["pod"]["namespace"] == NS
    truncated = written["truncated"]
    assert all(isinstance(n, int) and n > 0 for n in truncated.values())
    for key in ("actions", "writebacks"):
        kept = written[key]
        # The first ones, in order, each still saying what it was, how it ended and why.
        assert all(e["action"].startswith(f"isolate-{i}-") for i, e in enumerate(kept))
        assert all(e["status"] == "failed" and e["reason"].startswith("é") for e in kept)
        assert len(kept) == min(actions, bounds.MAX_ACTIONS)
        assert len(kept) + truncated.get(key, 0) == actions
        # The named changes went first, all of them, of every action still there when they went.
        assert truncated[f"{key}[].changes"] == CHANGES * min(actions, bounds.MAX_ITEMS)
    # Detail went before the contract, largest first (the skipped steps here), and what went is counted in full.
    assert "skipped" not in written
    assert truncated["skipped"] == 200  # items: 150 beyond the bound, then the 50 named ones
    assert "skipped[]" not in truncated  # the characters clipped from what was then dropped whole are part of it
    if "warnings" in written:  # the bound alone: the first 50 named, the rest counted
        assert len(written["warnings"]) == bounds.MAX_ITEMS and truncated["warnings"] == 10_000 - bounds.MAX_ITEMS
    else:
        assert truncated["warnings"] == 10_000
    if actions == 100:  # so much that even the contract's strings were shortened
        assert all(len(written[k]) <= bounds.SHORT_TEXT for k in ("message", "reason", "finding", "cluster"))
    assert all(k in written or k in truncated for k in json.loads(record.model_dump_json()))


def test_the_guard_is_deterministic() -> None:
    assert absurd(3).to_json() == absurd(3).to_json()


def test_the_last_resort_fits_whatever_the_contract_fields_hold() -> None:
    """A hand-built record (the fallback form is one) whose contract fields themselves hold more than the budget: only
    the one-value fields, the pod's name and each action's action, status and reason are left, each short."""
    wide = {f"k{i}": ["é" * 200] * bounds.MAX_ITEMS for i in range(bounds.MAX_KEYS)}
    entry = {"action": "é" * 5_000, "status": "é" * 5_000, "reason": "é" * 5_000, "dry_run": False, "extra": "x"}
    document: dict[str, Any] = {
        "severity": "ERROR",
        "message": "é" * 5_000,
        "verdict": "act",
        "code": "reverse_shell",
        "reason": "é" * 5_000,
        "finding": "é" * 5_000,
        "category": "é" * 5_000,
        "cluster": "é" * 5_000,
        "pod": {"namespace": "é" * 5_000, "name": "é" * 5_000, **wide},
        "actions": [entry] * 100,
        "writebacks": [entry] * 100,
        "outcome": "not_contained",
        "duration_ms": 1.0,
        "contained_ms": None,
        "record_error": "é" * 5_000,
    }
    line = bounds.bounded_line(document)
    assert len(line) <= bounds.BUDGET and line.isascii()
    written = strict(line)
    assert (written["severity"], written["verdict"], written["code"], written["outcome"]) == (
        "ERROR",
        "act",
        "reverse_shell",
        "not_contained",
    )
    assert written["contained_ms"] is None and written["duration_ms"] == 1.0
    assert set(written["pod"]) == {"namespace", "name"}
    assert len(written["actions"]) == len(written["writebacks"]) == bounds.MAX_ACTIONS
    assert set(written["actions"][0]) == {"action", "status", "reason", "dry_run"}
    assert list(written["truncated"]) == ["record"] and written["truncated"]["record"] > bounds.BUDGET


def test_a_record_that_cannot_be_serialised_is_bounded_in_its_fallback_form_too() -> None:
    broken = ActionResult(action="isolate", status=Status.SUCCEEDED, reason="deny-all applied \ud800")
    record = make_record(Verdict.ACT, "reverse_shell", "r", actions=[broken] * 5_000)
    written = strict(line_of(record))
    assert "surrogates not allowed" in written["record_error"]
    assert written["truncated"]["actions"] == 5_000 - len(written["actions"])
