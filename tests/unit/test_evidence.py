"""Evidence is the compromised pod's, and says what it could not see (issue 27).

Exec and log reads are bound to the UID containment acted on: a same-named replacement's output is refused, never
filed. A failed exec says why, from the exec status channel. A socket table that was cut short, or not read at all,
never becomes "no socket was connected". Assertions are on what a person reads: the decision record's capture result,
the evidence notes, and the incident report.
"""

from __future__ import annotations

from typing import Any

import pytest

from responder.policy.rules import parse_policy
from responder.report.builder import build_report
from responder.report.markdown import render_markdown
from responder.report.outcome import Outcome
from tests.unit.fakes import TCP_TEXT, FakeKube
from tests.unit.test_containment import NS, POD, make, run

REMOTE = "198.51.100.77:9001"  # the sample finding's Dst
ABSENT = f"no socket of the container was connected to {REMOTE}"
SHELL = f"the reverse shell's connection 10.48.2.17:51734 -> {REMOTE} was still open (ESTABLISHED)"
FILLER = "   0: 0100007F:0050 0100007F:0051 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
EXIT_1 = "command terminated with non-zero exit code: error executing command [cat /proc/net/tcp /proc/net/tcp6], exit code 1"


@pytest.fixture
def kube() -> FakeKube:
    """The sample finding's pod (uid ``pod-uid-1``), managed by a Deployment, with a log and the shell's socket."""
    k = FakeKube()
    k.add_web_deployment(NS, POD)
    k.logs_text = "2026-03-14T10:00:00Z GET /cart 200\n"
    return k


def capture(outcome: Outcome) -> Any:
    return next(a for a in outcome.record.actions if a.action == "capture")


def report(outcome: Outcome) -> str:
    """The Markdown report as a person reads it (Markdown's escapes dropped)."""
    return render_markdown(build_report(outcome)).replace("\\", "")


def connection(outcome: Outcome) -> dict[str, Any]:
    assert outcome.evidence is not None and outcome.evidence.shell_connection is not None
    return dict(outcome.evidence.shell_connection)


def refused(uid: str | None) -> str:
    now = f"is now uid {uid}" if uid else "is gone"
    return f"capture refused: pod {NS}/{POD} {now}, not the compromised pod's uid pod-uid-1"


# ------------------------------------------------------------------------------------- bound to the pod's UID


def test_a_replacement_that_took_the_name_mid_exec_is_refused_never_filed(kube: FakeKube) -> None:
    kube.ps_text = "  PID COMMAND\n    1 /replacement/server\n"
    kube.during["exec"] = lambda: kube.replace_pod(NS, POD)  # a StatefulSet re-creates it under the same name

    outcome = run(make(kube))

    result = capture(outcome)
    assert result.status.value == "succeeded"  # what could be bound (manifest, owner chain, logs) is kept
    assert "capture refused: pod shop/web-5d9c-abcde is now uid pod-uid-" in result.reason
    assert "not the compromised pod's uid pod-uid-1" in result.reason
    assert "not captured: process tree, sockets" in result.reason
    assert outcome.evidence is not None
    assert outcome.evidence.process_tree is None and outcome.evidence.sockets is None
    assert any(n.startswith("process tree: capture refused: pod shop/web-5d9c-abcde") for n in outcome.evidence.notes)
    assert connection(outcome)["open"] is None and connection(outcome)["why"].startswith("unknown: ")
    text = report(outcome)
    assert "/replacement/server" not in text
    assert "Process tree: capture refused: pod shop/web-5d9c-abcde is now uid pod-uid-" in text
    assert ABSENT not in text and "unknown: the socket table was not read (capture refused" in text


class _ReplacedAfterIsolation(FakeKube):
    """The pod is replaced once the quarantine patch landed, before capture starts: the pod read containment
    acted on is stale by then, and every read by name reaches the newcomer."""

    def patch_pod_metadata(self, *args: Any, **kwargs: Any) -> Any:
        patched = super().patch_pod_metadata(*args, **kwargs)
        self.replace_pod(NS, POD)
        return patched


def test_a_replacement_standing_before_capture_starts_gives_no_evidence() -> None:
    kube = _ReplacedAfterIsolation()
    kube.add_pod(NS, POD, {"app": "web", "pod-template-hash": "5d9c"})
    kube.logs_text = "the replacement's own log line\n"

    outcome = run(make(kube))

    assert refused("pod-uid-2") in capture(outcome).reason
    assert outcome.evidence is not None
    assert outcome.evidence.logs is None and outcome.evidence.process_tree is None
    assert outcome.evidence.sockets is None
    assert f"logs: {refused('pod-uid-2')}" in outcome.evidence.notes
    assert outcome.evidence.manifest is not None  # the manifest is the read containment acted on: the pod's own
    text = report(outcome)
    assert "the replacement's own log line" not in text and ABSENT not in text


def test_a_log_read_that_reached_a_replacement_is_refused(kube: FakeKube) -> None:
    kube.during["read_log"] = lambda: kube.replace_pod(NS, POD)

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.logs is None
    assert f"logs: {refused('pod-uid-2')}" in outcome.evidence.notes
    assert build_report(outcome).logs.captured_tail is None


def test_a_pod_gone_by_the_end_of_the_exec_cannot_vouch_for_its_output(kube: FakeKube) -> None:
    kube.during["exec"] = lambda: kube.pods.pop((NS, POD), None)

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.process_tree is None
    assert f"process tree: {refused(None)}" in outcome.evidence.notes
    assert ABSENT not in report(outcome)


def test_reads_of_the_pod_that_stayed_are_kept(kube: FakeKube) -> None:
    outcome = run(make(kube))

    result = capture(outcome)
    assert result.reason == "captured manifest, owner chain, logs, process tree, sockets"
    assert "refused" not in result.details
    assert outcome.evidence is not None and outcome.evidence.logs and outcome.evidence.process_tree
    assert connection(outcome)["open"] is True and SHELL in report(outcome)


# ---------------------------------------------------------------------------------- a failed exec says why


def test_a_failed_exec_is_capture_failed_with_the_status_channels_reason(kube: FakeKube) -> None:
    kube.tcp_text = ""  # cat printed nothing: without the status this would read as an empty table
    kube.exec_exit["cat"] = (1, EXIT_1)

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.sockets is None
    assert f"sockets: capture failed: {EXIT_1}" in outcome.evidence.notes
    assert "not captured: sockets" in capture(outcome).reason
    assert connection(outcome) == {
        "matched": False,
        "open": None,
        "remote": REMOTE,
        "why": f"unknown: the socket table was not read (capture failed: {EXIT_1})",
    }
    text = report(outcome)
    assert ABSENT not in text and "Reverse shell connection: unknown: the socket table was not read" in text


def test_a_command_that_could_not_start_says_so(kube: FakeKube) -> None:
    kube.ps_text = ""
    missing = 'exec: "ps": executable file not found in $PATH: unknown'
    kube.exec_exit["ps"] = (None, missing)

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.process_tree is None
    assert f"process tree: capture failed: {missing}" in outcome.evidence.notes
    assert f"Process tree: capture failed: {missing}" in report(outcome)


def test_a_non_zero_exit_keeps_what_was_printed_and_says_the_exit_code(kube: FakeKube) -> None:
    kube.exec_exit["ps"] = (1, "command terminated with non-zero exit code: exit code 1")

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.process_tree == kube.ps_text
    assert (
        "process tree: kept what ps printed, but it failed: command terminated with non-zero exit code: exit code 1"
        in (outcome.evidence.notes)
    )


def test_a_socket_table_from_a_failed_cat_is_partial_not_proof_of_absence(kube: FakeKube) -> None:
    # /proc/net/tcp6 missing: cat printed tcp and exited 1. An IPv4 peer on a dual-stack socket is listed only in
    # tcp6, so the shell may be among what was not printed.
    kube.tcp_text = TCP_TEXT.splitlines(keepends=True)[0] + FILLER
    kube.exec_exit["cat"] = (1, "cat: /proc/net/tcp6: No such file or directory (exit code 1)")

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.sockets is not None  # what was printed is kept
    why = connection(outcome)["why"]
    assert connection(outcome)["open"] is None
    assert why.startswith("unknown: none of the 1 sockets read was connected to 198.51.100.77:9001, but the socket")
    assert "exit code 1" in why and ABSENT not in report(outcome)


def test_a_socket_found_in_a_failed_read_is_still_found(kube: FakeKube) -> None:
    kube.exec_exit["cat"] = (1, "cat: /proc/net/tcp6: No such file or directory (exit code 1)")

    outcome = run(make(kube))

    assert connection(outcome)["matched"] is True and connection(outcome)["open"] is True


# ----------------------------------------------------------------------------------- a table cut short


def test_a_socket_table_over_the_byte_cap_says_truncated_and_claims_no_absence(kube: FakeKube) -> None:
    kube.tcp_text = FILLER * 200 + TCP_TEXT  # the shell's socket lies beyond the cap
    policy = parse_policy("rules: [{name: r, actions: [{action: isolate}, {action: capture, exec_limit_bytes: 4096}]}]")

    outcome = run(make(kube, action=None, policy=policy))

    assert outcome.evidence is not None
    assert "sockets: the socket table is incomplete: truncated at 4096 bytes" in outcome.evidence.notes
    verdict = connection(outcome)
    assert verdict["matched"] is False and verdict["open"] is None
    assert verdict["why"].startswith("unknown: none of the ")
    assert verdict["why"].endswith("but the socket table is incomplete (truncated at 4096 bytes)")
    text = report(outcome)
    assert ABSENT not in text and "truncated at 4096 bytes" in text


def test_filler_sockets_ahead_of_the_shell_do_not_hide_it(kube: FakeKube) -> None:
    kube.tcp_text = FILLER * 512 + TCP_TEXT  # 512 entries fill the report's list before the shell's

    outcome = run(make(kube))

    assert outcome.evidence is not None and outcome.evidence.sockets is not None
    assert len(outcome.evidence.sockets) == 512
    assert any("514 entries, the report lists the first 512 (truncated at 512" in n for n in outcome.evidence.notes)
    assert connection(outcome)["matched"] is True and connection(outcome)["open"] is True
    assert SHELL in report(outcome)


def test_a_whole_table_without_the_connection_may_say_it_was_absent(kube: FakeKube) -> None:
    kube.tcp_text = TCP_TEXT.splitlines(keepends=True)[0] + FILLER

    outcome = run(make(kube))

    assert connection(outcome) == {
        "matched": False,
        "open": False,
        "remote": REMOTE,
        "why": f"{ABSENT} at capture time",
    }
    assert f"Reverse shell connection: {ABSENT} at capture time." in report(outcome)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"mode": "dry-run"}, "not captured: dry-run (exec runs a process the attacker can see)"),
        ({"process_capture": False}, "not captured: process capture is disabled (RESPONDER_PROCESS_CAPTURE)"),
    ],
)
def test_sockets_that_were_not_read_leave_the_connection_unknown(
    kube: FakeKube, settings: dict[str, Any], why: str
) -> None:
    outcome = run(make(kube, **settings))

    assert kube.socket_reads == []
    assert connection(outcome)["open"] is None
    assert connection(outcome)["why"] == f"unknown: the socket table was not read ({why})"
    assert ABSENT not in report(outcome)
