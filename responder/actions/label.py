"""label: mark the pod as quarantined and record the finding on it.

Permissions: ``pods: patch``. Example (policy): ``- action: label``.
The quarantine label is what the deny-all NetworkPolicy selects; the annotations tell whoever finds the pod later why
it was touched. The patch carries the pod's UID as a precondition, so a same-named replacement is never labelled.
"""

from __future__ import annotations

from typing import ClassVar

from responder.actions.base import (
    ACTIONS_ANNOTATION,
    QUARANTINE_LABEL,
    ActionContext,
    ActionParams,
    ActionResult,
    Status,
    result,
)
from responder.errors import Conflict, NotFound


class LabelParams(ActionParams):
    """No parameters: the keys are fixed so that every instance and every policy agree on them."""


def _append_action(existing: str | None, action: str) -> str:
    names = [a for a in (existing or "").split(",") if a]
    return ",".join(dict.fromkeys([*names, action]))


def apply_quarantine_label(ctx: ActionContext, action: str) -> tuple[bool, str]:
    """Ensure the quarantine label and the record annotations; returns (changed, reason). Shared with isolate."""
    pod = ctx.pod
    actions_value = _append_action(pod.annotations.get(ACTIONS_ANNOTATION), action)
    if pod.labels.get(QUARANTINE_LABEL) == "true" and pod.annotations.get(ACTIONS_ANNOTATION) == actions_value:
        return False, "pod already carries the quarantine label"
    already = pod.labels.get(QUARANTINE_LABEL) == "true"
    what = (
        f"record the finding on pod {pod.name} (already quarantined)"
        if already
        else (f"label pod {pod.name} {QUARANTINE_LABEL}=true")
    )
    if ctx.dry_run:
        return True, what
    annotations = {**ctx.record(), ACTIONS_ANNOTATION: actions_value}
    ctx.pod = ctx.kube.patch_pod_metadata(pod.namespace, pod.name, pod.uid, {QUARANTINE_LABEL: "true"}, annotations)
    return True, f"recorded the finding on pod {pod.name} (already quarantined)" if already else (
        f"labelled pod {pod.name} {QUARANTINE_LABEL}=true"
    )


class LabelAction:
    """Quarantine label plus annotations recording the finding and the action."""

    name: ClassVar[str] = "label"
    destructive: ClassVar[bool] = False
    Params: ClassVar[type[ActionParams]] = LabelParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Label and annotate the pod (idempotent)."""
        try:
            changed, reason = apply_quarantine_label(ctx, self.name)
        except NotFound:
            return result(self.name, Status.SKIPPED, "pod no longer exists", ctx)
        except Conflict:
            return result(self.name, Status.SKIPPED, "pod was replaced (UID changed); the new pod is not touched", ctx)
        if not changed:
            return result(self.name, Status.SKIPPED, reason, ctx)
        status = Status.SKIPPED if ctx.dry_run else Status.SUCCEEDED
        return result(self.name, status, reason, ctx, [reason])
