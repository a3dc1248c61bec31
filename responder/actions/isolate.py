"""isolate: cut the pod off the network, both directions, and optionally detach it from its controller.

Permissions: ``networkpolicies: get, list, create, patch``; ``pods: patch``.
Example (policy): ``- action: isolate\n  detach: true``.

NetworkPolicies are additive: a deny-all policy does not override another policy that allows traffic to the same pod.
So besides ensuring a deny-all (Ingress + Egress) policy on the quarantine label, every other policy in the namespace
that selects the pod gets a ``NotIn`` term excluding quarantined pods. Only then is the label applied, so the pod
leaves the allowing policies and enters the deny-all one in the same write. Egress-only isolation would leave the
attacker's inbound path open, so both directions are always denied.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from responder.actions.base import (
    DENY_ALL_POLICY,
    MANAGED_BY,
    ORIGINAL_LABELS_ANNOTATION,
    QUARANTINE_LABEL,
    ActionContext,
    ActionParams,
    ActionResult,
    Status,
    result,
)
from responder.actions.label import apply_quarantine_label
from responder.errors import Conflict, NotFound
from responder.ports import LabelSelector, LabelSelectorRequirement, NetworkPolicyView

_EXCLUDE = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))
_CONFLICT_ATTEMPTS = 5


class IsolateParams(ActionParams):
    """``detach``: also remove the workload labels so the ReplicaSet replaces the pod and Services drop it."""

    detach: bool = False


def deny_all_body() -> dict[str, object]:
    """The deny-all policy: selects quarantined pods, allows nothing in either direction."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": DENY_ALL_POLICY, "labels": dict(MANAGED_BY)},
        "spec": {"podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}}, "policyTypes": ["Ingress", "Egress"]},
    }


def _create_deny_all(ctx: ActionContext) -> None:
    with contextlib.suppress(Conflict):  # another instance created it first: the state we want
        ctx.kube.create_network_policy(ctx.target.namespace, deny_all_body())


def _excludes_quarantine(policy: NetworkPolicyView) -> bool:
    return _EXCLUDE in policy.pod_selector.match_expressions


def _with_exclusion(selector: LabelSelector) -> LabelSelector:
    return selector.model_copy(update={"match_expressions": (*selector.match_expressions, _EXCLUDE)})


class IsolateAction:
    """Deny-all NetworkPolicy + exclusion from allowing policies + quarantine label (+ optional detach)."""

    name: ClassVar[str] = "isolate"
    destructive: ClassVar[bool] = False
    Params: ClassVar[type[ActionParams]] = IsolateParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Isolate the pod; report ``failed`` when isolation cannot be effective (the writes are still made)."""
        assert isinstance(params, IsolateParams)
        changes: list[str] = []
        try:
            self._prepare_policies(ctx, changes)
            changed, reason = apply_quarantine_label(ctx, self.name)
            if changed:
                changes.append(reason)
            notes = self._detach(ctx, changes) if params.detach else []
        except NotFound:
            return result(self.name, Status.SKIPPED, "pod no longer exists", ctx, changes)
        except Conflict:
            return result(self.name, Status.SKIPPED, "pod was replaced (UID changed); the new pod is not touched", ctx)

        ineffective = self._ineffective(ctx)
        details: dict[str, Any] = {"policy": DENY_ALL_POLICY, "notes": notes}
        if ineffective:
            return result(
                self.name,
                Status.FAILED,
                f"isolation ineffective: {ineffective}",
                ctx,
                changes,
                ineffective=True,
                **details,
            )
        if not changes:
            return result(self.name, Status.SKIPPED, "pod already isolated", ctx, **details)
        status = Status.SKIPPED if ctx.dry_run else Status.SUCCEEDED
        summary = "; ".join(changes)
        return result(self.name, status, summary if ctx.dry_run else f"isolated: {summary}", ctx, changes, **details)

    @staticmethod
    def _ineffective(ctx: ActionContext) -> str | None:
        if ctx.pod.host_network:
            return "the pod uses hostNetwork, which NetworkPolicy does not apply to"
        if ctx.cluster_info is not None and not ctx.cluster_info.network_policy_enforced:
            return "the cluster does not enforce NetworkPolicy (no Calico add-on, no Dataplane V2)"
        return None

    @staticmethod
    def _prepare_policies(ctx: ActionContext, changes: list[str]) -> None:
        """Ensure the deny-all policy and exclude quarantined pods from every allowing policy that selects the pod.

        Time to containment is the product: the policy list comes from the read started alongside the pod read, and
        the writes (one create, N patches) go out concurrently. A patch that loses a race re-reads and re-judges.
        """
        namespace = ctx.target.namespace
        # Judge selection by the pod's own labels without ours: that is what the allowing policies see today.
        labels = {k: v for k, v in ctx.pod.labels.items() if k != QUARANTINE_LABEL}
        listed = ctx.prefetched_policies()
        for _ in range(_CONFLICT_ATTEMPTS):
            if listed is None:
                listed = ctx.kube.list_network_policies(namespace)
            need_deny_all = all(p.name != DENY_ALL_POLICY for p in listed)
            pending = [
                p
                for p in listed
                if p.name != DENY_ALL_POLICY and p.pod_selector.matches(labels) and not _excludes_quarantine(p)
            ]
            if ctx.dry_run:
                if need_deny_all:
                    changes.append(f"create NetworkPolicy {namespace}/{DENY_ALL_POLICY} (deny all ingress and egress)")
                changes.extend(f"exclude quarantined pods from NetworkPolicy {namespace}/{p.name}" for p in pending)
                return
            writes: list[tuple[str, Callable[[], object]]] = []
            if need_deny_all:
                writes.append((f"created NetworkPolicy {namespace}/{DENY_ALL_POLICY}", partial(_create_deny_all, ctx)))
            writes.extend(
                (
                    f"excluded quarantined pods from NetworkPolicy {namespace}/{p.name}",
                    partial(
                        ctx.kube.set_network_policy_selector,
                        namespace,
                        p.name,
                        _with_exclusion(p.pod_selector),
                        p.resource_version,
                    ),
                )
                for p in pending
            )
            retry = False
            for (done, _), error in zip(writes, ctx.run_concurrently([w for _, w in writes]), strict=True):
                if error is None:
                    changes.append(done)
                elif isinstance(error, Conflict | NotFound):
                    retry = True  # changed under us (often by a concurrent instance doing the same)
                else:
                    raise error
            if not retry:
                return
            listed = None
        raise Conflict(f"NetworkPolicies in {namespace} kept changing; gave up after {_CONFLICT_ATTEMPTS} attempts")

    @staticmethod
    def _detach(ctx: ActionContext, changes: list[str]) -> list[str]:
        controller = ctx.pod.controller
        if controller is None:
            return ["not detached: the pod has no controller to replace it"]
        if controller.kind != "ReplicaSet":
            # A StatefulSet would try to recreate the same name; a DaemonSet/Job has its own identity rules.
            return [f"not detached: {controller.kind} pods keep their identity; delete instead to replace"]
        workload_labels = {k: v for k, v in ctx.pod.labels.items() if k != QUARANTINE_LABEL}
        if not workload_labels:
            return ["already detached"]
        if ctx.dry_run:
            changes.append(f"detach pod from ReplicaSet {controller.name} (remove labels {sorted(workload_labels)})")
            return []
        pod = ctx.pod
        ctx.pod = ctx.kube.patch_pod_metadata(
            pod.namespace,
            pod.name,
            pod.uid,
            dict.fromkeys(workload_labels),
            {ORIGINAL_LABELS_ANNOTATION: json.dumps(workload_labels, sort_keys=True)},
        )
        changes.append(f"detached pod from ReplicaSet {controller.name}: a replacement is created, Services drop it")
        return []
