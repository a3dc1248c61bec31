"""Policy file: parsing, matching, env precedence, the CLI, and the never-touch guarantees as a property."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.config import Settings
from responder.errors import ConfigError
from responder.intake.findings import to_finding
from responder.intake.notification import parse_notification
from responder.intake.triage import triage
from responder.policy.rules import Policy, PolicyEngine, json_schema, load_policy, parse_policy
from tests.notifications import notification
from tests.support.common import responder_cli

ROOT = Path(__file__).resolve().parents[2]

OPERATOR_POLICY = """
version: 1
defaults:
  mode: enforce
  budget: {max_actions: 3, window_s: 3600}
  protected_namespaces: [kube-system, "gke-*", "infra-*"]
rules:
  - name: report-only-system
    match: {namespaces: ["monitoring", "logging"]}
    actions: [{action: capture}]
  - name: prod-isolate
    match: {namespaces: ["prod-*"]}
    actions: [{action: label}, {action: isolate, detach: true}, {action: capture}]
  - name: dev-delete
    match: {namespaces: ["dev-*"], severities: [HIGH, CRITICAL]}
    actions: [{action: delete, grace_period_s: 2}, {action: capture}, {action: isolate}]
  - name: payments-extra
    match: {pod_labels: {team: payments}, clusters: ["retail-*"]}
    continue: true
    actions: [{action: capture, log_tail_lines: 1000}]
  - name: fallback
    actions: [{action: isolate}, {action: capture}]
"""


def plan_for(
    policy_text: str, namespace: str, labels: dict[str, str] | None = None, severity: str = "CRITICAL", **env: Any
) -> Any:
    doc = notification(namespace=namespace, pod="web-1", severity=severity)
    finding = to_finding(parse_notification(json.dumps(doc).encode()))
    target = triage(finding).target
    assert target is not None
    s = Settings(**env)
    return PolicyEngine(parse_policy(policy_text), s).plan(finding, target, labels or {"app": "web"})


@pytest.mark.parametrize(
    ("namespace", "labels", "severity", "rule", "steps"),
    [
        ("prod-shop", None, "CRITICAL", "prod-isolate", ["isolate", "label", "capture"]),
        ("dev-shop", None, "HIGH", "dev-delete", ["isolate", "capture", "delete"]),  # capture before delete
        ("dev-shop", None, "LOW", "fallback", ["isolate", "capture"]),  # severity predicate not met
        ("monitoring", None, "CRITICAL", "report-only-system", ["capture"]),
        (
            "shop",
            {"app": "web", "team": "payments"},
            "CRITICAL",
            "payments-extra+fallback",
            ["isolate", "capture", "capture"],
        ),
        ("shop", None, "CRITICAL", "fallback", ["isolate", "capture"]),
        ("infra-dns", None, "CRITICAL", None, []),
        ("kube-system", None, "CRITICAL", None, []),
    ],
)
def test_matching_table(
    namespace: str, labels: dict[str, str] | None, severity: str, rule: str | None, steps: list[str]
) -> None:
    plan = plan_for(OPERATOR_POLICY, namespace, labels, severity)
    assert plan.rule == rule
    assert [s.action for s in plan.steps] == steps
    assert plan.mode == "enforce"


def test_typed_parameters_reach_the_plan() -> None:
    plan = plan_for(OPERATOR_POLICY, "dev-shop")
    delete = next(s for s in plan.steps if s.action == "delete")
    assert delete.destructive
    assert delete.params.grace_period_s == 2  # type: ignore[attr-defined]


def test_env_overrides_file_which_overrides_defaults() -> None:
    engine = PolicyEngine(parse_policy(OPERATOR_POLICY), Settings(mode="dry-run", budget_max=9))
    assert engine.defaults.mode == "dry-run"  # env beats file
    assert engine.defaults.budget.max_actions == 9
    assert engine.defaults.budget.window_s == 3600  # file value kept where env is silent
    assert engine.defaults.verify_finding is True  # built-in default where both are silent
    engine = PolicyEngine(parse_policy(OPERATOR_POLICY), Settings())
    assert engine.defaults.mode == "enforce"  # file beats built-in
    assert PolicyEngine(Policy(), Settings()).defaults.mode == "dry-run"  # safe built-in


def test_env_action_override_and_protected_namespaces_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONDER_ACTION", "delete")
    monkeypatch.setenv("RESPONDER_PROTECTED_NAMESPACES", "kube-system, prod-*")
    from responder.config import load_settings

    s = load_settings()
    engine = PolicyEngine(parse_policy(OPERATOR_POLICY), s)
    finding = to_finding(parse_notification(json.dumps(notification(namespace="dev-x", pod="p")).encode()))
    target = triage(finding).target
    assert target is not None
    assert [st.action for st in engine.plan(finding, target, {}).steps] == ["isolate", "label", "capture", "delete"]
    prod = to_finding(parse_notification(json.dumps(notification(namespace="prod-x", pod="p")).encode()))
    prod_target = triage(prod).target
    assert prod_target is not None
    assert engine.plan(prod, prod_target, {}).steps == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules: [{name: a, actions: [{action: isolate, detatch: true}]}]",
            "unknown key 'detatch'; valid keys: action, detach",
        ),
        ("rules: [{name: a, actions: [{action: nuke}]}]", "valid actions: capture, delete, isolate, label"),
        ("defaults: {mode: yolo}", "defaults.mode"),
        ("defaults: {budget: {max_actions: -1}}", "max_actions"),
        ("rules: [{name: a}, {name: a}]", "rule names must be unique"),
        ("rules: [{name: a, match: {namespace: [x]}}]", "unknown key 'namespace'"),
        ("rules: [{name: a, actions: [{action: delete, grace_period_s: 0}]}]", "grace_period_s"),
        ("version: 2", "version"),
        (": : :", "not valid YAML"),
        ("- a list", "mapping at the top level"),
    ],
)
def test_invalid_policies_give_precise_messages(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid|YAML|mapping") as err:
        parse_policy(text)
    assert message in str(err.value)


def test_shipped_policy_is_valid_and_safe() -> None:
    policy = load_policy(ROOT / "policy.yaml")
    assert policy.defaults.mode == "dry-run"
    assert "kube-system" in policy.defaults.protected_namespaces


def test_missing_explicit_policy_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_json_schema_describes_actions() -> None:
    schema = json.dumps(json_schema())
    for name in ("IsolateStep", "DeleteStep", "grace_period_s", "protected_namespaces"):
        assert name in schema


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return responder_cli(*args, env={"PATH": "/usr/bin:/bin"}, timeout=None)


def test_validate_policy_and_plan_cli(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text(OPERATOR_POLICY)
    assert _cli("validate-policy", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: a, actions: [{action: isolate, detatch: true}]}]")
    result = _cli("validate-policy", str(bad))
    assert result.returncode == 1
    assert "detatch" in result.stderr
    finding = tmp_path / "f.json"
    finding.write_text(json.dumps(notification(namespace="dev-shop", pod="web-1")))
    shown = _cli("plan", str(finding), "--policy", str(good))
    assert shown.returncode == 0, shown.stderr
    assert "dev-delete" in shown.stdout
    assert "delete(" in shown.stdout
    planned = json.loads(_cli("plan", str(finding), "--policy", str(good), "--json").stdout)
    assert [s["action"] for s in planned["steps"]] == ["isolate", "capture", "delete"]


# ------------------------------------------------------------------------------------------- never-touch property

namespaces = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
globs = st.one_of(namespaces, namespaces.map(lambda n: n[:3] + "*"), st.just("*"))
steps = st.lists(st.sampled_from(["label", "isolate", "capture", "delete"]), max_size=4).map(
    lambda names: [{"action": n} for n in names]
)
rules = st.lists(
    st.fixed_dictionaries(
        {
            "match": st.fixed_dictionaries({}, optional={"namespaces": st.lists(globs, max_size=3)}),
            "actions": steps,
            "continue": st.booleans(),
        }
    ),
    max_size=4,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=rules,
    protected=st.lists(globs, min_size=1, max_size=3),
    namespace=namespaces,
    exempt=st.booleans(),
    action=st.sampled_from([None, "isolate", "delete", "none"]),
)
def test_protected_and_exempt_are_never_touched(
    rules: list[dict[str, Any]], protected: list[str], namespace: str, exempt: bool, action: str | None
) -> None:
    import fnmatch

    for i, rule in enumerate(rules):
        rule["name"] = f"r{i}"
    policy = Policy.model_validate({"defaults": {"mode": "enforce", "protected_namespaces": protected}, "rules": rules})
    engine = PolicyEngine(policy, Settings(action=action))  # type: ignore[arg-type]
    doc = notification(namespace=namespace, pod="p-1")
    finding = to_finding(parse_notification(json.dumps(doc).encode()))
    target = triage(finding).target
    assert target is not None
    namespace_labels = {"responder.rsr.dev/exempt": "true"} if exempt else {}
    # The pod's own exemption label counts for nothing: only the namespace's does.
    plan = engine.plan(finding, target, {"app": "x", "responder.rsr.dev/exempt": "true"}, namespace_labels)
    if exempt or any(fnmatch.fnmatchcase(namespace, p) for p in protected):
        assert plan.steps == ()
        assert plan.skipped


def test_env_overrides_are_held_to_the_policy_rules() -> None:
    with pytest.raises(ConfigError, match="RESPONDER_"):
        PolicyEngine(parse_policy(""), Settings(exempt_label="not a label key!"))
    with pytest.raises(ConfigError, match="exempt_label"):
        parse_policy("defaults: {exempt_label: 'spaces are not allowed'}")


@pytest.mark.parametrize("configured", ["", " , ", "prod-*", "team-a,team-b"])
@pytest.mark.parametrize("system", ["kube-system", "kube-public", "kube-node-lease", "gke-managed-x", "gmp-system"])
def test_the_protected_floor_holds_under_every_environment(
    monkeypatch: pytest.MonkeyPatch, configured: str, system: str
) -> None:
    monkeypatch.setenv("RESPONDER_PROTECTED_NAMESPACES", configured)
    monkeypatch.setenv("RESPONDER_ACTION", "delete")
    monkeypatch.setenv("RESPONDER_MODE", "enforce")
    from responder.config import load_settings

    engine = PolicyEngine(Policy(), load_settings())
    assert engine.protected(system)
    assert engine.protected("responder-system")
    finding = to_finding(parse_notification(json.dumps(notification(namespace=system, pod="p")).encode()))
    target = triage(finding).target
    assert target is not None
    plan = engine.plan(finding, target, {})
    assert (plan.steps, plan.hold) == ((), "protected")
    if configured == "prod-*":
        assert engine.protected("prod-shop")  # configuration adds to the floor


@pytest.mark.parametrize("configured", [[], ["Kube-System"], ["prod_*"], ["a" * 64], [" "]])
def test_protected_namespaces_in_the_file_only_add_and_invalid_entries_are_refused(configured: list[str]) -> None:
    text = json.dumps({"defaults": {"protected_namespaces": configured}})
    if configured:
        with pytest.raises(ConfigError, match="protected_namespaces"):
            parse_policy(text)
        return
    engine = PolicyEngine(parse_policy(text), Settings())
    assert engine.protected("kube-system") and engine.protected("gke-connect")


def test_the_budget_namespace_is_protected_wherever_it_is() -> None:
    engine = PolicyEngine(Policy(), Settings(budget_namespace="secops-responder"))
    assert engine.protected("secops-responder")


def test_the_shipped_policy_is_what_a_default_deployment_loads() -> None:
    from pathlib import Path

    from responder.policy.rules import DEFAULT_POLICY_FILE, load_policy

    assert Path(__file__).resolve().parents[2] / "policy.yaml" == DEFAULT_POLICY_FILE
    names = [rule.name for rule in load_policy(None).rules]
    assert names == ["production-isolate", "development-delete", "default-isolate"]
