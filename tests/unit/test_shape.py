"""The deny-all's shape has one home (responder/containment/shape.py): everything else that states it is checked here.

- ``is_deny_all`` is content equality on the spec as the apiserver returns it (defaults and empty lists included);
- the generated admission fixtures (tests/fixtures/admission/deny-all.yaml) are what the generator writes from the
  shape today, and on every one of them the responder's own judgement agrees with the guard's;
- the guard's ``isExactDenyAll`` is the shape rendered as CEL, its literals (name, selector, types, labels, the
  NetworkPolicy rules' name checks, the exclusion term) are the shape's, and its twins of ``with_exclusion`` and
  ``allows_traffic`` decide as the Python ones do.

Only the in-process CEL evaluator (cel-python) is used: no Go, no module proxy.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from responder.adapters.kube_json import network_policy_view
from responder.containment import shape
from responder.containment.keys import DENY_ALL_POLICY, MANAGED_BY, QUARANTINE_LABEL
from responder.containment.netpol import allows_traffic
from responder.containment.shape import (
    CURRENT,
    EXCLUSION,
    SHAPES,
    SPEC_FIELDS,
    DenyAllShape,
    deny_all_body,
    has_exclusion,
    is_deny_all,
    known_shape,
    with_exclusion,
    without_exclusion,
)
from responder.ports import LabelSelector, LabelSelectorRequirement, NetworkPolicyView
from tests.support import deny_all_fixtures
from tests.support.admission_guard import POLICIES, Guard, admission_request, load_guard, manifest_documents
from tests.unit.fakes import selector_json

PROTECTED = ("kube-system",)
EXCLUSION_JSON = {"key": EXCLUSION.key, "operator": EXCLUSION.operator, "values": list(EXCLUSION.values)}


@pytest.fixture(scope="module")
def guard() -> Guard:
    return load_guard()


def view(obj: Mapping[str, Any], namespace: str = "shop") -> NetworkPolicyView:
    """The object as the responder's adapter reads it (responder/adapters/kube_json.py)."""
    body = {**obj, "metadata": {"namespace": namespace, **obj["metadata"]}}
    return network_policy_view(body)


def _collapsed(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------- the table


def test_the_table_has_the_current_shape_first_and_versions_that_never_repeat() -> None:
    assert SHAPES[0] is CURRENT
    versions = [s.version for s in SHAPES]
    assert versions == sorted(set(versions), reverse=True)
    assert all(s.written_by for s in SHAPES)


def test_the_current_shape_is_the_one_the_keys_name() -> None:
    """The table's name and labels are the keys the rest of the responder uses (containment/keys.py)."""
    assert CURRENT.name == DENY_ALL_POLICY
    assert CURRENT.selects == {QUARANTINE_LABEL: "true"}
    assert dict(CURRENT.labels) == MANAGED_BY
    assert sorted(CURRENT.policy_types) == ["Egress", "Ingress"]  # both directions: egress-only leaves the way in
    assert LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",)) == EXCLUSION


# ------------------------------------------------------------------------------------- content equality


def test_the_body_the_responder_writes_is_the_deny_all() -> None:
    assert is_deny_all(view(deny_all_body()))
    assert known_shape(view(deny_all_body())) is CURRENT


@pytest.mark.parametrize(
    ("what", "spec", "labels"),
    [
        ("policy types in the other order", {"policyTypes": ["Egress", "Ingress"]}, None),
        ("explicit empty rule lists", {"ingress": [], "egress": []}, None),
        ("null rule lists", {"ingress": None, "egress": None}, None),
        (
            "explicit empty matchExpressions",
            {"podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}, "matchExpressions": []}},
            None,
        ),
        ("a squatter's own labels kept beside the responder's", {}, {"team.example/owner": "payments"}),
    ],
)
def test_equal_content_is_the_deny_all(what: str, spec: dict[str, Any], labels: dict[str, str] | None) -> None:
    body = deny_all_body()
    body["spec"].update(spec)
    body["metadata"]["labels"].update(labels or {})
    assert is_deny_all(view(body)), what


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("no policyTypes: the API defaults them to Ingress alone", lambda b: b["spec"].pop("policyTypes")),
        ("a field the responder never writes", lambda b: b["spec"].update(extra={"x": 1})),
        ("an ingress rule", lambda b: b["spec"].update(ingress=[{}])),
        ("an egress rule", lambda b: b["spec"].update(egress=[{}])),
        ("a policy type twice", lambda b: b["spec"].update(policyTypes=["Ingress", "Egress", "Egress"])),
        ("a selector expression", lambda b: b["spec"]["podSelector"].update(matchExpressions=[EXCLUSION_JSON])),
        ("without its label", lambda b: b["metadata"].pop("labels")),
        ("another name", lambda b: b["metadata"].update(name="rsr-quarantine-deny-all-2")),
    ],
)
def test_other_content_is_not(what: str, change: Any) -> None:
    body = deny_all_body()
    change(body)
    assert not is_deny_all(view(body)), what
    assert known_shape(view(body)) is None, what


@pytest.mark.parametrize(
    "selector",
    [
        LabelSelector(),
        LabelSelector(match_labels={"app": "web"}),
        LabelSelector(match_expressions=(LabelSelectorRequirement(key="tier", operator="In", values=("api",)),)),
    ],
)
def test_the_exclusion_comes_off_as_it_went_on(selector: LabelSelector) -> None:
    excluded = with_exclusion(selector)
    policy = NetworkPolicyView(namespace="shop", name="p", pod_selector=excluded)
    assert has_exclusion(policy) and excluded.match_expressions[-1] == EXCLUSION
    assert without_exclusion(with_exclusion(excluded)) == selector


# ------------------------------------------------------------------------------------- the generated fixtures


def test_the_fixture_file_is_what_the_generator_writes() -> None:
    assert deny_all_fixtures.FILE.read_text() == deny_all_fixtures.render(), (
        "tests/fixtures/admission/deny-all.yaml is stale: run `python -m tests.support.deny_all_fixtures`"
    )


def _generated() -> list[Any]:
    cases = yaml.safe_load(deny_all_fixtures.FILE.read_text())["cases"]
    return [pytest.param(c, id=c["name"]) for c in cases]


@pytest.mark.parametrize("case", _generated())
def test_the_responder_and_the_guard_judge_each_generated_deny_all_alike(guard: Guard, case: dict[str, Any]) -> None:
    """The guard (cel-python, the manifest's own CEL) and ``is_deny_all`` on the same object: allowed exactly when
    it is the deny-all by content. A create or update outside a protected namespace is refused for nothing else."""
    spec = case["request"]
    request = admission_request(spec["operation"], spec["resource"], namespace=spec["namespace"], name=spec["name"])
    decision = guard.review(request, case.get("object"), case.get("oldObject"))
    assert decision.matched
    assert decision.allowed == (case["expect"] == "allow"), decision.refusals
    if spec["operation"] in ("CREATE", "UPDATE") and spec["namespace"] not in PROTECTED:
        assert is_deny_all(view(case["object"])) == decision.allowed, (case["name"], decision.refusals)


def test_the_generated_fixtures_perturb_every_part_of_the_shape() -> None:
    """One refusal per policy type, per label, per direction's rules, for the selector and the name."""
    names = [c["name"] for c in yaml.safe_load(deny_all_fixtures.FILE.read_text())["cases"]]
    for kept in CURRENT.policy_types:
        assert any(f"({kept} stays open)" in n for n in names), kept
    for label in CURRENT.labels:
        assert any(f"without the label {label}" in n for n in names), label
    for key in CURRENT.selects:
        assert any(f"selecting {key} with another value" in n for n in names), key
    assert any("ingress rule" in n for n in names) and any("egress rule" in n for n in names)
    assert any("under another name" in n for n in names)


# ------------------------------------------------------------------------------------------- the guard's CEL


def _variable(name: str) -> str:
    policy = manifest_documents()[0]
    return _collapsed(next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == name))


def _q(text: str) -> str:
    assert "'" not in text and "\\" not in text, text  # keys and values the shape writes need no escaping
    return f"'{text}'"


def rendered_is_exact_deny_all(s: DenyAllShape) -> str:
    """The guard's isExactDenyAll clause for shape ``s``, as CEL (what the manifest must say, whitespace aside)."""
    labels = [f"{_q(k)} in variables.labels && variables.labels[{_q(k)}] == {_q(v)}" for k, v in s.labels.items()]
    selects = ", ".join(f"{_q(k)}: {_q(v)}" for k, v in s.selects.items())
    return " && ".join(
        [
            f"object.metadata.name == {_q(s.name)}",
            *labels,
            f"object.spec.all(k, k in [{', '.join(_q(f) for f in SPEC_FIELDS)}])",
            f"object.spec.podSelector == {{'matchLabels': {{{selects}}}}}",
            f"has(object.spec.policyTypes) && object.spec.policyTypes.size() == {len(s.policy_types)}",
            *(f"{_q(t)} in object.spec.policyTypes" for t in s.policy_types),
            # A deny-all has no rule, in any version: that is what makes it one.
            "(!has(object.spec.ingress) || object.spec.ingress.size() == 0)",
            "(!has(object.spec.egress) || object.spec.egress.size() == 0)",
        ]
    )


def test_the_guard_s_deny_all_clause_is_the_current_shape() -> None:
    assert _variable("isExactDenyAll") == rendered_is_exact_deny_all(CURRENT), (
        "deploy/kubernetes/admission-guard.yaml's isExactDenyAll is not the deny-all of responder/containment/"
        f"shape.py; it should read:\n{rendered_is_exact_deny_all(CURRENT)}"
    )


def test_the_guard_s_network_policy_rules_name_the_current_deny_all() -> None:
    policy = manifest_documents()[0]
    rules = [v for v in policy["spec"]["validations"] if "variables.isNetworkPolicy" in v["expression"]]
    named = {n for v in rules for n in re.findall(r"variables\.requestName [!=]= '([^']*)'", v["expression"])}
    assert named == {CURRENT.name}
    created = next(
        _collapsed(v["message"]) for v in rules if "isExactDenyAll" in v["expression"] and "'CREATE'" in v["expression"]
    )
    assert CURRENT.name in created
    assert all(f"{k}={v}" in created for k, v in CURRENT.selects.items())
    assert f"policyTypes {' and '.join(CURRENT.policy_types)}" in created


def test_the_guard_s_exclusion_term_is_the_shape_s() -> None:
    values = "[" + ", ".join(_q(v) for v in EXCLUSION.values) + "]"
    term = (
        f"e.key == {_q(EXCLUSION.key)} && e.operator == {_q(EXCLUSION.operator)} && has(e.values) && "
        f"e.values == {values}"
    )
    assert term in _variable("onlyExclusionAdded")


_TYPES: list[list[str] | None] = [None, [], ["Ingress"], ["Egress"], ["Ingress", "Egress"]]
_RULES: list[list[dict[str, Any]] | None] = [None, [], [{}]]
_SELECTORS = [
    LabelSelector(),
    LabelSelector(match_labels={"app": "web"}),
    LabelSelector(match_expressions=(LabelSelectorRequirement(key="tier", operator="In", values=("api",)),)),
]


@pytest.mark.parametrize(
    ("types", "ingress", "egress"),
    [
        pytest.param(t, i, e, id=f"policyTypes={t}, ingress={i}, egress={e}")
        for t, i, e in itertools.product(_TYPES, _RULES, _RULES)
    ],
)
def test_the_guard_adds_the_exclusion_where_the_responder_would(
    guard: Guard, types: list[str] | None, ingress: list[Any] | None, egress: list[Any] | None
) -> None:
    """The CEL twins of ``allows_traffic`` (policyAllowsTraffic) and ``with_exclusion`` (onlyExclusionAdded): the
    exclusion, written as the responder writes it, is admitted exactly on a policy the responder judges to allow
    traffic, and refused there for nothing else."""
    for selector in _SELECTORS:
        spec: dict[str, Any] = {"podSelector": selector_json(selector)}
        for key, value in (("policyTypes", types), ("ingress", ingress), ("egress", egress)):
            if value is not None:
                spec[key] = value
        old = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": spec,
        }
        new = {**old, "spec": {**spec, "podSelector": selector_json(with_exclusion(selector))}}
        request = admission_request("UPDATE", POLICIES, namespace="shop", name="p")
        decision = guard.review(request, new, old)
        assert decision.allowed == allows_traffic(view(old)), (spec, decision.refusals)
        assert all("allows traffic" in r for r in decision.refusals), decision.refusals


def test_a_module_level_table_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """What release and status recognise is the table as it stands: the tests of older shapes rely on it."""
    older = DenyAllShape(
        version=0,
        written_by="test",
        name="rsr-old",
        selects=dict(CURRENT.selects),
        policy_types=("Ingress", "Egress"),
        labels={},
    )
    body = older.body()
    assert known_shape(view(body)) is None
    monkeypatch.setattr(shape, "SHAPES", (CURRENT, older))
    assert known_shape(view(body)) is older and not is_deny_all(view(body))
