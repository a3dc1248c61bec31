"""label: mark the pod as quarantined and record the finding on it.

Permissions: ``pods: patch``. Example (policy): ``- action: label``.
The quarantine label is what the deny-all NetworkPolicy selects; the annotations tell whoever finds the pod later why
it was touched. The patch carries the pod's UID as a precondition, so a same-named replacement is never labelled.
"""

from __future__ import annotations

from typing import ClassVar

from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.results import ActionResult, Status, pod_gone, result
from responder.errors import Conflict, NotFound


class LabelParams(ActionParams):
    """No parameters: the keys are fixed so that every instance and every policy agree on them."""


class LabelAction(Traits):
    """Quarantine label plus annotations recording the finding and the action."""

    name: ClassVar[str] = "label"
    quarantines: ClassVar[bool] = True
    held_means: ClassVar[str] = "not labelled"
    released_by: ClassVar[str] = "the quarantine label and the record annotations are removed from the pod"
    rbac: ClassVar[tuple[Rule, ...]] = (Rule(("pods",), ("patch",)),)
    guard: ClassVar[tuple[str, ...]] = ("isPod", "onlyResponderAnnotationsChanged")
    Params: ClassVar[type[ActionParams]] = LabelParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Label and annotate the pod (idempotent)."""
        try:
            changed, reason = ctx.quarantine()
        except (NotFound, Conflict) as exc:
            return pod_gone(self.name, ctx, exc)
        if not changed:
            return result(self.name, Status.SKIPPED, reason, ctx)
        status = Status.SKIPPED if ctx.dry_run else Status.SUCCEEDED
        return result(self.name, status, reason, ctx, [reason])
