"""detach: take an isolated pod out of its ReplicaSet, so a clean replacement starts and Services drop it.

Permissions: ``pods: patch``. Not a policy action of its own: it is the second half of ``isolate`` with
``detach: true``, run by the runner once SCC has vouched for the finding.

Removing a pod's workload labels is not fully reversible: its controller starts a replacement at once, and putting
the labels back would have the controller adopt the pod again and scale one pod away, maybe the clean one. So unlike
the quarantine label (which a refuted message's rollback takes back exactly), detach waits for a verified finding.
"""

from __future__ import annotations

from typing import ClassVar

from responder.containment.base import (
    QUARANTINE_LABEL,
    ActionContext,
    ActionParams,
    ActionResult,
    Status,
    pod_gone,
    result,
)
from responder.containment.isolate import IsolateAction, _detach_record
from responder.containment.label import quarantine_pod
from responder.errors import Conflict, NotFound


class DetachParams(ActionParams):
    """No parameters: which labels go is decided from the pod and its controller."""


class DetachAction:
    """Remove the workload labels of a quarantined ReplicaSet pod (recorded on it, for whoever re-attaches it)."""

    name: ClassVar[str] = "detach"
    isolating: ClassVar[bool] = False
    verified_first: ClassVar[bool] = True
    read_only: ClassVar[bool] = False
    destructive: ClassVar[bool] = False
    Params: ClassVar[type[ActionParams]] = DetachParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Detach the pod if its controller can replace it; ``skipped`` with the reason otherwise."""
        remove, notes = IsolateAction._detach_plan(ctx)
        if not remove:
            return result(self.name, Status.SKIPPED, notes[0] if notes else "nothing to detach", ctx)
        if not ctx.dry_run and ctx.pod.labels.get(QUARANTINE_LABEL) != "true":
            # A pod that is not isolated must keep its Services and its controller: detaching it would only hand the
            # attacker a pod nobody manages.
            return result(self.name, Status.SKIPPED, "the pod is not quarantined: not detached", ctx)
        what = f"remove {', '.join(remove)} from pod {ctx.pod.name}; {notes[0]}"
        if ctx.dry_run:
            return result(self.name, Status.SKIPPED, what, ctx, [what])
        try:
            quarantine_pod(ctx, remove, _detach_record(remove, ctx))
        except (NotFound, Conflict) as exc:
            return pod_gone(self.name, ctx, exc)
        done = f"detached from its ReplicaSet ({', '.join(remove)} removed); {notes[0]}"
        return result(self.name, Status.SUCCEEDED, done, ctx, [done])
