"""The incident report: built from real pipeline outcomes (with fakes), rendered safely, and available offline."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from responder.config import Settings
from responder.containment.context import Evidence
from responder.containment.results import ActionResult, Status
from responder.intake.envelope import detect_bytes
from responder.intake.findings import Process
from responder.intake.triage import Verdict, triage
from responder.investigation import links, logfilters
from responder.investigation.investigator import LOG_TITLES
from responder.policy.rules import Policy, PolicyEngine
from responder.ports import NamespaceView
from responder.report.builder import build_report
from responder.report.markdown import IDENTITY_HEADING, md_block, md_code, md_text, render_markdown
from responder.report.models import STEP_TITLES, IncidentReport
from responder.report.outcome import Outcome
from responder.report.owning_team import find_owning_team
from responder.report.record import make_record
from responder.service import Dependencies, Responder
from tests.support.common import environ_without_settings, responder_cli
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube, FakeLogs
from tests.unit.sample_world import (
    INSTANCE_ID,
    SAMPLES,
    ReportKube,
    cluster_info,
    entry,
    sample_finding,
    sample_target,
)

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
HEADINGS = [f"## {t}" for t in STEP_TITLES]


def respond(
    sample: str = "reverse_shell_v1.json",
    *,
    kube: FakeKube | None = None,
    logs: FakeLogs | None = None,
    cluster_owner: str | None = None,
    mode: str | None = None,
) -> Outcome:
    settings = Settings(mode=mode)  # type: ignore[arg-type]
    deps = Dependencies(settings=settings, policy=PolicyEngine(Policy(), settings), logs=logs)
    if kube is not None:
        # SCC vouches for the sample (evidence is only captured for a finding SCC vouched for).
        deps.findings_api = scc = FakeFindings()
        scc.add_from(json.loads((SAMPLES / sample).read_bytes()))
        deps.connector = FakeConnector(kube, cluster_info(sample_target(sample).cluster, owner=cluster_owner))
    responder = Responder(deps)
    try:
        return responder.respond(detect_bytes((SAMPLES / sample).read_bytes()))
    finally:
        for pool in vars(responder).values():  # whatever executors this version of the Responder keeps
            if isinstance(pool, ThreadPoolExecutor):
                pool.shutdown(wait=True)


def split_markdown(md: str) -> tuple[list[str], list[str]]:
    """(lines outside fenced code blocks, contents of each block), following CommonMark's backtick-fence rule."""
    outside: list[str] = []
    blocks: list[str] = []
    fence = 0
    current: list[str] = []
    for line in md.split("\n"):
        stripped = line.strip()
        run = len(stripped) - len(stripped.lstrip("`"))
        if fence == 0:
            if run >= 3:
                fence, current = run, []
            else:
                outside.append(line)
        elif run >= fence and stripped == "`" * run:
            blocks.append("\n".join(current))
            fence = 0
        else:
            current.append(line)
    assert fence == 0, "a code block was left open"
    return outside, blocks


# ------------------------------------------------------------------------------------------------- full report


@pytest.fixture(scope="module")
def full() -> tuple[Outcome, IncidentReport, str]:
    target = sample_target()
    kube = ReportKube(target)
    logs = FakeLogs(
        {
            "container": [entry(25, "connecting to 198.51.100.77:9001"), entry(20, "GET /cart 200")],
            "audit": [entry(24, "io.k8s.core.v1.pods.exec.create core/v1/namespaces/storefront/pods/x/exec")],
            "serial_console": [],
        }
    )
    # Enforce mode: the process tree is captured only then (exec is a side effect the attacker can see).
    outcome = respond(kube=kube, logs=logs, mode="enforce")
    report = build_report(outcome, now=NOW)
    return outcome, report, render_markdown(report)


def test_full_report_model(full: tuple[Outcome, IncidentReport, str]) -> None:
    outcome, report, _ = full
    assert report.verdict == "act"
    assert report.owner == "payments"  # the namespace's `team` label
    assert report.owner_info is not None
    assert (report.owner_info.key, report.owner_info.source) == ("team", "namespace label")
    assert report.finding is not None
    assert report.finding.remote == "198.51.100.77:9001"
    assert report.finding.local == "10.48.2.17:51734"
    assert report.finding.processes[0].virustotal == links.virustotal_url(
        "9f2c4b7a1e0d3c5b8a6f4e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a697881"
    )
    assert report.cluster is not None
    assert report.cluster.network_policy_enforced is True
    assert report.node is not None
    assert (report.node.instance_id, report.node.node_pool, report.node.zone) == (
        INSTANCE_ID,
        "default-pool",
        "us-east1-b",
    )
    assert report.pod is not None
    assert report.pod.source == "cluster"
    assert report.pod.service_account == "cart-api"
    assert [w.kind for w in report.pod.owner_chain] == ["ReplicaSet", "Deployment"]
    assert report.pod.containers[0].privileged
    assert report.pod.containers[0].restarts == 2
    assert report.logs is not None
    assert [s.status for s in report.logs.searches] == ["ok", "ok", "ok", "ok"]
    assert outcome.investigation is not None
    assert [s.filter for s in report.logs.searches] == [s.filter for s in outcome.investigation.logs]
    assert report.inspect is not None
    assert report.inspect.process_tree is not None
    assert "bash -i" in report.inspect.process_tree
    assert report.response is not None
    assert not report.response.dry_run
    assert {a.action for a in report.response.actions} >= {"label", "isolate", "capture"}
    assert any("payments" in t for t in report.response.todo)
    assert IncidentReport.model_validate_json(report.model_dump_json()) == report


def test_full_report_markdown_walks_the_seven_steps(full: tuple[Outcome, IncidentReport, str]) -> None:
    _, report, md = full
    outside, blocks = split_markdown(md)
    headings = [line for line in outside if line.startswith("## ")]
    assert headings == HEADINGS
    assert outside[0].startswith("# Incident report: Reverse Shell in storefront/cart-api-5c8d7b9f4-q7w2z")

    commands = next(b for b in blocks if "get-credentials" in b)
    assert "gcloud container clusters get-credentials retail-gke --region us-east1 --project example-retail-prod" in (
        commands.split("\n")
    )
    assert "kubectl exec --namespace=storefront -ti cart-api-5c8d7b9f4-q7w2z -c api -- /bin/sh" in commands
    assert "ps axjf" in commands.split("\n")

    assert report.logs is not None
    for search in report.logs.searches:
        assert search.filter is not None
        assert search.filter in blocks  # verbatim, in its own block
        assert f"[Open in Logs Explorer]({links.logs_explorer_url('example-retail-prod', search.filter)})" in md
    assert f'resource.labels.instance_id="{INSTANCE_ID}"' in md
    assert any("connecting to 198.51.100.77:9001" in b for b in blocks)
    assert any("bash -i" in b for b in blocks)  # the captured process tree

    assert "https://www.virustotal.com/gui/file/9f2c4b7a1e0d3c5b8a6f4e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a697881" in md
    assert "(https://attack.mitre.org/techniques/T1059/)" in md
    assert "(https://attack.mitre.org/techniques/T1105/)" in md
    assert "(https://attack.mitre.org/tactics/TA0011/)" in md
    assert links.cluster_url(sample_target().cluster) in md
    assert links.pod_url(sample_target()) in md
    assert "/kubernetes/deployment/us-east1/retail-gke/storefront/cart-api/overview" in md
    assert "security/command-center/findingsv2;name=organizations%2F987654321012" in md
    assert "- **Owner**: `payments` (namespace label `team`)" in md
    assert "Contact the owner: payments" in md


# ------------------------------------------------------------------------------------------------------ offline


def test_offline_report_has_everything_derivable_from_the_finding() -> None:
    outcome = respond("reverse_shell_v2.json")
    report = build_report(outcome, now=NOW)
    md = render_markdown(report)
    outside, blocks = split_markdown(md)
    assert [line for line in outside if line.startswith("## ")] == HEADINGS
    assert report.owner is None
    target = sample_target("reverse_shell_v2.json")
    window = logfilters.log_window(sample_finding("reverse_shell_v2.json").event_time, 30)
    assert logfilters.container_filter(target, window) in blocks
    assert logfilters.audit_filter(target, window) in blocks
    assert logfilters.serial_console_template(window) in blocks
    assert "--zone asia-northeast1-a" in md
    assert "kubectl exec --namespace=banking -ti settlement-0 -c worker -- /bin/sh" in md
    assert report.logs is not None
    for search in report.logs.searches:
        assert search.status == "unavailable"
        assert search.detail
    assert report.pod is not None
    assert report.pod.source == "finding"
    assert "no cluster credentials configured" in md
    assert report.inspect is not None
    assert report.inspect.process_tree is None
    assert "not captured" in report.inspect.process_tree_note
    assert "https://www.virustotal.com/gui/file/1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978879a6b5c4d3e2f1a0b" in md


def test_act_outcome_without_investigation_still_gets_filters() -> None:
    finding = sample_finding()
    verdict = triage(finding)
    record = make_record(Verdict.ACT, verdict.code, verdict.reason)
    report = build_report(Outcome(record=record, finding=finding, triage=verdict), now=NOW)
    assert report.logs is not None
    assert [s.filter is not None for s in report.logs.searches] == [True, True, False, False]
    assert all(s.status == "unavailable" for s in report.logs.searches)
    assert report.response is not None
    assert report.response.actions == ()
    render_markdown(report)


@pytest.mark.parametrize(
    ("sample", "command"),
    [
        (
            "reverse_shell_v1.json",
            "gcloud container clusters get-credentials retail-gke --region us-east1 --project example-retail-prod",
        ),
        (
            "reverse_shell_v2.json",
            "gcloud container clusters get-credentials ledger-gke --zone asia-northeast1-a --project example-bank-prod",
        ),
    ],
)
def test_replay_cli_prints_the_report_offline(sample: str, command: str) -> None:
    proc = responder_cli("replay", str(SAMPLES / sample), "--report", "md", env=environ_without_settings())
    assert proc.returncode == 0, proc.stderr
    outside, _ = split_markdown(proc.stdout)
    assert [line for line in outside if line.startswith("## ")] == HEADINGS
    assert command in proc.stdout.split("\n")
    assert '"verdict":"act"' in proc.stderr  # the decision record went to stderr


# ------------------------------------------------------------------------------------------ ignore and reject


def test_ignore_report_is_short() -> None:
    finding = sample_finding().model_copy(update={"state": "INACTIVE"})
    verdict = triage(finding)
    record = make_record(verdict.verdict, verdict.code, verdict.reason, finding=finding.name)
    report = build_report(Outcome(record=record, finding=finding, triage=verdict), now=NOW)
    md = render_markdown(report)
    assert report.verdict == "ignore"
    assert report.response is None
    assert report.owner is None
    assert "not_active" in md
    assert "finding state is INACTIVE" in md
    assert "## " not in md
    assert "No automated response" in md


def test_reject_report_without_a_finding() -> None:
    record = make_record(Verdict.REJECT, "bad_finding", "message data is not JSON")
    report = build_report(Outcome(record=record), now=NOW)
    md = render_markdown(report)
    assert report.verdict == "reject"
    assert report.finding is None
    assert "rejected" in md
    assert "message data is not JSON" in md


# ------------------------------------------------------------------------------------------------------- owner


def test_owner_order_namespace_labels_then_annotations_then_cluster() -> None:
    ns = NamespaceView(name="n", labels={"contact": "lab-contact"}, annotations={"owner": "ann-owner"})
    info = cluster_info(owner="cluster-owner")
    found = find_owning_team(("owner", "team", "contact"), ns, info)
    assert found is not None
    assert (found.value, found.key, found.source) == ("ann-owner", "owner", "namespace annotation")
    found = find_owning_team(("team", "contact", "owner"), ns, info)
    assert found is not None
    assert (found.value, found.source) == ("lab-contact", "namespace label")
    found = find_owning_team(("owner",), NamespaceView(name="n"), info)
    assert found is not None
    assert (found.value, found.source) == ("cluster-owner", "cluster label")
    assert find_owning_team(("owner",), None, None) is None
    assert find_owning_team(("owner",), NamespaceView(name="n", labels={"owner": "  "}), None) is None


def test_owner_from_cluster_label_through_the_pipeline() -> None:
    kube = ReportKube(sample_target(), owner_label=None)
    report = build_report(respond(kube=kube, cluster_owner="sre-team"), now=NOW)
    assert report.owner == "sre-team"
    assert report.owner_info is not None
    assert report.owner_info.source == "cluster label"


def test_custom_owner_keys() -> None:
    kube = ReportKube(sample_target())
    report = build_report(respond(kube=kube), owner_keys=("oncall",), now=NOW)
    assert report.owner is None


# ------------------------------------------------------------------------------------------------ safe rendering


HOSTILE_ARGS = (
    "sh",
    "-c",
    "echo ```\n## 8. Owned\n``` `` ````` done",
    "`",
    "[click](javascript:alert(1)) <img src=x onerror=alert(1)> | *bold* _x_",
    "\x1b[31mred\x1b[0m\u202eevil",
)


def test_attacker_controlled_text_cannot_break_out_of_its_block() -> None:
    finding = sample_finding()
    finding = finding.model_copy(
        update={"processes": (Process(name="sh", binary_path="/bin/sh`` ## x", args=HOSTILE_ARGS, pid=7),)}
    )
    verdict = triage(finding)
    evidence = Evidence(
        process_tree="PID CMD\n`````\n## 9. Owned too\n    1 init\x1b]0;title\x07",
        logs="line1\n```\n# fake heading\n",
    )
    record = make_record(
        Verdict.ACT,
        verdict.code,
        verdict.reason,
        actions=[ActionResult(action="capture", status=Status.SUCCEEDED, reason="captured <b>x</b> | `y`")],
    )
    report = build_report(Outcome(record=record, finding=finding, triage=verdict, evidence=evidence), now=NOW)
    md = render_markdown(report)
    outside, blocks = split_markdown(md)
    ours = {outside[0], *HEADINGS, *(f"### {t}" for t in LOG_TITLES.values())}
    ours |= {"### Container log tail captured before containment", IDENTITY_HEADING}
    ours.add(f"#### {LOG_TITLES['identity_writes']}")  # the writes made with the pod's account, in its section
    assert {line for line in outside if line.startswith("#")} <= ours
    assert [line for line in outside if line.startswith(("# ", "## "))] == [outside[0], *HEADINGS]
    assert not any("Owned" in line for line in outside)
    assert not any("fake heading" in line for line in outside)
    args_block = next(b for b in blocks if "[0] sh" in b)
    assert "[2] echo ```\ufffd## 8. Owned\ufffd``` `` ````` done" in args_block  # newlines neutralised, text intact
    assert "\x1b" not in md
    assert "\u202e" not in md
    assert "\x07" not in md
    assert "<img" not in "\n".join(outside)
    assert "\\<b\\>x\\</b\\>" in md
    assert any("## 9. Owned too" in b for b in blocks)


def test_args_are_bounded() -> None:
    finding = sample_finding()
    finding = finding.model_copy(update={"processes": (Process(name="x", args=tuple("a" * 5000 for _ in range(100))),)})
    verdict = triage(finding)
    report = build_report(Outcome(record=make_record(Verdict.ACT, "c", "r"), finding=finding, triage=verdict))
    assert report.finding is not None
    proc = report.finding.processes[0]
    assert proc.args_truncated
    assert sum(len(a) for a in proc.args) <= 8192
    assert all(len(a) <= 1100 for a in proc.args)


def test_markdown_helpers() -> None:
    assert md_code("plain") == "`plain`"
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("") == "(empty)"
    assert md_block("x ``` y\n````") == "`````\nx ``` y\n````\n`````"
    assert md_block("x") == "```\nx\n```"
    assert md_text("a_b*c[d](e)<f>|g`h") == "a\\_b\\*c\\[d\\](e)\\<f\\>\\|g\\`h"
    assert re.fullmatch(r"[^\n]*", md_text("a\nb"))
