"""label: mark the pod as quarantined and record the finding on it.

Permissions: ``pods: patch``. Example (policy): ``- action: label``.
The quarantine label is what the deny-all NetworkPolicy selects; the annotations tell whoever finds the pod later why
it was touched. The patch carries the pod's UID as a precondition, so a same-named replacement is never labelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from responder.containment.base import (
    ACTIONS_ANNOTATION,
    FINDING_ANNOTATION,
    QUARANTINE_LABEL,
    ActionContext,
    ActionParams,
    ActionResult,
    Status,
    pod_gone,
    result,
)
from responder.errors import Conflict, NotFound


class LabelParams(ActionParams):
    """No parameters: the keys are fixed so that every instance and every policy agree on them."""


def quarantine_pod(
    ctx: ActionContext, remove_labels: Iterable[str] = (), annotations: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """One pod patch: quarantine label, the record annotations, and optionally labels removed (detach).

    Shared by ``label`` and ``isolate`` so the pod is written once per finding, whichever runs first; a pod that
    already carries the label and this finding's record is left alone. Returns (changed, what).
    """
    pod = ctx.pod
    removed = [k for k in remove_labels if k in pod.labels and k != QUARANTINE_LABEL]
    labelled = pod.labels.get(QUARANTINE_LABEL) == "true"
    recorded = pod.annotations.get(FINDING_ANNOTATION) == (ctx.finding.name or "")
    if labelled and recorded and not removed and not annotations:
        return False, "pod already carries the quarantine label and this finding's record"

    def describe(done: bool) -> str:
        if labelled:
            return f"{'recorded' if done else 'record'} the finding on pod {pod.name} (already quarantined)"
        return f"{'labelled' if done else 'label'} pod {pod.name} {QUARANTINE_LABEL}=true"

    if ctx.dry_run:
        return True, describe(done=False)
    new_annotations: dict[str, str | None] = {**ctx.record(), ACTIONS_ANNOTATION: ",".join(ctx.planned) or "label"}
    new_annotations.update(annotations or {})
    ctx.pod = ctx.kube.patch_pod_metadata(
        pod.namespace, pod.name, pod.uid, {QUARANTINE_LABEL: "true", **dict.fromkeys(removed)}, new_annotations
    )
    return True, describe(done=True)


class LabelAction:
    """Quarantine label plus annotations recording the finding and the action."""

    name: ClassVar[str] = "label"
    isolating: ClassVar[bool] = False
    verified_first: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    destructive: ClassVar[bool] = False
    needs_capture_before: ClassVar[bool] = False
    held_means: ClassVar[str] = "not labelled"
    Params: ClassVar[type[ActionParams]] = LabelParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Label and annotate the pod (idempotent)."""
        try:
            changed, reason = quarantine_pod(ctx)
        except (NotFound, Conflict) as exc:
            return pod_gone(self.name, ctx, exc)
        if not changed:
            return result(self.name, Status.SKIPPED, reason, ctx)
        status = Status.SKIPPED if ctx.dry_run else Status.SUCCEEDED
        return result(self.name, status, reason, ctx, [reason])
