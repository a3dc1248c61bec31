"""deploy/kubernetes/admission-guard.yaml as a Kubernetes apiserver compiles and evaluates it.

tests/support/celguard.py builds tests/celguard (k8s.io/apiserver's CEL environment and admission code) with Go,
fetching its modules through the Go module proxy, and runs it: what a 1.30+ apiserver would refuse to create fails
here, and every request the in-process evaluator judges in tests/unit/test_admission_guard.py (the fixtures, the
responder's own writes) is judged again by the apiserver's own code, with the same outcome. Without Go these tests
skip loudly; under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.support import celguard
from tests.support.admission_guard import IDENTITY_MANIFEST, Decision, Guard, manifest_documents
from tests.unit.test_admission_guard import (
    CASES,
    GuardedKube,
    check_fixture,
    fixture_request,
    repair_and_roll_back,
    write_everything,
)


def _policy() -> dict[str, Any]:
    return manifest_documents()[0]


def _kubernetes_review(
    kubernetes_cel: celguard.CelGuard, guard: Guard, requests: list[celguard.Request]
) -> list[Decision]:
    """Decisions by k8s.io/apiserver's code; match constraints (every resource, see the manifest) as in Guard."""
    constrained = [r for r in requests if guard.constrained(r.request)]
    decided = iter(kubernetes_cel.review(_policy(), constrained))
    return [next(decided) if guard.constrained(r.request) else Decision(matched=False) for r in requests]


def _replayed(kube: GuardedKube, kubernetes_cel: celguard.CelGuard) -> list[tuple[str, Decision]]:
    """The writes the in-process evaluator admitted, judged again by k8s.io/apiserver's code: the refused ones."""
    decisions = _kubernetes_review(kubernetes_cel, kube.guard, kube.requests)
    return [(what, d) for (what, _), d in zip(kube.reviewed, decisions, strict=True) if not (d.matched and d.allowed)]


# ---------------------------------------------------------------------------------------------- compiling


def test_every_expression_compiles_in_kubernetes_cel_environment(kubernetes_cel: celguard.CelGuard) -> None:
    """What the apiserver does when the policy is created: each match condition, variable and validation compiled in
    Kubernetes' CEL environment (1.30's, at its default compatibility version), with and without strict cost."""
    assert kubernetes_cel.compile_errors(_policy()) == []


def test_the_identity_guard_compiles_in_kubernetes_cel_environment(kubernetes_cel: celguard.CelGuard) -> None:
    """deploy/kubernetes/identity-guard.yaml (issue 31), with its ConfigMap parameter declared: what the apiserver
    compiles when the policy is created. (How it decides is proven on the apiserver itself:
    tests/integration/test_identity_guard_live.py.)"""
    policy = next(d for d in yaml.safe_load_all(IDENTITY_MANIFEST.read_text()) if d)
    assert kubernetes_cel.compile_errors(policy) == []


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        # A map literal whose values are a string and a list: Kubernetes enables homogeneous aggregate literals.
        ("{'key': 'responder.rsr.dev/quarantine', 'values': ['true']}", "expected type 'string'"),
        ("['ps', 1]", "expected type 'string'"),
        ("'a'.matches('[')", "invalid"),  # regex literals are validated when the policy is created
        ("ip('10.0.0.1').family() == 4", "undeclared reference"),  # 1.30's library, not in its 1.29-compatible set
    ],
)
def test_the_kubernetes_check_refuses_what_the_apiserver_refuses(
    kubernetes_cel: celguard.CelGuard, expression: str, complaint: str
) -> None:
    """The check above can fail: the guard with one more variable that cel-python accepts and the apiserver refuses."""
    policy = _policy()
    policy["spec"]["variables"].append({"name": "extra", "expression": expression})
    errors = kubernetes_cel.compile_errors(policy)
    assert errors and all(e.field == f"spec.variables[{len(policy['spec']['variables']) - 1}] (extra)" for e in errors)
    assert all(complaint in e.detail for e in errors), errors


# ------------------------------------------------------------------------------------------------ the fixtures


def _case_key(case: Mapping[str, Any]) -> str:
    return json.dumps(case, sort_keys=True)


@pytest.fixture(scope="module")
def kubernetes_decisions(kubernetes_cel: celguard.CelGuard, guard: Guard) -> dict[str, Decision]:
    """Every fixture judged by the Go evaluator, in one run."""
    cases = [p.values[0] for p in CASES]
    decisions = _kubernetes_review(kubernetes_cel, guard, [fixture_request(c) for c in cases])
    return {_case_key(c): d for c, d in zip(cases, decisions, strict=True)}


@pytest.mark.parametrize("case", CASES)
def test_fixture_in_kubernetes_cel(kubernetes_decisions: dict[str, Decision], case: Mapping[str, Any]) -> None:
    """The same fixture as tests/unit's test_fixture, judged by k8s.io/apiserver's admission code: same decision,
    same reason."""
    check_fixture(kubernetes_decisions[_case_key(case)], case)


# ------------------------------------------------------------------------ the responder's own writes, replayed


def test_every_write_the_responder_makes_passes_the_guard_in_kubernetes_cel(
    guard: Guard, kubernetes_cel: celguard.CelGuard
) -> None:
    assert _replayed(write_everything(guard), kubernetes_cel) == []


def test_the_rollback_and_the_repair_of_an_impostor_pass_the_guard_in_kubernetes_cel(
    guard: Guard, kubernetes_cel: celguard.CelGuard
) -> None:
    kube, _ = repair_and_roll_back(guard)
    assert _replayed(kube, kubernetes_cel) == []
