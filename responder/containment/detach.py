"""detach: take an isolated pod out of its ReplicaSet, so a clean replacement starts and Services drop it.

Permissions: ``pods: patch``. Not a policy action of its own: it is the second half of ``isolate`` with
``detach: true``, run by the runner once SCC has vouched for the finding.

Removing a pod's workload labels is not fully reversible: its controller starts a replacement at once, and putting
the labels back would have the controller adopt the pod again and scale one pod away, maybe the clean one. So unlike
the quarantine label (which a refuted message's rollback takes back exactly), detach waits for a verified finding.
"""

from __future__ import annotations

import json
from typing import ClassVar

from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.enforcement import CUT, established_connections
from responder.containment.keys import ORIGINAL_LABELS_ANNOTATION, QUARANTINE_LABEL
from responder.containment.results import ActionResult, Status, pod_gone, result
from responder.errors import Conflict, NotFound


def detach_plan(ctx: ActionContext) -> tuple[list[str], list[str]]:
    """Which labels to remove so the ReplicaSet lets go of the pod (and Services stop routing to it).

    Never where isolation cannot cut the pod's established connections: the controller would start a
    replacement while the detached pod ran on, unmanaged, with the attacker's shell still connected."""
    session = established_connections(ctx.netpol(), ctx.pod.host_network)
    if session != CUT:
        return [], [f"not detached: isolation leaves established connections {session} ({ctx.netpol().dataplane})"]
    controller = ctx.pod.controller
    if controller is None:
        return [], ["not detached: the pod has no controller to replace it"]
    if controller.kind != "ReplicaSet":
        # A StatefulSet would try to recreate the same name; a DaemonSet/Job has its own identity rules.
        return [], [f"not detached: {controller.kind} pods keep their identity; delete instead to replace"]
    workload_labels = sorted(k for k in ctx.pod.labels if k != QUARANTINE_LABEL)
    if not workload_labels:
        return [], ["already detached"]
    return workload_labels, [f"detached from ReplicaSet {controller.name}: it creates a clean replacement"]


def detach_record(remove: list[str], ctx: ActionContext) -> dict[str, str]:
    """The original-labels annotation: what a detach removes, on the pod, for whoever re-attaches it (and the
    admission guard, which lets labels go only when the same write records them)."""
    original = {k: ctx.pod.labels[k] for k in remove if k in ctx.pod.labels}
    return {ORIGINAL_LABELS_ANNOTATION: json.dumps(original, sort_keys=True)}


_ATTEMPTS = 3  # fresh reads after a lost race before the detach is left to a redelivery


class DetachParams(ActionParams):
    """No parameters: which labels go is decided from the pod and its controller."""


class DetachAction(Traits):
    """Remove the workload labels of a quarantined ReplicaSet pod (recorded on it, for whoever re-attaches it)."""

    name: ClassVar[str] = "detach"
    waits_for_scc: ClassVar[bool] = True
    held_means: ClassVar[str] = "not detached"
    released_by: ClassVar[str] = (
        "not undone: its controller replaced it, and re-adding its labels would have the pod adopted again"
    )
    rbac: ClassVar[tuple[Rule, ...]] = (Rule(("pods",), ("patch",)),)
    guard: ClassVar[tuple[str, ...]] = ("isPod", "removedLabels", "detachRecordItems", "controlledByReplicaSet")
    Params: ClassVar[type[ActionParams]] = DetachParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Detach the pod if its controller can replace it; ``skipped`` with the reason otherwise."""
        remove, notes = detach_plan(ctx)
        if not remove:
            return result(self.name, Status.SKIPPED, notes[0] if notes else "nothing to detach", ctx)
        if not ctx.dry_run and ctx.pod.labels.get(QUARANTINE_LABEL) != "true":
            # A pod that is not isolated must keep its Services and its controller: detaching it would only hand the
            # attacker a pod nobody manages.
            return result(self.name, Status.SKIPPED, "the pod is not quarantined: not detached", ctx)
        what = f"remove {', '.join(remove)} from pod {ctx.pod.name}; {notes[0]}"
        if ctx.dry_run:
            return result(self.name, Status.SKIPPED, what, ctx, [what])
        for attempt in range(_ATTEMPTS):
            try:
                ctx.quarantine(remove, detach_record(remove, ctx))
                break
            except NotFound as exc:
                return pod_gone(self.name, ctx, exc)
            except Conflict as exc:
                # The detach is conditional on the resourceVersion it was judged on: read the pod again and judge it
                # afresh (a kubelet status update changes nothing that matters; a replacement ends the step).
                fresh = ctx.kube.get_pod(ctx.pod.namespace, ctx.pod.name)
                if fresh.uid != ctx.pod.uid:
                    return pod_gone(self.name, ctx, exc)
                if attempt == _ATTEMPTS - 1:
                    raise  # kept changing: a failure that heals, retried on redelivery
                ctx.pod = fresh
                remove, notes = detach_plan(ctx)
                if not remove:
                    return result(self.name, Status.SKIPPED, notes[0] if notes else "nothing to detach", ctx)
        done = f"detached from its ReplicaSet ({', '.join(remove)} removed); {notes[0]}"
        return result(self.name, Status.SUCCEEDED, done, ctx, [done])
