"""Is this delivery a duplicate of one already handled, with its containment still holding?

Pub/Sub delivers at least once: a redelivery (ack deadline missed, a retry after a partial failure, a second
subscription) carries the same finding again. When the pod still carries this finding's record and the quarantine
label, the namespace's deny-all is intact *by content* and every allowing policy that selects the pod excludes
quarantined pods, there is nothing left to do: the responder records that, and repeats no investigation, capture or
log search. Anything short of that (isolation decayed, a policy added since, the plan wants more than isolation, such
as a delete that has not happened) is not a duplicate, and the delivery is handled in full.
"""

from __future__ import annotations

from responder.containment.base import DENY_ALL_POLICY, FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.isolate import allows_traffic, excludes_quarantine, is_deny_all
from responder.containment.plan import Plan
from responder.ports import NetworkPolicyView, PodView

# A plan made only of these is complete once the pod is isolated: nothing of it is left for a redelivery to do.
_ISOLATION_ONLY = frozenset({"isolate", "label", "capture"})


def carries_quarantine(finding_name: str | None, pod: PodView) -> bool:
    """The pod carries the quarantine label and this finding's record: the first condition of a duplicate, and
    the only one the pod read alone can judge (no need to read the policies when it fails)."""
    return (
        bool(finding_name)
        and pod.labels.get(QUARANTINE_LABEL) == "true"
        and pod.annotations.get(FINDING_ANNOTATION) == finding_name
    )


def already_contained(
    finding_name: str | None, plan: Plan, pod: PodView, policies: list[NetworkPolicyView]
) -> str | None:
    """Why this delivery changes nothing (the reason for the record), or None when it must be handled in full."""
    actions = {s.action for s in plan.steps}
    if plan.dry_run or not finding_name or "isolate" not in actions or not actions <= _ISOLATION_ONLY:
        return None
    if not carries_quarantine(finding_name, pod):
        return None
    if pod.deleting:
        return None
    deny_all = next((p for p in policies if p.name == DENY_ALL_POLICY), None)
    if deny_all is None or not is_deny_all(deny_all):
        return None
    # Selection is judged by the pod's labels without ours: that is what an allowing policy without its exclusion
    # would see, so a policy that selects the pod and does not exclude quarantined pods reopens it.
    labels = {k: v for k, v in pod.labels.items() if k != QUARANTINE_LABEL}
    allowing = [
        p for p in policies if p.name != DENY_ALL_POLICY and p.pod_selector.matches(labels) and allows_traffic(p)
    ]
    if any(not excludes_quarantine(p) for p in allowing):
        return None
    where = f"{pod.namespace}/{pod.name}"
    return (
        f"duplicate delivery, nothing to do: pod {where} (uid {pod.uid}) carries this finding's record and "
        f"{QUARANTINE_LABEL}=true; the deny-all NetworkPolicy {pod.namespace}/{DENY_ALL_POLICY} is intact (by "
        f"content); {len(allowing)} allowing polic{'y' if len(allowing) == 1 else 'ies'} selecting the pod "
        "exclude quarantined pods"
    )
