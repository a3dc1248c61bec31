"""isolate: cut the pod off the network, both directions, and optionally detach it from its controller.

Permissions: ``networkpolicies: list, create, patch``; ``pods: patch``; ``list`` on the cluster-scoped policy kinds
(``cluster_tier``), read behind the writes.
Example (policy): ``- action: isolate\n  detach: true``.

NetworkPolicies are additive: a deny-all policy does not override another policy that allows traffic to the same pod.
So besides ensuring a deny-all (Ingress + Egress) policy on the quarantine label, every other policy in the namespace
that selects the pod and allows traffic gets a ``NotIn`` term excluding quarantined pods (one that allows nothing, a
default-deny, cannot reopen the pod and is left alone; the admission guard refuses the term there). Only then is
the label applied, so the pod leaves the allowing policies and enters the deny-all one in the same write. Egress-only
isolation would leave the attacker's inbound path open, so both directions are always denied.

The deny-all policy is trusted by content, never by name: anyone who can write NetworkPolicies in the namespace can
create one called ``rsr-quarantine-deny-all`` that selects nothing. If the responder then excluded the pod from the
allowing policies, the pod would be selected by no policy at all, i.e. fully open. So the policy is read back (the
object the server returns, or the namespace's list) and must be exactly the intended one (selects the quarantine
label, Ingress and Egress, no rules, the responder's label); a squatter is replaced before anything else is written,
and isolation fails rather than proceed when that cannot be ensured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any, ClassVar, Literal

from responder.containment import cluster_tier
from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.cluster_tier import ClusterTier
from responder.containment.context import ActionContext
from responder.containment.enforcement import CUT, established_connections
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.containment.netpol import (
    CONFLICT_ATTEMPTS,
    ensure_deny_all,
    exclude,
    gaps,
    reopens,
    replaced,
)
from responder.containment.results import ActionResult, Status, pod_gone, result
from responder.containment.shape import is_deny_all
from responder.errors import (
    Conflict,
    NotFound,
    PoliciesKeptChanging,
    ResponderError,
)
from responder.intake import categories
from responder.ports import NetworkPolicyView

LiveSession = Literal["escalate", "report"]


class IsolateParams(ActionParams):
    """``detach``: also remove the workload labels so the ReplicaSet replaces the pod and Services drop it (only where
    isolation cuts established connections: a detached pod that keeps its shell would run on, unmanaged).
    ``live_session``: when isolation cannot cut an established reverse shell, ``escalate`` (capture, then delete) or
    ``report`` (stay isolated for new connections, say so at WARNING); unset takes the policy's default."""

    detach: bool = False
    live_session: LiveSession | None = None


class IsolateAction(Traits):
    """Deny-all NetworkPolicy + exclusion from allowing policies + quarantine label (``detach`` is its own step)."""

    name: ClassVar[str] = "isolate"
    isolating: ClassVar[bool] = True
    contains: ClassVar[bool] = True
    quarantines: ClassVar[bool] = True
    held_means: ClassVar[str] = "not isolated"
    status_word: ClassVar[str | None] = "isolated"
    released_by: ClassVar[str] = (
        "the pod's quarantine is lifted; once no pod in the namespace is quarantined, the exclusions are removed and "
        "the deny-all deleted (a detached pod's labels are not put back: its controller replaced it)"
    )
    rbac: ClassVar[tuple[Rule, ...]] = (
        Rule(("networkpolicies",), ("list", "create", "patch"), group="networking.k8s.io"),
        Rule(("pods",), ("patch",)),
        # The tier above the namespace, read only (the responder never writes a cluster-scoped object).
        *(
            Rule(tuple(k.plural for k in cluster_tier.KINDS if k.group == group), ("list",), group=group)
            for group in dict.fromkeys(k.group for k in cluster_tier.KINDS)
        ),
    )
    guard: ClassVar[tuple[str, ...]] = (
        "isPod",
        "isNetworkPolicy",
        "isExactDenyAll",
        "onlyExclusionAdded",
        "policyAllowsTraffic",
        "onlyResponderAnnotationsChanged",
    )
    Params: ClassVar[type[ActionParams]] = IsolateParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Isolate the pod; report ``failed`` when isolation cannot be effective (the writes are still made)."""
        assert isinstance(params, IsolateParams)
        changes: list[str] = []
        # ``detach`` is not done here: the runner splits it off into its own step, held until SCC vouches (detach.py).
        try:
            self._isolate(ctx, changes)
            if not ctx.dry_run:
                self._holds(ctx, changes)
        except PoliciesKeptChanging:
            raise  # not about the pod: the action fails with the reason
        except (NotFound, Conflict) as exc:
            return pod_gone(self.name, ctx, exc, changes)

        ineffective = self._ineffective(ctx)
        enforcement = ctx.netpol()
        session = established_connections(enforcement, ctx.pod.host_network)
        # Behind the writes: whether a policy above the namespace lets the pod's traffic through anyway.
        above = ClusterTier() if ineffective else self._above(ctx)
        details: dict[str, Any] = {
            "policy": DENY_ALL_POLICY,
            "notes": [],
            # The record never claims a cut the dataplane cannot make: this is what happens to the live shell.
            "established_connections": session,
            "dataplane": enforcement.dataplane,
            "session_survives": session != CUT or above.reopened,
            **above.details(),
        }
        sessions = f"established connections: {session} ({enforcement.dataplane})"
        profile = categories.of(ctx.finding.category)
        if above.reopened:
            # The live-session rule decides what follows (escalate, or the not-contained outcome): a pod whose
            # traffic a cluster-scoped allow lets through is not isolated, whatever the namespace says.
            details["reopened"] = True
            sessions += "; the isolation does not hold above the namespace (first in this record)"
        else:
            if above.kinds:  # the cluster has policy above the namespace: say which tier holds the pod
                sessions += f"; held at the {above.isolated_at()}"
            if session != CUT and profile.live_session:
                sessions += f"; a {profile.noun} connected before the isolation may still be alive"
        # First, where a person reads first (the outcome's reason keeps the head of it).
        held = f"NOT HELD: a policy above the namespace lets traffic through: {above.why_open()}; " * above.reopened
        if ineffective:
            return result(
                self.name,
                Status.FAILED,
                f"isolation ineffective: {ineffective}; {sessions}",
                ctx,
                changes,
                ineffective=True,
                **details,
            )
        if not changes:
            return result(self.name, Status.SKIPPED, f"{held}pod already isolated; {sessions}", ctx, **details)
        status = Status.SKIPPED if ctx.dry_run else Status.SUCCEEDED
        summary = f"{'; '.join(changes)}; {sessions}"
        summary = summary if ctx.dry_run else f"isolated: {summary}"
        return result(self.name, status, held + summary, ctx, changes, **details)

    @staticmethod
    def _above(ctx: ActionContext) -> ClusterTier:
        """The tier above the namespace, judged for the pod as quarantined (see ``cluster_tier``)."""
        labels = {k: v for k, v in ctx.pod.labels.items() if k != QUARANTINE_LABEL}
        return cluster_tier.read(ctx.kube, ctx.pod, labels, ctx.prefetched.namespace)

    @staticmethod
    def _ineffective(ctx: ActionContext) -> str | None:
        if ctx.pod.host_network:
            return "the pod uses hostNetwork, which NetworkPolicy does not apply to"
        if ctx.netpol().mode == "none":
            return f"the cluster does not enforce NetworkPolicy ({ctx.netpol().dataplane})"
        return None

    @staticmethod
    def _isolate(ctx: ActionContext, changes: list[str]) -> None:
        """Deny-all first, then (concurrently) the exclusions from allowing policies and the one pod patch.

        Time to containment is the product, so requests go out in as few rounds as is safe. The deny-all policy must
        exist before the label lands (the label is what moves the pod into it); it is usually created alongside the
        pod read (``ctx.deny_all_ensured()``). Once it exists, exclusion and label may land in either order: until the
        label lands, ``NotIn`` still selects the pod, so it is never left unselected (which would allow everything).
        """
        namespace = ctx.target.namespace
        # The pod's own labels without ours; `reopens` judges them as they will be, quarantined (and detached).
        labels = {k: v for k, v in ctx.pod.labels.items() if k != QUARANTINE_LABEL}
        ensured = ctx.deny_all_ensured()  # what ensuring it alongside the pod read did, or None
        if ensured is not None and ensured.changed:
            changes.append(ensured.what)
        # With the deny-all in place the pod patch goes out now, not after the policies' list: a consistent list can
        # wait ~100 ms for the apiserver's watch cache (docs/performance.md), and a namespace with no allowing policy
        # is isolated by the label alone. The exclusions follow as soon as the list says which policies need one.
        early = ctx.start(ctx.quarantine) if ensured is not None and not ctx.dry_run else None
        listed = ctx.prefetched_policies()
        pod_done = False
        for _ in range(CONFLICT_ATTEMPTS):
            if listed is None:
                listed = ctx.kube.list_network_policies(namespace)
            # Every policy that would let traffic past the deny-all once the pod is quarantined, judged by content.
            pending = [p for p in listed if p.name != DENY_ALL_POLICY and reopens(p, labels)]
            if ctx.dry_run:
                IsolateAction._would(ctx, listed, pending, changes)
                return
            if ensured is None:
                # Before any exclusion or label: without the deny-all in place they would open the pod, not close it.
                ensured = ensure_deny_all(ctx.kube, namespace)
                if ensured.changed:
                    changes.append(ensured.what)
            retry, pod_done = IsolateAction._write(ctx, pending, labels, changes, pod_done, early)
            early = None
            if not retry:
                return
            listed = None
        raise PoliciesKeptChanging(
            f"NetworkPolicies in {namespace} kept changing; gave up after {CONFLICT_ATTEMPTS} attempts"
        )

    @staticmethod
    def _holds(ctx: ActionContext, changes: list[str]) -> None:
        """Read the namespace's policies once more after the pod patch and judge them, as ``release`` re-checks
        after its own writes: a concurrent release of another pod in the namespace may have deleted the deny-all or
        lifted an exclusion between this action's read and its label. What it undid is redone here; an isolation
        that cannot be made to hold raises, so the record never claims it."""
        namespace = ctx.target.namespace
        labels = {k: v for k, v in ctx.pod.labels.items() if k != QUARANTINE_LABEL}
        for _ in range(CONFLICT_ATTEMPTS):
            found = gaps(ctx.kube.list_network_policies(namespace), labels)
            if found.none:
                return
            if not found.intact:
                ensured = ensure_deny_all(ctx.kube, namespace)
                changes.append(f"{ensured.what} again (removed while the pod was being isolated)")
            for policy in found.reopening:
                with contextlib.suppress(Conflict, NotFound):  # judged again on the next read
                    exclude(ctx.kube, namespace, policy, labels)
                    changes.append(f"excluded quarantined pods from NetworkPolicy {namespace}/{policy.name} again")
        raise PoliciesKeptChanging(
            f"the isolation of {ctx.pod.name} kept being undone in {namespace}; gave up after {CONFLICT_ATTEMPTS} tries"
        )

    @staticmethod
    def _would(
        ctx: ActionContext,
        listed: list[NetworkPolicyView],
        pending: list[NetworkPolicyView],
        changes: list[str],
    ) -> None:
        """What isolation would write (dry run): the same judgements, no write."""
        namespace = ctx.target.namespace
        current = next((p for p in listed if p.name == DENY_ALL_POLICY), None)
        if current is None:
            changes.append(f"create NetworkPolicy {namespace}/{DENY_ALL_POLICY} (deny all ingress and egress)")
        elif not is_deny_all(current):
            changes.append(f"replace {replaced(f'{namespace}/{DENY_ALL_POLICY}', current)} with the deny-all")
        changes.extend(f"exclude quarantined pods from NetworkPolicy {namespace}/{p.name}" for p in pending)
        _, what = ctx.quarantine()
        changes.append(what)

    @staticmethod
    def _write(
        ctx: ActionContext,
        pending: list[NetworkPolicyView],
        labels: Mapping[str, str],
        changes: list[str],
        pod_done: bool,
        early: Future[object] | None = None,
    ) -> tuple[bool, bool]:
        """One round of writes at once: the exclusions and (until it landed) the pod patch, unless it went out
        ``early``. Returns (whether a policy changed under us, so the round is judged again on a fresh read; whether
        the pod patch landed)."""
        namespace = ctx.target.namespace
        writes: list[tuple[str | None, Callable[[], object]]] = [
            (
                f"excluded quarantined pods from NetworkPolicy {namespace}/{p.name}",
                partial(exclude, ctx.kube, namespace, p, labels),
            )
            for p in pending
        ]
        if not pod_done and early is None:
            writes.append((None, ctx.quarantine))
        outcomes = list(zip(writes, ctx.run_concurrently([w for _, w in writes]), strict=True))
        if early is not None and not pod_done:
            outcomes.append(((None, ctx.quarantine), early.result()))
        ctx.writes_out.open()  # acknowledged, not merely sent: nothing competes with them until they land
        retry = False
        for (done, _), outcome in outcomes:
            if done is None:  # the pod patch: its failure (gone, replaced) ends the action
                if isinstance(outcome, ResponderError):
                    raise outcome
                pod_done = True
                assert isinstance(outcome, tuple)
                changed, what = outcome
                if changed:
                    changes.append(what)
            elif not isinstance(outcome, ResponderError):
                changes.append(done)
            elif isinstance(outcome, Conflict | NotFound):
                retry = True  # changed under us (often by a concurrent instance doing the same)
            else:
                raise outcome
        return retry, pod_done
