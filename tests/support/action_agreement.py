"""What the reviewed artifacts must say for each action, checked against what the action declares in its module.

The YAML manifests (``deploy/kubernetes/rbac*.yaml``, ``admission-guard.yaml``) stay the reviewed artifacts that
Terraform templates, and the README's action table is what operators read; none of them is generated. Instead every
action declares the RBAC rules and guard clauses it relies on, its parameters and how release undoes it
(``responder/containment/action.py``), and these checks compare the two. Each problem names the action and the missing
piece, so adding an action without its RBAC verb, its guard clause or its README row fails saying which.

Functions take the repository ``root`` (and read the registry of whatever ``responder`` package is imported), so the
throwaway-action test can run them on a copy of the repository with one more action in it.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from responder.containment import registry
from responder.containment.action import Action, Rule

IDENTITY = "responder@example.iam.gserviceaccount.com"
RBAC_MANIFESTS = ("rbac.yaml", "rbac-capture.yaml")
GUARD = "admission-guard.yaml"
# What the first validation of the guard says: the allow-list of what the responder's identity writes at all.
ALLOW_LIST_MESSAGE = "the responder writes only"


def _documents(root: Path, manifest: str) -> list[dict[str, Any]]:
    text = (root / "deploy" / "kubernetes" / manifest).read_text().replace("${responder_identity}", IDENTITY)
    return [d for d in yaml.safe_load_all(text) if d]


def granted(root: Path, manifest: str) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) a Role or ClusterRole in ``manifest`` grants."""
    out: set[tuple[str, str, str]] = set()
    for doc in _documents(root, manifest):
        if doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        for rule in doc.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    out.update((group, resource, verb) for verb in rule.get("verbs") or [])
    return out


def rbac_problems(action: Action, root: Path) -> list[str]:
    """The declared rules the manifests do not grant."""
    problems = []
    for rule in action.rbac:
        have = granted(root, rule.manifest)
        missing = [
            f"{rule.group or 'core'}/{resource}: {verb}"
            for resource in rule.resources
            for verb in rule.verbs
            if (rule.group, resource, verb) not in have
        ]
        if missing:
            problems.append(
                f"{action.name}: deploy/kubernetes/{rule.manifest} does not grant {', '.join(missing)} "
                f"(declared by {action.name}: {rule})"
            )
    return problems


def unclaimed_grants(root: Path) -> list[str]:
    """Writes the manifests grant that no action declares: a right left behind, or one an action forgot to declare."""
    declared = {
        (rule.group, resource, verb, rule.manifest)
        for action in registry.every().values()
        for rule in action.rbac
        for resource in rule.resources
        for verb in rule.verbs
    }
    problems = []
    for manifest in RBAC_MANIFESTS:
        for group, resource, verb in sorted(granted(root, manifest)):
            writes = Rule((resource,), (verb,), group).writes()
            if writes and (group, resource, verb, manifest) not in declared:
                problems.append(
                    f"deploy/kubernetes/{manifest} grants {group or 'core'}/{resource}: {verb}, which no action declares"
                )
    return problems


def guard_spec(root: Path) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy's spec."""
    doc = next(d for d in _documents(root, GUARD) if d.get("kind") == "ValidatingAdmissionPolicy")
    spec: dict[str, Any] = doc["spec"]
    return spec


def _used_variables(spec: dict[str, Any]) -> set[str]:
    """Variables the validations use, directly or through other variables."""
    expressions = {v["name"]: v["expression"] for v in spec.get("variables") or []}
    pending = [v["expression"] for v in spec.get("validations") or []]
    used: set[str] = set()
    while pending:
        for name in re.findall(r"variables\.(\w+)", pending.pop()):
            if name not in used and name in expressions:
                used.add(name)
                pending.append(expressions[name])
    return used


def _names(resource: str) -> str:
    """How the guard's expression names a resource: ``'pods'``, or a subresource's ``'exec'``."""
    return f"'{resource.rsplit('/', 1)[-1]}'"


def guard_problems(action: Action, root: Path) -> list[str]:
    """The declared guard clauses the guard lacks or never applies; a written resource no declared clause selects,
    or one the guard's allow-list does not admit."""
    spec = guard_spec(root)
    expressions = {v["name"]: v["expression"] for v in spec.get("variables") or []}
    used = _used_variables(spec)
    problems = [
        f"{action.name}: {GUARD} has no variable {name} (declared in {action.name}'s guard)"
        for name in action.guard
        if name not in expressions
    ]
    problems += [
        f"{action.name}: {GUARD} defines {name} but no validation uses it (declared in {action.name}'s guard)"
        for name in action.guard
        if name in expressions and name not in used
    ]
    validations = spec.get("validations") or []
    allow_list = validations[0]["expression"] if validations else ""
    if not validations or not str(validations[0].get("message", "")).startswith(ALLOW_LIST_MESSAGE):
        problems.append(f"{GUARD}: the first validation is not the allow-list ({ALLOW_LIST_MESSAGE} ...)")
    for rule in action.rbac:
        if not rule.writes():
            continue
        for resource in rule.resources:
            selecting = [n for n in action.guard if _names(resource) in expressions.get(n, "")]
            if not selecting:
                problems.append(
                    f"{action.name}: writes {rule.group or 'core'}/{resource} but declares no guard clause that "
                    f"selects it (a variable of {GUARD} naming {_names(resource)})"
                )
            elif not any(f"variables.{n}" in allow_list for n in selecting):
                problems.append(
                    f"{action.name}: {GUARD}'s allow-list (its first validation) admits none of "
                    f"{', '.join(selecting)}, so its writes to {resource} are refused"
                )
    return problems


def schema_problems(action: Action) -> list[str]:
    """The policy's JSON Schema accepts the action with exactly its parameters (policy actions only)."""
    from responder.policy.rules import json_schema

    steps = {
        d["properties"]["action"].get("const"): d
        for d in json_schema().get("$defs", {}).values()
        if "action" in d.get("properties", {})
    }
    if action.name not in registry.ACTIONS:
        return [f"{action.name}: a runner-only action is in the policy schema"] if action.name in steps else []
    if action.name not in steps:
        return [f"{action.name}: the policy schema has no step for it"]
    fields = set(steps[action.name]["properties"]) - {"action"}
    if fields != set(action.Params.model_fields):
        return [f"{action.name}: the policy schema's parameters {sorted(fields)} are not its Params"]
    return []


def builtin_problems() -> list[str]:
    """Every ``RESPONDER_ACTION`` built-in plan names registered actions, evidence ahead of what needs it first."""
    from responder.config import ActionName
    from responder.containment.plan import ordered, step
    from responder.policy.rules import _steps_for

    problems = []
    for value in typing.get_args(ActionName):
        for detach in (False, True):
            try:
                params = _steps_for(value, detach)
            except KeyError as exc:
                problems.append(f"RESPONDER_ACTION={value}: {exc}")
                continue
            steps = ordered([step(p, p.action) for p in params], capture_before_destructive=True)  # type: ignore[attr-defined]
            names = [s.action for s in steps]
            first = next((i for i, n in enumerate(names) if registry.traits(n).needs_evidence_first), None)
            if first is not None and registry.EVIDENCE not in names[:first]:
                problems.append(f"RESPONDER_ACTION={value}: {names[first]} is not preceded by {registry.EVIDENCE}")
    return problems


def readme_rows(root: Path) -> dict[str, list[str]]:
    """The README's action table: its cells, by action name."""
    rows: dict[str, list[str]] = {}
    for line in (root / "README.md").read_text().splitlines():
        match = re.match(r"^\| `(\w+)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split(" | ")]
    return rows


def readme_problems(action: Action, root: Path) -> list[str]:
    """The README's row for a policy action: every parameter, every declared rule, how release undoes it."""
    if action.name not in registry.ACTIONS:
        return []
    row = readme_rows(root).get(action.name)
    if row is None or len(row) < 3:
        return [
            f"{action.name}: README.md's action table has no row `{action.name}` (parameters | permissions | release)"
        ]
    params, permissions, release = row[0], row[1], row[2]
    problems = [
        f"{action.name}: README.md's row does not list the parameter `{name}`"
        for name in action.Params.model_fields
        if f"`{name}`" not in params
    ]
    problems += [
        f"{action.name}: README.md's row does not list the permission {rule}"
        for rule in action.rbac
        if str(rule) not in permissions
    ]
    if action.released_by.replace("``", "`") not in release:
        problems.append(f"{action.name}: README.md's row does not say how release undoes it: {action.released_by}")
    return problems


def trait_problems(action: Action) -> list[str]:
    """Declarations that contradict each other, or say nothing where a reader needs something."""
    checks = [
        (action.read_only and not action.waits_for_scc, "reads evidence but does not wait for SCC"),
        (action.needs_evidence_first and not action.waits_for_scc, "needs evidence first but does not wait for SCC"),
        (action.ends_pod and not action.contains, "ends the pod but does not count as containing it"),
        (action.contains and not action.status_word, "counts as containing but declares no status word"),
        (action.waits_for_scc and not action.held_means, "waits for SCC but declares no held_means for the record"),
        (not action.released_by, "does not say how release undoes it (released_by)"),
        (not (inspect.getmodule(action) and inspect.getmodule(action).__doc__), "its module has no docstring"),
        (not action.run.__doc__, "its run has no docstring"),
    ]
    problems = [f"{action.name}: {what}" for bad, what in checks if bad]
    charges = "charge_budget" in inspect.getsource(type(action))
    if charges != action.budgeted:
        says = "charges the budget but is not declared budgeted" if charges else "is budgeted but never charges it"
        problems.append(f"{action.name}: {says}")
    return problems


def action_problems(action: Action, root: Path) -> list[str]:
    """Everything above, for one action."""
    return [
        *trait_problems(action),
        *rbac_problems(action, root),
        *guard_problems(action, root),
        *schema_problems(action),
        *readme_problems(action, root),
    ]


def all_problems(root: Path) -> list[str]:
    """Every action's problems, then the grants nobody declares and the built-in plans."""
    out = [p for action in registry.every().values() for p in action_problems(action, root)]
    return out + unclaimed_grants(root) + builtin_problems()
