"""One record, always: hostile text and hostile shapes through functions-framework's own app and through the CLI.

Every delivery gets exactly one decision record, whatever it holds: a lone surrogate (``"\\ud800"``, which no SCC or
Pub/Sub message carries and which made the record itself unwritable, after containment had already run), terminal
escapes in any field, bodies that are not UTF-8, not JSON, not Pub/Sub-shaped. Nothing reaches an operator's terminal
raw. The fixed shapes live in ``tests/corpus/hostile`` (replay them by hand: ``python -m responder replay FILE``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder import cli, handler
from responder.containment.results import ActionResult, Status
from responder.intake.sanitize import clean, untrusted_text
from responder.intake.triage import Verdict
from responder.report.outcome import Outcome
from responder.report.record import PodRef, emit, fallback_line, make_record
from tests.notifications import CORPUS, PUBSUB_TYPE, message_published, notification, structured_cloudevent
from tests.support.common import responder_cli
from tests.unit.test_entrypoint import MAIN
from tests.unit.test_intake import respond

HOSTILE = CORPUS / "hostile"
CONTRACT = ("severity", "message", "verdict", "reason", "finding", "cluster", "pod", "actions")
# What must never reach a terminal: C0/C1 controls (ESC, CR, CSI...), separators, bidi overrides, surrogates.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
ESCAPES = "\x1b[2J\x1b[31m\x1b]0;owned\x07\r\nINFO forged line\x9b1m\u202eevil"
SURROGATE = "\ud800"
BINARY_CE = {
    "ce-id": "9",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-specversion": "1.0",
    "ce-type": PUBSUB_TYPE,
}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}

# Surrogates, controls and bidi overrides on top of hypothesis' own Unicode (which leaves surrogates out).
hostile_chars = (
    st.characters(codec=None)
    | st.characters(categories=["Cs"])
    | st.sampled_from(["\x1b", "\r", "\n", "\x00", "\x07", "\x9b", "\u202e", "\u2028", "\ufeff"])
)
hostile_text = st.text(hostile_chars, max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=20,
)


# ------------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    handler.reset()
    yield create_app("handle_finding", MAIN, "cloudevent").test_client()
    handler.reset()


def post(app: Any, body: bytes | str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """POST to the function; the HTTP status and every line it wrote to stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        response = app.post("/", data=body, headers=headers)
    return response.status_code, out.getvalue().splitlines()


def one_record(lines: list[str]) -> dict[str, Any]:
    """The only line, parsed; it is ASCII, so no byte of it can steer a terminal."""
    assert len(lines) == 1, lines
    [line] = lines
    assert line.isascii(), line
    record: dict[str, Any] = json.loads(line)
    assert set(CONTRACT) <= set(record)
    return record


def as_data(doc: dict[str, Any] | bytes) -> tuple[str, dict[str, str]]:
    """A structured CloudEvent carrying ``doc`` as its Pub/Sub message data."""
    return json.dumps(structured_cloudevent(doc)), STRUCTURED


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string in a JSON tree."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from string_paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from string_paths(child, (*path, i))


def replaced(doc: dict[str, Any], path: tuple[Any, ...], text: str) -> dict[str, Any]:
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = text
    return doc


V1_PATHS = list(string_paths(notification()))
V2_PATHS = list(string_paths(notification(version="v2")))
IDENTITY = {
    ("finding", "resourceName"),
    ("finding", "sourceProperties", "Pod_Namespace"),
    ("finding", "sourceProperties", "Pod_Name"),
    ("finding", "sourceProperties", "Container_Name"),
    ("finding", "kubernetes", "pods", 0, "ns"),
    ("finding", "kubernetes", "pods", 0, "name"),
}


def dotted(path: tuple[Any, ...]) -> str:
    """``finding.processes[0].args[1]``: how a reason names a place."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


# -------------------------------------------------------------------------------- the issue, reproduced first


@pytest.mark.parametrize("where", ["finding.name", "finding.category", "finding.state", "messageId", "ce id"])
def test_a_lone_surrogate_is_one_reject_record_not_a_crash_after_acting(app: Any, where: str) -> None:
    """Issue 21 item 7: these deliveries got HTTP 500 and no record, after the pod had been isolated."""
    doc = notification()
    if where.startswith("finding."):
        field = where.split(".", 1)[1]
        doc["finding"][field] += SURROGATE
    event = structured_cloudevent(doc)
    if where == "messageId":
        event["data"]["message"]["messageId"] += SURROGATE
    if where == "ce id":
        event["id"] += SURROGATE
    status, lines = post(app, json.dumps(event), STRUCTURED)
    assert status == 200  # acknowledged: no redelivery can make it valid
    record = one_record(lines)
    assert (record["verdict"], record["actions"]) == ("reject", [])
    assert record["code"] == ("bad_finding" if where.startswith("finding.") else "bad_envelope")
    assert "lone surrogate" in record["reason"]


@pytest.mark.parametrize("command", ["replay", "plan"])
def test_a_lone_surrogate_through_the_real_cli_exits_2_without_a_traceback(command: str) -> None:
    # the real entry point, once: python -m responder
    result = responder_cli(command, str(HOSTILE / "surrogate-finding-name.json"), env=None, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    if command == "replay":
        assert one_record(result.stdout.splitlines())["code"] == "bad_envelope"
    else:
        assert "lone surrogate" in result.stderr


def test_plan_prints_a_hostile_finding_name_on_one_clean_line(tmp_path: Path) -> None:
    """Issue 21 item 10: ANSI escapes and a forged ``rule`` line reached the operator's terminal."""
    doc = notification()
    doc["finding"]["name"] += "\x1b[2J\x1b[31m\r\nrule     delete-everything"
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("plan", str(path))
    # Not a finding name at all: rejected at intake (exit 2), and what reaches the terminal is still clean.
    assert code == 2, (out, err)
    assert not RAW_CONTROL.search(out) and not RAW_CONTROL.search(err)
    assert not [line for line in (out + err).splitlines() if line.startswith("rule")]


# ------------------------------------------------------------------------------------------ every string field


@pytest.mark.parametrize(("version", "path"), [("v1", p) for p in V1_PATHS] + [("v2", p) for p in V2_PATHS], ids=str)
def test_a_surrogate_in_any_string_field_rejects_the_delivery(app: Any, version: str, path: tuple[Any, ...]) -> None:
    doc = replaced(notification(version=version), path, SURROGATE)
    status, lines = post(app, *as_data(doc))
    record = one_record(lines)
    assert status == 200
    assert (record["verdict"], record["code"]) == ("reject", "bad_finding")
    assert dotted(path)[:60] in record["reason"]  # says where


@pytest.mark.parametrize(("version", "path"), [("v1", p) for p in V1_PATHS] + [("v2", p) for p in V2_PATHS], ids=str)
def test_terminal_escapes_in_any_string_field_stay_out_of_the_record(version: str, path: tuple[Any, ...]) -> None:
    doc = notification(version=version)
    original = doc
    for step in path:
        original = original[step]
    doc = replaced(doc, path, f"{original}{ESCAPES}")
    record = respond(doc).record
    line = record.to_json()
    assert line.isascii() and "\n" not in line
    if path in IDENTITY:
        assert record.verdict is Verdict.REJECT, record.reason  # bad_identifier, or two sources now disagree
    if record.verdict is Verdict.ACT:  # acting names exactly the pod the notification named: nothing was repaired
        props = doc["finding"]["sourceProperties"]
        assert record.pod == PodRef(namespace=props["Pod_Namespace"], name=props["Pod_Name"])


@pytest.mark.parametrize(
    "path",
    [
        ("finding", "name"),
        ("finding", "category"),
        ("finding", "state"),
        ("finding", "resourceName"),
        ("finding", "sourceProperties", "Pod_Name"),
        ("finding", "sourceProperties", "Pod_Namespace"),
        ("finding", "processes", 0, "args", 0),
    ],
    ids=dotted,
)
def test_plan_output_is_clean_whatever_field_holds_escapes(tmp_path: Path, path: tuple[Any, ...]) -> None:
    doc = notification()
    doc = replaced(doc, path, f"{ESCAPES}x")
    file = tmp_path / "finding.json"
    file.write_text(json.dumps(doc))
    for argv in (["plan", str(file)], ["plan", "--json", str(file)]):
        code, out, err = run_cli(*argv)
        assert code in (0, 2)
        assert not RAW_CONTROL.search(out + err), (argv, out, err)


# ------------------------------------------------------------------------------------- the corpus of shapes

CORPUS_SHAPES = {
    "empty.json": "zero bytes",
    "whitespace.json": "only whitespace",
    "truncated.json": "half a notification",
    "not-utf8-latin1.json": "a Latin-1 byte inside an otherwise valid notification",
    "not-utf8-invalid-bytes.json": "an invalid UTF-8 sequence",
    "utf8-bom.json": "a UTF-8 byte-order mark before valid JSON",
    "utf16-bom.json": "the notification in UTF-16 with its byte-order mark",
    "utf16-be.json": "the notification in UTF-16 big-endian, no mark",
    "nesting-100-levels.json": "a source property nested 100 levels (parses, deeper than any notification)",
    "nesting-20000-levels.json": "arrays nested 20000 levels (beyond the parser)",
    "huge-integer.json": "a 5000-digit number",
    "huge-float.json": "1e999",
    "nan.json": "NaN",
    "surrogate-finding-name.json": "a lone surrogate in the finding name",
    "surrogate-category.json": "a lone surrogate in the category",
    "surrogate-state.json": "a lone surrogate in the state",
    "surrogate-pod-name.json": "a lone surrogate in the pod name",
    "surrogate-in-a-key.json": "a lone surrogate in a key",
    "surrogate-in-args.json": "lone surrogates in process arguments",
    "surrogate-message-id.json": "a structured CloudEvent whose messageId holds a lone surrogate",
    "surrogate-cloudevent-id.json": "a structured CloudEvent whose id is a lone surrogate",
    "surrogate-attribute.json": "a structured CloudEvent whose attribute holds a lone surrogate",
    "escapes-pod-name.json": "ANSI, CR and a forged log line in the pod name",
    "escapes-namespace.json": "an OSC title sequence in the namespace",
    "escapes-container.json": "CR LF and an 8-bit CSI in the container name",
    "json-array.json": "a JSON array",
    "json-string.json": "a JSON string",
    "json-null.json": "JSON null",
    "json-number.json": "a JSON number",
    "unrelated-object.json": "an object that is no envelope and no notification",
    "storage-cloudevent.json": "a Cloud Storage CloudEvent",
    "cloudevent-data-not-an-object.json": "a Pub/Sub CloudEvent whose data is a string",
    "push-message-not-an-object.json": "a push body whose message is a string",
    "push-data-not-base64.json": "a push body whose data is not base64",
    "push-data-base64-of-garbage.json": "a push body whose data decodes to bytes that are not JSON",
    "legacy-wrong-event-type.json": "a background event of a Cloud Storage type",
    "finding-null.json": "a notification whose finding is null",
    "finding-a-list.json": "a notification whose finding is a list",
}
SHAPES = sorted(CORPUS_SHAPES)


def test_the_corpus_is_exactly_what_is_described_here() -> None:
    assert sorted(p.name for p in HOSTILE.iterdir()) == SHAPES


@pytest.mark.parametrize("name", SHAPES)
def test_corpus_through_the_function_every_way_it_can_arrive(app: Any, name: str) -> None:
    raw = (HOSTILE / name).read_bytes()
    ways: dict[str, tuple[bytes | str, dict[str, str]]] = {
        "as Pub/Sub message data": as_data(raw),
        "as a binary CloudEvent's body": (raw, {**BINARY_CE, "Content-Type": "application/json"}),
        "as a structured CloudEvent": (raw, STRUCTURED),
        "as a push body": (raw, {"Content-Type": "application/json"}),
    }
    for way, (body, headers) in ways.items():
        status, lines = post(app, body, headers)
        assert status == 200, (way, status)
        record = one_record(lines)
        assert (record["verdict"], record["actions"]) == ("reject", []), (way, record["reason"])


@pytest.mark.parametrize("name", SHAPES)
def test_corpus_through_replay_and_plan(name: str) -> None:
    path = str(HOSTILE / name)
    code, out, err = run_cli("replay", path)
    assert code == 2, err
    assert one_record(out.splitlines())["verdict"] == "reject"
    code, out, err = run_cli("plan", path)
    assert code == 2
    assert not RAW_CONTROL.search(out + err)
    assert (out + err).strip()  # a reason, not silence


# ---------------------------------------------------------------------------------------- the fallback record


def _unwritable() -> Any:
    """A record a bug could produce: an action reason holding text that cannot be encoded."""
    action = ActionResult(action="isolate", status=Status.SUCCEEDED, reason=f"deny-all applied {SURROGATE}")
    return make_record(
        Verdict.ACT,
        "reverse_shell",
        "active Reverse Shell finding on a GKE pod",
        finding="organizations/1/sources/2/findings/f",
        cluster="projects/p/locations/l/clusters/c",
        pod=PodRef(namespace="shop", name="web-1"),
        actions=[action],
    )


def test_a_record_that_cannot_be_serialised_is_written_in_fallback_form() -> None:
    record = _unwritable()
    with pytest.raises(ValueError, match="surrogates not allowed"):
        record.to_json()  # what used to escape the handler
    stream = io.StringIO()
    emit(record, stream)
    written = one_record(stream.getvalue().splitlines())
    assert (written["verdict"], written["code"], written["severity"]) == ("act", "reverse_shell", "ERROR")
    assert written["pod"] == {"namespace": "shop", "name": "web-1"}
    assert written["actions"] == [{"action": "isolate", "status": "succeeded", "reason": "deny-all applied \ufffd"}]
    assert "surrogates not allowed" in written["record_error"]


def test_even_an_unreadable_record_keeps_the_contract() -> None:
    line = fallback_line(object(), RuntimeError("x"))  # type: ignore[arg-type]
    record = one_record([line])
    assert (record["verdict"], record["outcome"]) == ("reject", "retry")


class _Stub:
    """Stands in for the service to play a bug the real one no longer has (the record under test is real)."""

    def __init__(self, result: Outcome | Exception) -> None:
        self.result = result

    def respond(self, delivery: Any) -> Outcome:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_the_handler_writes_the_fallback_record_and_acknowledges(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "get_responder", lambda: _Stub(Outcome(record=_unwritable())))
    status, lines = post(app, *as_data(notification()))
    assert status == 200
    assert one_record(lines)["actions"][0]["status"] == "succeeded"


def test_a_crash_in_a_stage_is_one_record_and_a_redelivery(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "get_responder", lambda: _Stub(RuntimeError("boom \x1b[31m" + SURROGATE)))
    status, lines = post(app, *as_data(notification()))
    assert status == 500  # redelivered, then dead-lettered: never lost
    record = one_record(lines)
    assert (record["code"], record["outcome"]) == ("internal_error", "retry")


# ------------------------------------------------------------------------------------------------- fuzzing


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(V1_PATHS), hostile_text)
def test_fuzz_any_text_in_any_field_through_the_function(app: Any, path: tuple[Any, ...], text: str) -> None:
    doc = replaced(notification(), path, text)
    status, lines = post(app, *as_data(doc))
    record = one_record(lines)
    assert status == 200
    if any("\ud800" <= c <= "\udfff" for c in text):
        assert (record["verdict"], record["code"]) == ("reject", "bad_finding")
    if record["verdict"] == "act":  # the pod acted on is one the notification names, byte for byte: nothing repaired
        props, named = doc["finding"]["sourceProperties"], doc["finding"]["kubernetes"]["pods"][0]
        assert record["pod"]["namespace"] in (props["Pod_Namespace"], named["ns"])
        assert record["pod"]["name"] in (props["Pod_Name"], named["name"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_text, hostile_text, st.dictionaries(hostile_text, hostile_text, max_size=3))
def test_fuzz_envelope_text_through_the_function(app: Any, event_id: str, message_id: str, attrs: Any) -> None:
    event = structured_cloudevent(notification(), event_id=event_id)
    event["data"]["message"].update({"messageId": message_id, "attributes": attrs})
    status, lines = post(app, json.dumps(event), STRUCTURED)
    record = one_record(lines)
    assert status == 200
    if untrusted_text([event_id, message_id, attrs]):
        assert (record["verdict"], record["code"]) == ("reject", "bad_envelope")
    else:  # delivery identifiers steer nothing: the finding is handled, its ids shown cleaned
        assert record["verdict"] == "act"
        assert record["delivery"]["message_id"] == (clean(message_id, 128) if message_id else None)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
    st.sampled_from(["binary", "structured", "push", "data"]),
)
def test_fuzz_arbitrary_bodies_through_the_function(app: Any, body: bytes, way: str) -> None:
    if way == "data":
        status, lines = post(app, json.dumps(message_published(body)), {"Content-Type": "application/json"})
    else:
        headers = {"binary": {**BINARY_CE, "Content-Type": "application/json"}, "structured": STRUCTURED}
        status, lines = post(app, body, headers.get(way, {"Content-Type": "application/json"}))
    record = one_record(lines)
    assert status == 200
    assert record["verdict"] in ("reject", "ignore")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(V1_PATHS), hostile_text)
def test_fuzz_replay(tmp_path: Path, path: tuple[Any, ...], text: str) -> None:
    file = tmp_path / "finding.json"
    file.write_text(json.dumps(replaced(notification(), path, text)))
    code, out, err = run_cli("replay", str(file))
    record = one_record(out.splitlines())
    assert code == (2 if record["verdict"] == "reject" else 0), err
    assert "Traceback" not in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(V1_PATHS), hostile_text, st.booleans())
def test_fuzz_plan(tmp_path: Path, path: tuple[Any, ...], text: str, as_json: bool) -> None:
    file = tmp_path / "finding.json"
    file.write_text(json.dumps(replaced(notification(), path, text)))
    code, out, err = run_cli("plan", *(["--json"] if as_json else []), str(file))
    assert code in (0, 2)
    assert not RAW_CONTROL.search(out + err)


# ---------------------------------------------------------------------------------------- the operator's side


def test_status_and_release_print_hostile_annotations_clean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from responder.aftercare import commands
    from responder.containment.keys import FINDING_ANNOTATION, QUARANTINE_LABEL
    from tests.unit.fakes import FakeKube

    kube = FakeKube()
    pod = kube.add_pod("shop", "web-1", {"app": "web", QUARANTINE_LABEL: "true"})
    kube.patch_pod_metadata("shop", "web-1", pod.uid, {}, {FINDING_ANNOTATION: f"f{ESCAPES}"})
    monkeypatch.setattr(commands, "connect", lambda settings, cluster: kube)
    assert cli.main(["status"]) == 0
    assert cli.main(["release", "shop/web-1"]) in (0, 1, 2)
    captured = capsys.readouterr()
    assert "owned" in captured.out  # the annotation is shown...
    assert not RAW_CONTROL.search(captured.out + captured.err)  # ...but cannot steer the terminal


def test_untrusted_text_says_where_and_walks_any_depth_without_recursion() -> None:
    assert untrusted_text({"finding": {"args": ["ok", "x\udc80"]}}) == (
        "text at finding.args[1] holds a lone surrogate: not Unicode text, and no SCC or Pub/Sub message carries one"
    )
    assert untrusted_text({"a": "\U0001f600 paired surrogates decode to one character"}) is None
    deep: Any = "leaf"
    for _ in range(50_000):
        deep = [deep]
    assert "nested deeper than 64" in (untrusted_text(deep) or "")
    assert clean(f"a{SURROGATE}\x1b[31m") == "a\ufffd\ufffd[31m"
    assert base64.b64encode(clean(SURROGATE).encode()).decode() == "77+9"  # always encodable
