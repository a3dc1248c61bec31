"""Where a response's progress lives, and when a delivery has nothing left to do.

Pub/Sub delivers at least once, so a redelivery is the ordinary case. Each delivery works out the end state its
verified plan requires and moves toward it; what tells a redelivery that the end state was already reached (and
that it may repeat nothing) must be something neither the workload nor a forger can write. So that progress lives
in **SCC's security marks** on the finding: read from SCC's record in the verification read every redelivery makes
anyway, written once per delivery (:func:`marks_for`, by the write-back), and trusted only when SCC vouched for the
message. Pod annotations never suppress work (anyone with ``pods: patch``, possibly the workload's own service
account, can write them): they are a convenience for ``status``, and a hint that SCC should be asked first.

When SCC cannot be asked, nothing is "done" without its word: the delivery is handled in full (the isolation
re-converges from the cluster's state) and then retried.

The marks (each at most 1,000 characters, keys SCC accepts):

========== ===========================================================================================
mark       meaning
========== ===========================================================================================
rsr_event  the eventTime of the occurrence the marks are about (also how intake knows the notification
           SCC sends after every marks write for what it is: an echo of our own write)
rsr_outcome how that occurrence's last delivery ended: ``done`` | ``retry`` | ``not_contained``
rsr_status what happened to the workload: ``deleted`` | ``isolated`` | ``failed`` | ``reported``, or
           ``released`` (written by ``release``, with ``rsr_time``)
rsr_actions each step's end: ``isolate:succeeded,capture:succeeded,...``
rsr_pod_uid the UID of the pod acted on (a same-named replacement is another pod)
rsr_time   when the marks were written
========== ===========================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from responder.containment.keys import DENY_ALL_POLICY, FINDING_ANNOTATION, QUARANTINE_LABEL, RELEASED_ANNOTATION
from responder.containment.netpol import gaps
from responder.containment.verification import Verification, Vouch
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.ports import NetworkPolicyView, PodView

EVENT_MARK = "rsr_event"
OUTCOME_MARK = "rsr_outcome"
STATUS_MARK = "rsr_status"
ACTIONS_MARK = "rsr_actions"
POD_UID_MARK = "rsr_pod_uid"
TIME_MARK = "rsr_time"
RELEASED = "released"  # the rsr_status `release` writes
_SKEW = timedelta(minutes=5)
_STAMP_PRECISION = timedelta(seconds=1)  # marks are stamped in whole seconds


def occurrence(finding: Finding) -> str:
    """The value of ``rsr_event`` for this finding's occurrence ('' without an event time)."""
    return finding.event_time.isoformat() if finding.event_time else ""


@dataclass(frozen=True, slots=True)
class Progress:
    """What SCC's marks say an earlier delivery of this occurrence did."""

    outcome: str | None
    status: str | None
    actions: Mapping[str, str]
    pod_uid: str | None

    def finished(self, action: str) -> bool:
        """The step succeeded in an earlier delivery of this occurrence."""
        return self.actions.get(action) == "succeeded"


def progress(finding: Finding, verification: Verification) -> Progress | None:
    """The progress SCC's marks record for this occurrence, or None: SCC has not vouched (its marks are then not
    known to be SCC's), or the marks are about another occurrence (the shell came back since) or absent."""
    record = verification.record
    if verification.vouch is not Vouch.VERIFIED or record is None:
        return None
    marks = record.marks
    if not finding.event_time or marks.get(EVENT_MARK) != occurrence(finding):
        return None
    actions = dict(part.split(":", 1) for part in (marks.get(ACTIONS_MARK) or "").split(",") if part.count(":") == 1)
    return Progress(marks.get(OUTCOME_MARK), marks.get(STATUS_MARK), actions, marks.get(POD_UID_MARK))


def isolation_holds(finding_name: str | None, pod: PodView, policies: list[NetworkPolicyView]) -> str | None:
    """Why the pod's isolation still holds in the cluster (the reason for a record), or None when it does not:
    the pod carries the quarantine label and this finding's record, the namespace's deny-all is intact *by content*,
    and no policy would let traffic past it to or from the quarantined pod (the same judgement as isolation's)."""
    if not finding_name or pod.deleting:
        return None
    if pod.labels.get(QUARANTINE_LABEL) != "true" or pod.annotations.get(FINDING_ANNOTATION) != finding_name:
        return None
    if not gaps(policies, pod.labels).none:
        return None
    return (
        f"pod {pod.namespace}/{pod.name} (uid {pod.uid}) carries {QUARANTINE_LABEL}=true and this finding's record; "
        f"the deny-all {pod.namespace}/{DENY_ALL_POLICY} is intact by content and no policy allows traffic to or "
        "from it"
    )


def converged(
    finding: Finding, verification: Verification, pod: PodView | None, policies: list[NetworkPolicyView] | None
) -> str | None:
    """Why this delivery has nothing left to do (the reason for a ``duplicate`` record), or None: handle it in full.

    Only when SCC vouched for the message, its marks say an earlier delivery of this occurrence ended ``done``, and
    the cluster still shows that end state: the pod acted on is gone (deleted), or still isolated.
    """
    done = progress(finding, verification)
    if done is None or done.outcome != "done":
        return None
    earlier = f"SCC's marks record this occurrence as done ({clean(done.status, 20)})"
    if done.status == "deleted":
        if pod is None or pod.uid != done.pod_uid or pod.deleting:
            return f"duplicate delivery, nothing to do: {earlier}, and the pod it deleted is gone"
        return None
    if done.status == "isolated" and pod is not None and pod.uid == done.pod_uid and policies is not None:
        holds = isolation_holds(finding.name, pod, policies)
        if holds is not None:
            return f"duplicate delivery, nothing to do: {earlier}, and {holds}"
    return None


def released(finding: Finding, verification: Verification, now: datetime) -> str | None:
    """Why a delivery is not acted on because an operator released the pod after the finding's event (the reason
    for the record), or None. Read from SCC's marks only (``release`` writes them), never from the pod: a release
    lasts, so a redelivery of the original message must not isolate the pod again, but a workload that plants a
    release annotation on itself must not hold the responder off. A finding updated after the release (SCC moved its
    event time forward: the shell came back) is acted on; a release time in the future is not believed."""
    record = verification.record
    if verification.vouch is not Vouch.VERIFIED or record is None or finding.event_time is None:
        return None
    if record.marks.get(STATUS_MARK) != RELEASED:
        return None
    try:
        at = datetime.fromisoformat(record.marks.get(TIME_MARK) or "")
    except ValueError:
        return None
    if at.tzinfo is None or at > now + _SKEW or at < finding.event_time - _STAMP_PRECISION:
        return None
    return (
        f"released at {at.isoformat()} (SCC's marks on the finding), after this finding's event "
        f"({finding.event_time.isoformat()}), and the finding was not updated since: not contained again "
        f"({clean(finding.name, 200)})"
    )


def marks_for(
    finding: Finding, outcome: str, status: str, actions: str, pod_uid: str | None, now: datetime
) -> dict[str, str]:
    """The marks one delivery writes: its progress on this occurrence (see the module's table)."""
    marks = {
        STATUS_MARK: status,
        ACTIONS_MARK: actions[:1000] or "none",
        OUTCOME_MARK: outcome,
        TIME_MARK: now.isoformat(timespec="seconds"),
    }
    if finding.event_time:
        marks[EVENT_MARK] = occurrence(finding)
    if pod_uid:
        marks[POD_UID_MARK] = pod_uid
    return marks


def touched_before(finding_name: str | None, pod: PodView) -> bool:
    """The pod's annotations say a delivery of this finding, or a release, came before. Only a hint to ask SCC
    first: what the workload can write never decides anything."""
    return RELEASED_ANNOTATION in pod.annotations or (
        bool(finding_name) and pod.annotations.get(FINDING_ANNOTATION) == finding_name
    )
