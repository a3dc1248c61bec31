"""Is this delivery a duplicate of one already handled, with its containment still holding?

Pub/Sub delivers at least once: a redelivery (ack deadline missed, a retry after a partial failure, a second
subscription) carries the same finding again. When the pod still carries this finding's record and the quarantine
label, the namespace's deny-all is intact *by content* and every allowing policy that selects the pod excludes
quarantined pods, there is nothing left to do: the responder records that, and repeats no investigation, capture or
log search. Anything short of that (isolation decayed, a policy added since, the plan wants more than isolation, such
as a delete that has not happened) is not a duplicate, and the delivery is handled in full.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from responder.containment import registry
from responder.containment.base import DENY_ALL_POLICY, FINDING_ANNOTATION, QUARANTINE_LABEL, RELEASED_ANNOTATION
from responder.containment.netpol import is_deny_all, reopens
from responder.containment.plan import Plan
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.ports import NetworkPolicyView, PodView

RELEASED_MARK, RELEASED_AT_MARK = "rsr_status", "rsr_time"  # the security marks `release` writes
_SKEW = timedelta(minutes=5)
_STAMP_PRECISION = timedelta(seconds=1)  # `release` stamps whole seconds


def _isolation_only(plan: Plan) -> bool:
    """The plan isolates and does nothing that waits for SCC's word: it is complete once the pod is isolated, and
    nothing of it is left for a redelivery to do."""
    actions = [registry.ACTIONS[s.action] for s in plan.steps]
    return any(a.isolating for a in actions) and not any(a.destructive or a.verified_first for a in actions)


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
    if plan.dry_run or not finding_name or not _isolation_only(plan):
        return None
    if not carries_quarantine(finding_name, pod):
        return None
    if pod.deleting:
        return None
    deny_all = next((p for p in policies if p.name == DENY_ALL_POLICY), None)
    if deny_all is None or not is_deny_all(deny_all):
        return None
    # The same judgement as isolation's, by content: any policy that would let traffic past the deny-all to or from
    # the quarantined pod means the containment does not hold, whatever its selector is made of.
    if any(reopens(p, pod.labels) for p in policies):
        return None
    labels = {k: v for k, v in pod.labels.items() if k != QUARANTINE_LABEL}
    allowing = [p for p in policies if p.name != DENY_ALL_POLICY and p.pod_selector.matches(labels)]
    where = f"{pod.namespace}/{pod.name}"
    return (
        f"duplicate delivery, nothing to do: pod {where} (uid {pod.uid}) carries this finding's record and "
        f"{QUARANTINE_LABEL}=true; the deny-all NetworkPolicy {pod.namespace}/{DENY_ALL_POLICY} is intact (by "
        f"content); {len(allowing)} allowing polic{'y' if len(allowing) == 1 else 'ies'} selecting the pod "
        "exclude quarantined pods, and no other policy allows traffic to or from it"
    )


def released(finding: Finding, pod: PodView, now: datetime) -> str | None:
    """Why a delivery is not acted on because an operator released this pod after the finding's event (the reason for
    the record), or None. A release lasts: a redelivery of the original message (a seek on the findings topic, a
    retry) must not isolate the pod again. A finding updated after the release (SCC moved its event time forward: the
    shell came back) is acted on. A release time in the future is not believed, so a planted annotation cannot hold
    the responder off for good."""
    if finding.event_time is None:
        return None
    stamps = [("the pod's annotation", pod.annotations.get(RELEASED_ANNOTATION))]
    if finding.security_marks.get(RELEASED_MARK) == "released":
        stamps.append(("the finding's security marks", finding.security_marks.get(RELEASED_AT_MARK)))
    for where, raw in stamps:
        try:
            at = datetime.fromisoformat(raw or "")
        except ValueError:
            continue
        if at.tzinfo is None or at > now + _SKEW or at < finding.event_time - _STAMP_PRECISION:
            continue
        return (
            f"pod {pod.namespace}/{pod.name} was released at {at.isoformat()} ({where}), after this finding's event "
            f"({finding.event_time.isoformat()}), and the finding was not updated since: not contained again "
            f"({clean(finding.name, 200)})"
        )
    return None
