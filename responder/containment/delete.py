"""delete: remove the compromised pod so its controller replaces it with a clean one.

Permissions: ``pods: get, delete``; ``replicasets, deployments, statefulsets, daemonsets: get`` (guards);
``leases: get, create, update`` in the budget namespace.
Example (policy): ``- action: delete\n  grace_period_s: 1\n  allow_standalone: false``.

The delete carries the pod's UID as a precondition, so a same-named replacement (StatefulSet) is never hit. Guards
return ``skipped`` with the reason; each can be turned off in the policy. Only a delete that passed its guards takes a
slot of the blast-radius budget (a refused delete spends nothing); a budget that cannot be read refuses the delete.
Evidence capture runs before this action (the planner puts ``capture`` ahead of every destructive action unless the
policy sets ``capture_before_destructive: false``).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.results import ActionResult, Status, pod_gone, result
from responder.errors import Conflict, NotFound


class DeleteParams(ActionParams):
    """Guards and grace period. Grace 0 is refused: a forced delete can leave the container running unseen."""

    grace_period_s: int = Field(default=1, ge=1, le=300)
    allow_standalone: bool = False
    allow_statefulset: bool = False
    allow_daemonset: bool = False
    min_ready_replicas: int | None = Field(default=None, ge=0)


class DeleteAction(Traits):
    """Delete with UID precondition, after guards."""

    name: ClassVar[str] = "delete"
    waits_for_scc: ClassVar[bool] = True
    needs_evidence_first: ClassVar[bool] = True
    budgeted: ClassVar[bool] = True
    ends_pod: ClassVar[bool] = True
    replaced_by_controller: ClassVar[bool] = True
    contains: ClassVar[bool] = True
    held_means: ClassVar[str] = "no destructive action"
    status_word: ClassVar[str | None] = "deleted"
    released_by: ClassVar[str] = "nothing to undo: the pod is gone (``release --delete`` is this, run by hand)"
    rbac: ClassVar[tuple[Rule, ...]] = (
        Rule(("pods",), ("get", "delete")),
        Rule(("replicasets", "deployments", "statefulsets", "daemonsets"), ("get",), group="apps"),  # the guards
        Rule(("leases",), ("get", "create", "update"), group="coordination.k8s.io"),  # the budget
    )
    guard: ClassVar[tuple[str, ...]] = ("isPod", "isLease", "leaseEntries", "oldLeaseEntries")
    Params: ClassVar[type[ActionParams]] = DeleteParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Delete the pod unless a guard says otherwise."""
        assert isinstance(params, DeleteParams)
        pod = ctx.pod
        if pod.deleting:
            return result(self.name, Status.SKIPPED, "pod is already being deleted", ctx)
        guard = self._guard(ctx, params)
        if guard:
            return result(self.name, Status.SKIPPED, guard, ctx)
        what = f"delete pod {pod.namespace}/{pod.name} (uid {pod.uid}, grace {params.grace_period_s}s)"
        if ctx.dry_run:
            return result(self.name, Status.SKIPPED, what, ctx, [what])
        if ctx.charge_budget is not None:
            decision = ctx.charge_budget()  # BudgetUnavailable propagates: the delete fails, closed
            if not decision.allowed:
                return result(self.name, Status.SKIPPED, f"{decision.reason}: pod not deleted", ctx)
        try:
            ctx.kube.delete_pod(pod.namespace, pod.name, pod.uid, params.grace_period_s)
        except (NotFound, Conflict) as exc:
            return pod_gone(self.name, ctx, exc)
        controller = pod.controller
        replaced = f"; {controller.kind} {controller.name} will replace it" if controller else ""
        # A pod-bound token is checked against its pod on every request: it dies with the pod object, which goes
        # once the grace period ends (9.3 s after the responder finished with a 1 s grace, on the local node).
        grace = params.grace_period_s
        token = f"; its service-account token stops authenticating once the pod object is gone (grace {grace}s)"
        return result(self.name, Status.SUCCEEDED, f"deleted pod {pod.name}{replaced}{token}", ctx, [what])

    @staticmethod
    def _guard(ctx: ActionContext, params: DeleteParams) -> str | None:
        controller = ctx.pod.controller
        if controller is None:
            if not params.allow_standalone:
                return "standalone pod: nothing would replace it (allow_standalone: true to delete anyway)"
            return None
        if controller.kind == "StatefulSet" and not params.allow_statefulset:
            return "StatefulSet pod: its replacement reuses the same name and volumes (allow_statefulset to override)"
        if controller.kind == "DaemonSet" and not params.allow_daemonset:
            return "DaemonSet pod: its replacement lands on the same node (allow_daemonset to override)"
        if params.min_ready_replicas is not None:
            try:
                workload = ctx.kube.get_workload(ctx.pod.namespace, controller)
            except NotFound:
                return f"controller {controller.kind} {controller.name} not found; cannot check healthy replicas"
            ready = workload.ready_replicas or 0
            if ready - 1 < params.min_ready_replicas:
                return (
                    f"{controller.kind} {controller.name} has {ready} ready replica(s); deleting would leave fewer "
                    f"than min_ready_replicas={params.min_ready_replicas}"
                )
        return None
