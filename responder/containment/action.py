"""What an action is: its typed parameters, everything it declares about itself, and the entry point the runner calls.

An action declares, on its class, everything that is true of it, so that nothing else has to name it: the runner,
the planner, the record, the status word, the next steps and the write-back ask these declarations, never an
action's name; the RBAC rules and admission-guard clauses it relies on are declared here too, and tests generated
from the registry (``tests/unit/test_action_declarations.py``) check that the reviewed manifests, the policy schema,
the built-in plans and the README's action table agree with them, naming the action and the missing piece.

``destructive`` used to mean four things at once; each reader now asks the one it means:

- ``isolating``: cuts the pod off; its writes go out first, and everything else waits for them.
- ``read_only``: only reads (evidence); runs alongside containment, joined at its place in the plan.
- ``waits_for_scc``: writes (or reads) what a refuted message's rollback could not take back exactly: held until
  SCC vouches for the message.
- ``needs_evidence_first``: what it ends is evidence; capture runs ahead of it (unless the policy opts out).
- ``budgeted``: takes a slot of the blast-radius budget (``ctx.charge_budget``) once its own guards passed.
- ``ends_pod``: when it succeeds the pod is gone (status word, INACTIVE, "destructive" in the plan).
- ``replaced_by_controller``: what it ends, the pod's controller replaces (the next steps: "confirm the replacement").
- ``contains``: its success counts as containing the pod (``contained_ms``, the outcome's reasons).
- ``quarantines``: puts the quarantine label on the pod; the pod's identity is quarantined right after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from responder.containment.context import ActionContext
from responder.containment.results import ActionResult

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


class ActionParams(BaseModel):
    """Base of every action's typed parameters; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True, slots=True)
class Rule:
    """One RBAC rule an action relies on: ``verbs`` on ``resources`` of API ``group``, granted by ``manifest`` (a
    file in deploy/kubernetes/, which Terraform templates: the reviewed artifact, checked against this)."""

    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    group: str = ""
    manifest: str = "rbac.yaml"

    def writes(self) -> bool:
        """Whether the rule lets the identity change something (then the admission guard must judge it too)."""
        return bool(WRITE_VERBS & set(self.verbs)) or any("/exec" in r for r in self.resources)

    def __str__(self) -> str:
        return f"{', '.join(self.resources)}: {', '.join(self.verbs)}"


class Traits:
    """What an action is, declared on its class. An action declares only what is true of it: by default it writes
    nothing a refuted message's rollback cannot take back exactly, runs in plan order, ends nothing, and needs no
    right (see the module docstring for what each trait means and who reads it)."""

    isolating: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    waits_for_scc: ClassVar[bool] = False
    needs_evidence_first: ClassVar[bool] = False
    budgeted: ClassVar[bool] = False
    ends_pod: ClassVar[bool] = False
    replaced_by_controller: ClassVar[bool] = False
    contains: ClassVar[bool] = False
    quarantines: ClassVar[bool] = False
    # What the record says it did not do while SCC had not vouched for the message.
    held_means: ClassVar[str] = ""
    # The one word for the workload once it took effect (the ``rsr_status`` mark, the report's routing attribute);
    # None: it does not change what happened to the workload.
    status_word: ClassVar[str | None] = None
    # How ``python -m responder release`` undoes it (the README's action table shows it).
    released_by: ClassVar[str] = ""
    rbac: ClassVar[tuple[Rule, ...]] = ()
    # The admission guard's variables (deploy/kubernetes/admission-guard.yaml) its writes are judged by; one of them
    # selects each resource it writes, and that one is on the guard's allow-list of what the responder writes.
    guard: ClassVar[tuple[str, ...]] = ()


class Action(Protocol):
    """An action module's entry point: its name, its declarations (:class:`Traits`), its parameters and ``run``."""

    name: ClassVar[str]
    isolating: ClassVar[bool]
    read_only: ClassVar[bool]
    waits_for_scc: ClassVar[bool]
    needs_evidence_first: ClassVar[bool]
    budgeted: ClassVar[bool]
    ends_pod: ClassVar[bool]
    replaced_by_controller: ClassVar[bool]
    contains: ClassVar[bool]
    quarantines: ClassVar[bool]
    held_means: ClassVar[str]
    status_word: ClassVar[str | None]
    released_by: ClassVar[str]
    rbac: ClassVar[tuple[Rule, ...]]
    guard: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[ActionParams]]

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult: ...
