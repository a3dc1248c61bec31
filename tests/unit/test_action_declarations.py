"""An action declares everything that is true of it, in its module; the reviewed artifacts must agree.

Tests generated from the registry: for every action, its RBAC rules are granted by the manifests Terraform templates,
its guard clauses exist in the admission guard and admit its writes, the policy schema takes exactly its parameters,
and the README's table lists its parameters, its rights and how release undoes it. A missing piece fails the test
named after the action and the piece (``tests/support/action_agreement.py`` says what each check reads).

The throwaway-action test proves the promise of docs/architecture.md: adding an action is its module and its
registry line, and nothing else except what these tests then ask for, by name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from responder.containment import registry
from tests.support import action_agreement as agreement

ROOT = Path(__file__).resolve().parents[2]
EVERY = sorted(registry.every())
CHECKS = {
    "traits": agreement.trait_problems,
    "rbac": lambda a: agreement.rbac_problems(a, ROOT),
    "guard": lambda a: agreement.guard_problems(a, ROOT),
    "policy_schema": agreement.schema_problems,
    "readme": lambda a: agreement.readme_problems(a, ROOT),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("name", EVERY)
def test_the_artifacts_agree_with_what_the_action_declares(name: str, check: str) -> None:
    assert CHECKS[check](registry.every()[name]) == []


def test_every_write_the_manifests_grant_is_declared_by_an_action() -> None:
    assert agreement.unclaimed_grants(ROOT) == []


def test_the_built_in_plans_name_registered_actions_in_order() -> None:
    assert agreement.builtin_problems() == []


def test_a_contradicting_declaration_is_named() -> None:
    """The checks find what they are for: an action that ends the pod but claims nothing, with a right nobody grants."""
    from responder.containment.action import Rule
    from responder.containment.delete import DeleteAction

    class Careless(DeleteAction):
        name = "careless"
        contains = False
        rbac = (Rule(("nodes",), ("patch",)),)
        guard = ("isNode",)

    problems = agreement.action_problems(Careless(), ROOT)  # type: ignore[arg-type]
    assert "careless: ends the pod but does not count as containing it" in problems
    assert any(p.startswith("careless: deploy/kubernetes/rbac.yaml does not grant core/nodes: patch") for p in problems)
    assert any(p.startswith("careless: admission-guard.yaml has no variable isNode") for p in problems)


# ------------------------------------------------------------------------------ the throwaway action: cordon
CORDON = '''
"""cordon: a throwaway action (tests/unit/test_action_declarations.py), budgeted, that leaves the pod where it is.

Permissions: ``nodes: patch``. Example (policy): ``- action: cordon``.
"""

from __future__ import annotations

from typing import ClassVar

from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.results import ActionResult, Status, result


class CordonParams(ActionParams):
    """No parameters."""


class CordonAction(Traits):
    """Mark the pod's node unschedulable (here: say so; the port has no node write, a real cordon would add one)."""

    name: ClassVar[str] = "cordon"
    waits_for_scc: ClassVar[bool] = True
    budgeted: ClassVar[bool] = True
    held_means: ClassVar[str] = "node not cordoned"
    status_word: ClassVar[str | None] = "cordoned"
    released_by: ClassVar[str] = "not undone by release: uncordon the node by hand"
    rbac: ClassVar[tuple[Rule, ...]] = (Rule(("nodes",), ("patch",)),)
    guard: ClassVar[tuple[str, ...]] = ("isNode",)
    Params: ClassVar[type[ActionParams]] = CordonParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Cordon the pod's node, once the budget allows it."""
        what = f"cordon node {ctx.pod.node_name}"
        if ctx.dry_run:
            return result(self.name, Status.SKIPPED, what, ctx, [what])
        if ctx.charge_budget is not None and not ctx.charge_budget().allowed:
            return result(self.name, Status.SKIPPED, "budget spent: node not cordoned", ctx)
        return result(self.name, Status.SUCCEEDED, f"cordoned node {ctx.pod.node_name}", ctx, [what])
'''

# What the tests then ask for, added to the copy only after they asked for it.
RBAC_RULE = """  - apiGroups: [""]
    resources: ["nodes"]
    verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding"""
GUARD_VARIABLE = """    - name: isNode
      expression: "request.resource.group == '' && request.resource.resource == 'nodes'"
    - name: isAccessReview"""
README_ROW = "| `cordon` | – | nodes: patch | not undone by release: uncordon the node by hand |\n"

# Run in the copy: the agreement checks, then one finding end to end through a policy that names cordon.
SCRIPT = r"""
import json, sys
from pathlib import Path
from tests.support import action_agreement as agreement
root = Path.cwd()
out = {"problems": agreement.all_problems(root)}
if sys.argv[1] == "run":
    from responder.config import Settings
    from responder.containment.budget import LEASE_NAME
    from responder.intake.envelope import Delivery
    from responder.policy.rules import PolicyEngine, parse_policy
    from responder.report.writeback import status_word
    from responder.service import Dependencies, Responder
    from tests.notifications import notification
    from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube

    doc = notification(namespace="shop", pod="web-1", container="api")
    kube = FakeKube()
    kube.add_pod("shop", "web-1", {"app": "web"})
    findings = FakeFindings()
    findings.add_from(doc)
    policy = parse_policy("rules:\n  - name: all\n    actions: [{action: cordon}, {action: isolate}]\n")
    settings = Settings(mode="enforce", netpol_enforcement="established")  # Dataplane V2: the shell is cut
    deps = Dependencies(settings=settings, policy=PolicyEngine(policy, settings), connector=FakeConnector(kube),
                        findings_api=findings)
    outcome = Responder(deps).respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    actions = outcome.record.actions
    out |= {
        "steps": [s.action for s in outcome.plan.steps],
        "actions": {a.action: a.status.value for a in actions},
        "cordon_only": status_word([a for a in actions if a.action == "cordon"]),
        "status": status_word(actions),
        "budget_charged": any(name == LEASE_NAME for _, name in kube.leases),
        "outcome": outcome.record.outcome,
    }
print(json.dumps(out))
"""


def _run(copy: Path, what: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, what],
        cwd=copy,
        env={"PYTHONPATH": f"{copy}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_throwaway_action_is_its_module_and_its_registry_line(tmp_path: Path) -> None:
    """Add ``cordon`` to a copy of the repository: its module and its registry line. The checks then name exactly
    the three pieces a reviewer must write (an RBAC rule, a guard clause, a README row) and nothing else; with those,
    a policy that names it plans, runs (budgeted, verified first), records and words it, with no other file touched."""
    copy = tmp_path / "repo"
    for part in ("responder", "deploy"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("README.md", "policy.yaml"):
        shutil.copy(ROOT / part, copy / part)
    (copy / "responder" / "containment" / "cordon.py").write_text(textwrap.dedent(CORDON).lstrip())
    reg = copy / "responder" / "containment" / "registry.py"
    text = reg.read_text()
    text = text.replace(
        "from responder.containment.delete import DeleteAction\n",
        "from responder.containment.cordon import CordonAction\nfrom responder.containment.delete import DeleteAction\n",
    )
    text = text.replace("DeleteAction())", "DeleteAction(), CordonAction())")
    reg.write_text(text)

    asked = _run(copy, "check")["problems"]
    assert asked == [
        "cordon: deploy/kubernetes/rbac.yaml does not grant core/nodes: patch (declared by cordon: nodes: patch)",
        "cordon: admission-guard.yaml has no variable isNode (declared in cordon's guard)",
        "cordon: writes core/nodes but declares no guard clause that selects it (a variable of admission-guard.yaml "
        "naming 'nodes')",
        "cordon: README.md's action table has no row `cordon` (parameters | permissions | release)",
    ]

    rbac = copy / "deploy" / "kubernetes" / "rbac.yaml"
    rbac.write_text(
        rbac.read_text().replace(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding", RBAC_RULE, 1
        )
    )
    guard = copy / "deploy" / "kubernetes" / "admission-guard.yaml"
    text = guard.read_text().replace("    - name: isAccessReview", GUARD_VARIABLE, 1)
    guard.write_text(text.replace("variables.isLease ||\n", "variables.isLease || variables.isNode ||\n", 1))
    readme = copy / "README.md"
    text = readme.read_text()
    at = text.index("| `delete` |")
    at = text.index("\n", at) + 1
    readme.write_text(text[:at] + README_ROW + text[at:])

    ran = _run(copy, "run")
    assert ran["problems"] == []
    assert ran["steps"] == ["isolate", "cordon"]  # isolation first; cordon after, held until SCC vouched
    assert ran["actions"] == {"isolate": "succeeded", "identity": "succeeded", "cordon": "succeeded"}
    assert ran["cordon_only"] == "cordoned" and ran["status"] == "isolated"
    assert ran["budget_charged"] is True  # budgeted: it took a slot, though it ends nothing
    assert ran["outcome"] == "done"
