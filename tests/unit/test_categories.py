"""A finding category is a profile: the seam, proven end to end through the real Responder with the fakes.

Reverse Shell is the first profile (its behaviour is the rest of the suite); Added Binary Executed is the second,
report-only by default: it gets its own record code, report wording and techniques, and the plan the policy gives
it. ``RESPONDER_CATEGORIES`` chooses among the profiles and refuses a category without one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from responder.config import Settings
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.errors import ConfigError
from responder.intake import categories
from responder.intake.categories import ADDED_BINARY_EXECUTED, REVERSE_SHELL, normalise_category
from responder.intake.findings import to_finding
from responder.intake.notification import NotificationMessage
from responder.intake.triage import triage
from responder.policy.rules import Policy, PolicyEngine, load_policy, parse_policy
from responder.ports import ClusterInfo
from responder.report.builder import build_report
from responder.report.markdown import render_markdown
from responder.report.outcome import Outcome
from tests.notifications import added_binary_notification, notification
from tests.unit.fakes import FakeFindings, FakeKube
from tests.unit.test_containment import NS, POD, make, run, statuses

BINARY = added_binary_notification(namespace=NS, pod=POD, container="api")
SHELL = notification(namespace=NS, pod=POD, container="api")
BOTH = ["Reverse Shell", "Added Binary Executed"]
CONTAIN_BINARIES = parse_policy(
    """
rules:
  - name: binaries-isolate
    match: {categories: ["Added Binary Executed"]}
    actions: [{action: label}, {action: isolate}, {action: capture}]
  - name: everything-else
    actions: [{action: label}, {action: isolate}, {action: capture}, {action: delete}]
"""
)


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_web_deployment(NS, POD)
    k.add_policy(NS, "allow-all")
    return k


def _scc(*docs: dict[str, Any]) -> FakeFindings:
    scc = FakeFindings()
    for doc in docs:
        scc.add_from(doc)
    return scc


def _on_calico(kube: FakeKube, doc: dict[str, Any]) -> Outcome:
    """Both categories enabled, the policy with a rule for added binaries, on a dataplane that keeps established
    connections (Calico, read from GKE)."""
    calico = ClusterInfo(name="c", location="us-east1", network_policy_enabled=True)
    responder = make(
        kube,
        action=None,
        policy=CONTAIN_BINARIES,
        findings=_scc(doc),
        categories=BOTH,
        info=calico,
        netpol_enforcement="auto",
    )
    return run(responder, doc)


def _markdown(outcome: Outcome) -> str:
    return render_markdown(build_report(outcome)).replace("\\", "")


# ------------------------------------------------------------------------------------------------------ the registry


def test_each_profile_has_its_own_name_and_record_code_and_the_default_is_reverse_shell_only() -> None:
    profiles = list(categories.PROFILES.values())
    assert [p.category for p in profiles] == ["Reverse Shell", "Added Binary Executed"]
    assert len({p.code for p in profiles}) == len(profiles)
    assert all(categories.get(p.category.upper().replace(" ", "_")) is p for p in profiles)  # SCC's module spelling
    assert categories.DEFAULT_CATEGORIES == ("Reverse Shell",)
    assert PolicyEngine(Policy(), Settings()).defaults.categories == ("Reverse Shell",)
    assert categories.get("Unexpected Child Shell") is None
    assert categories.of("Unexpected Child Shell") is categories.UNPROFILED  # cautious, never what acts


@pytest.mark.parametrize(
    ("where", "build"),
    [
        ("RESPONDER_CATEGORIES", lambda: PolicyEngine(Policy(), Settings(categories=["Unexpected Child Shell"]))),
        ("defaults.categories", lambda: parse_policy("defaults: {categories: [Reverse Shel]}")),
        ("match.categories", lambda: parse_policy("rules: [{name: r, match: {categories: [Added Binary]}}]")),
    ],
)
def test_a_category_without_a_profile_is_refused_at_load(where: str, build: Any) -> None:
    with pytest.raises(ConfigError, match="no category profile") as caught:
        build()
    assert "'Reverse Shell', 'Added Binary Executed'" in str(caught.value), where


def test_the_connection_is_read_from_the_properties_the_category_names() -> None:
    shell = to_finding(NotificationMessage.model_validate(SHELL))
    assert shell.remote is not None and shell.local is not None
    # Reverse Shell properties on another category's finding are not its connection.
    odd = added_binary_notification()
    odd["finding"]["sourceProperties"].update(SHELL["finding"]["sourceProperties"])
    odd["finding"]["sourceProperties"]["Pod_Name"] = odd["finding"]["kubernetes"]["pods"][0]["name"]
    odd["finding"]["sourceProperties"]["Pod_Namespace"] = odd["finding"]["kubernetes"]["pods"][0]["ns"]
    binary = to_finding(NotificationMessage.model_validate(odd))
    assert (binary.remote, binary.local) == (None, None)


def test_triage_gives_each_category_its_own_record_code() -> None:
    for doc, profile in ((SHELL, REVERSE_SHELL), (BINARY, ADDED_BINARY_EXECUTED)):
        verdict = triage(to_finding(NotificationMessage.model_validate(doc)), BOTH)
        assert (verdict.verdict.value, verdict.code) == ("act", profile.code)
    only_shells = triage(to_finding(NotificationMessage.model_validate(BINARY)))
    assert (only_shells.verdict.value, only_shells.code) == ("ignore", "category")


# ----------------------------------------------------------------------------------- Added Binary Executed, e2e


def test_not_handled_unless_enabled(kube: FakeKube) -> None:
    outcome = run(make(kube, findings=_scc(BINARY)), BINARY)
    assert (outcome.record.verdict.value, outcome.record.code) == ("ignore", "category")
    assert kube.writes == []


@pytest.mark.parametrize("policy", [Policy(), load_policy(None)], ids=["built-in", "shipped policy.yaml"])
def test_enabled_it_is_report_only_by_default_and_done(kube: FakeKube, policy: Policy) -> None:
    """Neither the built-in isolate, nor the shipped policy's catch-all rule, nor RESPONDER_ACTION=isolate (``make``
    sets it) contains a report-only category: no rule names it. Vouched and left alone by design, it is done: its
    report goes out, its marks record it, nothing pages."""
    scc = _scc(BINARY)
    outcome = run(make(kube, policy=policy, findings=scc, categories=BOTH), BINARY)
    record = outcome.record
    assert (record.verdict.value, record.code, record.outcome, record.severity) == (
        "ignore",
        "report_only",
        "done",
        "INFO",
    )
    assert "Added Binary Executed is report-only by default" in record.reason
    assert record.actions == []
    assert kube.writes == []  # not even the inert deny-all: the forecast plan had no isolation
    assert QUARANTINE_LABEL not in kube.pods[(NS, POD)].labels
    (name, marks), *_ = scc.marks_updates
    assert (name, marks["rsr_status"], marks["rsr_outcome"]) == (BINARY["finding"]["name"], "reported", "done")
    report = build_report(outcome)
    assert report.title.startswith(f"Added Binary Executed in {NS}/{POD}")
    assert report.response is not None and not report.response.todo[0].startswith("Not contained")


def test_a_rule_that_names_it_contains_it_with_its_own_code_wording_and_techniques(kube: FakeKube) -> None:
    """On a dataplane that keeps established connections (Calico) the isolation still contains an added binary: its
    threat is not a live session, so nothing escalates to a delete and nothing warns of a shell left alive."""
    outcome = _on_calico(kube, BINARY)
    record = outcome.record
    assert (record.verdict.value, record.code, record.rule) == ("act", "added_binary_executed", "binaries-isolate")
    assert (record.outcome, record.severity) == ("done", "NOTICE")
    assert statuses(outcome) == {
        "label": "skipped",
        "isolate": "succeeded",
        "identity": "succeeded",
        "capture": "succeeded",
        "mark": "succeeded",
    }
    isolate = next(a for a in record.actions if a.action == "isolate")
    assert isolate.details["session_survives"] is True  # said as it is: Calico keeps established connections
    assert "may still be alive" not in isolate.reason and "reverse shell" not in isolate.reason
    assert kube.pods[(NS, POD)].labels[QUARANTINE_LABEL] == "true"
    assert (NS, DENY_ALL_POLICY) in kube.policies
    assert kube.deleted == []

    report = build_report(outcome)
    assert report.finding is not None
    assert (report.finding.what, report.finding.reports_connection) == ("added binary", False)
    runbook = [t.attack_id for t in report.mitre if t.source == "runbook"]
    assert [t.attack_id for t in report.mitre] == ["TA0002", "T1105", "T1106"] and runbook == []  # the finding's own
    assert report.inspect is not None and report.inspect.connection is None
    assert report.response is not None
    assert all(step in report.response.todo for step in ADDED_BINARY_EXECUTED.advice)
    text = _markdown(outcome)
    assert "Reverse shell" not in text and "reverse shell" not in text
    assert "VirusTotal" in text and "/tmp/.cache/kdevtmpfsi" in text


def test_its_techniques_come_from_its_profile_when_the_finding_lists_none(kube: FakeKube) -> None:
    doc = added_binary_notification(namespace=NS, pod=POD, container="api", mitreAttack=None)
    outcome = run(make(kube, findings=_scc(doc), categories=BOTH), doc)
    assert [(t.attack_id, t.source) for t in build_report(outcome).mitre] == [
        ("T1105", "runbook"),
        ("T1106", "runbook"),
    ]


def test_a_containment_its_rule_asked_for_and_did_not_get_pages_in_its_own_words(kube: FakeKube) -> None:
    """left_alone_pages is about what the configuration chose; an isolation that cannot work (hostNetwork) is a
    containment someone asked for and did not get: not_contained, at ERROR, saying what is at stake for this one."""
    kube.add_pod(NS, "agent-1", {"app": "agent"}, host_network=True)
    doc = added_binary_notification(namespace=NS, pod="agent-1", container="api")
    outcome = run(make(kube, action=None, policy=CONTAIN_BINARIES, findings=_scc(doc), categories=BOTH), doc)
    assert statuses(outcome)["isolate"] == "failed" and "delete" not in statuses(outcome)  # no escalation for it
    assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
    assert outcome.record.reason.startswith("NOT CONTAINED: an attacker may still be running code in the pod; ")
    response = build_report(outcome).response
    assert response is not None
    assert response.todo[0].startswith(f"Not contained: the added binary in {NS}/agent-1 may still be running. ")
    assert "NOT CONTAINED" not in response.todo[0]  # the prefix is taken off, in its own words


@pytest.mark.parametrize(
    ("doc", "outcome", "severity"),
    [(SHELL, "not_contained", "ERROR"), (BINARY, "done", "NOTICE")],
    ids=["reverse shell pages", "added binary does not"],
)
def test_dry_run_leaves_both_alone_and_only_the_shell_pages(
    kube: FakeKube, doc: dict[str, Any], outcome: str, severity: str
) -> None:
    ended = run(
        make(kube, mode="dry-run", action=None, policy=CONTAIN_BINARIES, findings=_scc(doc), categories=BOTH), doc
    )
    assert (ended.record.outcome, ended.record.severity) == (outcome, severity)
    assert kube.writes == []


def test_reverse_shell_behaviour_is_unchanged_beside_it(kube: FakeKube) -> None:
    """Same policy, same Calico dataplane: the shell's rule is the catch-all (the binaries' rule does not match it),
    it is captured then deleted, and the report speaks of a reverse shell with the runbook's T1059 and T1105."""
    outcome = _on_calico(kube, SHELL)
    assert (outcome.record.code, outcome.record.rule, outcome.record.outcome) == (
        "reverse_shell",
        "everything-else",
        "done",
    )
    assert statuses(outcome)["delete"] == "succeeded" and (NS, POD) not in kube.pods
    report = build_report(outcome)
    assert report.finding is not None and (report.finding.what, report.finding.reports_connection) == (
        "reverse shell",
        True,
    )
    assert {"T1059", "T1105"} <= {t.attack_id for t in report.mitre}
    text = _markdown(outcome)
    assert "**Reverse shell**: remote (attacker) end" in text and "Reverse shell connection:" in text


def test_the_categories_normalise_the_same_everywhere() -> None:
    assert normalise_category("ADDED_BINARY_EXECUTED") == normalise_category("Added Binary Executed")
    engine = PolicyEngine(parse_policy("defaults: {categories: [ADDED_BINARY_EXECUTED]}"), Settings())
    finding = to_finding(NotificationMessage.model_validate(json.loads(json.dumps(BINARY))))
    assert triage(finding, engine.defaults.categories).code == "added_binary_executed"
