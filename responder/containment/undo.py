"""Undo what one delivery did to a pod, when SCC refutes the message that caused it.

Isolation runs before SCC has answered (time to containment matters more than the round trip), so a forged message
can isolate a pod for that moment. When SCC then refutes the message, the quarantine label and the responder
annotations go back to what they were before this delivery touched it. The deny-all policy and the ``NotIn``
exclusions stay: both only concern pods carrying the quarantine label, so they change nothing for a pod without it.

A detach never runs before SCC vouches (see ``runner.waits_for_scc``): removing a pod's workload labels starts a
replacement at once and cannot be taken back. So a refuted message's pod still has every label it had, and this
rollback returns it exactly to its state before the delivery. Should a pod nonetheless lack labels it had (a detach
by a verified delivery of another finding), they are named in the record, never re-added: adding labels is what the
admission guard refuses the responder's identity (a label can select a pod into a policy or a Service).

Permissions: ``pods: get, patch`` (already held for isolation).
"""

from __future__ import annotations

from responder.containment.base import FINDING_ANNOTATION, PREFIX, QUARANTINE_LABEL, ActionResult, Status
from responder.errors import Conflict, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.ports import KubePort, PodView


def undo_quarantine(kube: KubePort, before: PodView, finding_name: str | None) -> ActionResult:
    """Restore the quarantine label, detached labels and responder annotations to their values in ``before``.

    Nothing is undone when the pod now carries another finding's record (a genuine delivery wrote after us: its
    quarantine stands) or when the pod under that name is another one. Errors are returned as a failed result.
    """
    try:
        current = kube.get_pod(before.namespace, before.name)
        if current.uid != before.uid:
            return _result(Status.SKIPPED, "the pod was replaced meanwhile; the new pod was never touched")
        if current.annotations.get(FINDING_ANNOTATION, "") != (finding_name or ""):
            return _result(Status.SKIPPED, "the pod carries another finding's record now; its quarantine stands")
        labels = {QUARANTINE_LABEL: before.labels.get(QUARANTINE_LABEL)}
        if labels[QUARANTINE_LABEL] == current.labels.get(QUARANTINE_LABEL):
            labels = {}
        detached = sorted(k for k in before.labels if k not in current.labels and k != QUARANTINE_LABEL)
        annotation_keys = {k for k in {*before.annotations, *current.annotations} if k.startswith(f"{PREFIX}/")}
        annotations = {
            k: before.annotations.get(k)
            for k in annotation_keys
            if before.annotations.get(k) != current.annotations.get(k)
        }
        if not labels and not annotations:
            return _result(Status.SKIPPED, "nothing to undo: the pod is as it was before this delivery")
        kube.patch_pod_metadata(before.namespace, before.name, before.uid, labels, annotations)
    except NotFound:
        return _result(Status.SKIPPED, "the pod no longer exists")
    except Conflict:
        return _result(Status.SKIPPED, "the pod was replaced meanwhile; the new pod was never touched")
    except ResponderError as exc:
        return _result(Status.FAILED, f"could not undo the quarantine: {clean(exc, 200)}")
    detail = (
        f"; it stays detached from its controller (labels {', '.join(detached)} were removed and a replacement "
        "started; re-add them to re-attach it)"
        if detached
        else ""
    )
    return _result(
        Status.SUCCEEDED,
        f"undid this delivery's quarantine of pod {before.name}: label and annotations as before{detail}",
    )


def _result(status: Status, reason: str) -> ActionResult:
    return ActionResult(action="rollback", status=status, reason=reason)
