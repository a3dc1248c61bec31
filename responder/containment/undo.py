"""Undo what deliveries of a message did to a pod, when SCC refutes the message.

Isolation runs before SCC has answered (time to containment matters more than the round trip), so a forged message
can isolate a pod for that moment, and a delivery that could not reach SCC keeps the isolation (fail safe) until a
redelivery gets SCC's answer. When SCC refutes the message, the pod loses the quarantine label and the responder
annotations this message put there, whichever delivery put them: the pod's own record (``responder.rsr.dev/finding``
naming this message's finding) says the quarantine is this message's. If the pod was already quarantined for another
finding when this one recorded itself (``responder.rsr.dev/prior-finding``), the quarantine is handed back to that
finding instead of lifted. The deny-all policy and the ``NotIn`` exclusions stay: both only concern pods carrying the
quarantine label, so they change nothing for a pod without it.

The rollback patch carries the pod's resourceVersion as a precondition, besides its UID: a genuine isolation that
lands between the read and the rollback makes the rollback fail with a conflict (and be judged again on a fresh
read), never silently un-isolate the pod.

A detach never runs before SCC vouches (see ``runner.waits_for_scc``): removing a pod's workload labels starts a
replacement at once and cannot be taken back. Labels a pod lacks are never re-added: adding labels is what the
admission guard refuses the responder's identity (a label can select a pod into a policy or a Service).

Permissions: ``pods: get, patch`` (already held for isolation); ``configmaps: get, patch`` on the quarantined
identities (held for the identity step).
"""

from __future__ import annotations

from responder.containment.identity import forget, listed
from responder.containment.keys import (
    ACTIONS_ANNOTATION,
    AT_ANNOTATION,
    FINDING_ANNOTATION,
    PRIOR_FINDING_ANNOTATION,
    QUARANTINE_LABEL,
)
from responder.containment.results import ActionResult, Status
from responder.errors import Conflict, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.ports import KubePort, PodView

_ATTEMPTS = 3  # fresh reads after a lost race before the rollback is left to a redelivery


def undo_quarantine(
    kube: KubePort, pod: PodView, finding_name: str | None, own_namespace: str | None = None
) -> ActionResult:
    """Lift (or hand back) the quarantine ``finding_name`` put on ``pod``, judged on a fresh read each attempt; a
    lifted quarantine lifts its identity quarantine too (the entry in ``own_namespace``'s quarantined identities).

    Nothing is undone when the pod now carries another finding's record (a genuine delivery wrote after us: its
    quarantine stands) or when the pod under that name is another one. Errors are returned as a failed result.
    """
    for _ in range(_ATTEMPTS):
        try:
            current = kube.get_pod(pod.namespace, pod.name)
            if current.uid != pod.uid:
                return _result(Status.SKIPPED, "the pod was replaced meanwhile; the new pod was never touched")
            if not finding_name or current.annotations.get(FINDING_ANNOTATION) != finding_name:
                if current.labels.get(QUARANTINE_LABEL) == "true":
                    return _result(Status.SKIPPED, "the pod carries another finding's record; its quarantine stands")
                # Not quarantined, so its identity must not be either (an earlier rollback lifted the label and then
                # failed to lift the identity): that is what is left to undo.
                return _lift_identity(kube, current, own_namespace, lifted=None)
            prior = current.annotations.get(PRIOR_FINDING_ANNOTATION)
            labels: dict[str, str | None] = {} if prior else {QUARANTINE_LABEL: None}
            annotations: dict[str, str | None] = {PRIOR_FINDING_ANNOTATION: None}
            annotations |= {FINDING_ANNOTATION: prior} if prior else dict.fromkeys(_RECORD)
            kube.patch_pod_metadata(
                pod.namespace, pod.name, pod.uid, labels, annotations, resource_version=current.resource_version
            )
        except NotFound:
            return _result(Status.SKIPPED, "the pod no longer exists")
        except Conflict:
            continue  # changed under us (a genuine quarantine, a kubelet update): judge again on a fresh read
        except ResponderError as exc:
            return _result(Status.FAILED, f"could not undo the quarantine: {clean(exc, 200)}")
        if prior:
            return _result(
                Status.SUCCEEDED,
                f"undid this message's record on pod {pod.name}: its quarantine is {clean(prior, 200)}'s again",
            )
        return _lift_identity(
            kube, current, own_namespace, f"undid this message's quarantine of pod {pod.name}: label and record removed"
        )
    return _result(Status.FAILED, f"the pod kept changing; the rollback is retried on redelivery ({_ATTEMPTS} tries)")


def identity_left(kube: KubePort, own_namespace: str, pod: PodView) -> bool:
    """The pod is not quarantined but its identity still is (a rollback that lifted the label and then failed to
    lift the identity). Unknown counts as left: the rollback then tries, and a failure is retried."""
    if pod.labels.get(QUARANTINE_LABEL) == "true":
        return False
    try:
        return listed(kube, own_namespace, pod)
    except ResponderError:
        return True


def _lift_identity(kube: KubePort, pod: PodView, own_namespace: str | None, lifted: str | None) -> ActionResult:
    """The label is gone (``lifted``: by this rollback; None: before it); so goes the pod's entry in the quarantined
    identities. A failure there is retried: the pod's token would stay refused its writes for a message SCC
    refuted."""
    nothing = "nothing to undo: the pod carries no quarantine of this finding"
    if own_namespace is None:
        return _result(Status.SUCCEEDED, lifted) if lifted else _result(Status.SKIPPED, nothing)
    try:
        forgot = forget(kube, own_namespace, pod)
    except ResponderError as exc:
        head = lifted or f"pod {pod.name} is not quarantined"
        return _result(Status.FAILED, f"{head}, but its identity is still quarantined: {clean(exc, 200)}")
    if lifted:
        return _result(Status.SUCCEEDED, f"{lifted}{'; its token may write again' if forgot else ''}")
    if forgot:
        return _result(Status.SUCCEEDED, f"lifted the identity quarantine left on pod {pod.name}: its token may write")
    return _result(Status.SKIPPED, nothing)


_RECORD = (FINDING_ANNOTATION, ACTIONS_ANNOTATION, AT_ANNOTATION)  # the annotations a quarantine writes


def _result(status: Status, reason: str) -> ActionResult:
    return ActionResult(action="rollback", status=status, reason=reason)
