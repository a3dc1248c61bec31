"""``status``: every quarantined pod, what quarantined it, and whether its isolation still holds.

Isolation can decay after the fact: someone deletes the deny-all, edits it, or adds a policy that selects the pod
without the exclusion. ``policy_intact`` re-judges all of that from the namespace's policies as they are now, and
``above_namespace`` the cluster-scoped policies (a cluster-wide allow added later reopens the pod too).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from responder.aftercare.facts import QUARANTINE_SELECTOR, is_detached, original_labels, policy_problems
from responder.containment import cluster_tier, identity
from responder.containment.cluster_tier import ClusterTier
from responder.containment.keys import ACTIONS_ANNOTATION, AT_ANNOTATION, FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.revoke import STORE
from responder.errors import NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.ports import KubePort, NetworkPolicyView, PodView


class QuarantinedPod(BaseModel):
    """One line of ``status`` (and one object of ``status --json``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    namespace: str
    pod: str
    uid: str
    finding: str | None = None
    quarantined_at: str | None = None
    actions: list[str] = Field(default_factory=list)
    detached: bool
    original_labels: dict[str, str] = Field(default_factory=dict)
    phase: str | None = None
    terminating: bool = False
    policy_intact: bool
    policy_problems: list[str] = Field(default_factory=list)
    # Its service-account token's writes refused (its entry in the identity guard's parameter); None: not known.
    identity_quarantined: bool | None = None
    # The tier above the namespace (cluster_tier): "held" (a cluster-scoped deny holds it first), "namespace only"
    # (policies served, none holds or reopens it), "none served", "REOPENED" (one lets its traffic through, or one
    # could not be read), None: not judged (the read failed).
    above_namespace: str | None = None
    above_problems: list[str] = Field(default_factory=list)
    # Bindings ``revoke`` deleted for it, recorded for release (the stolen token's reads refused); None: not known.
    revoked_bindings: int | None = None


def describe(
    pod: PodView,
    policies: list[NetworkPolicyView],
    identities: Mapping[str, str] | None = None,
    above: ClusterTier | None = None,
    revoked: Mapping[str, str] | None = None,
) -> QuarantinedPod:
    """The status of one quarantined pod; annotation values are free text anyone with pods: patch can write, so they
    are cleaned before they reach a terminal. ``identities``: the identity guard's parameter (None: unreadable)."""
    problems = policy_problems(pod, policies)
    ann = pod.annotations
    actions = [clean(a, 40) for a in (ann.get(ACTIONS_ANNOTATION) or "").split(",") if a]
    return QuarantinedPod(
        namespace=pod.namespace,
        pod=pod.name,
        uid=pod.uid,
        finding=clean(ann[FINDING_ANNOTATION], 300) if ann.get(FINDING_ANNOTATION) else None,
        quarantined_at=clean(ann[AT_ANNOTATION], 40) if ann.get(AT_ANNOTATION) else None,
        actions=actions,
        detached=is_detached(pod),
        original_labels=original_labels(pod),
        phase=pod.phase,
        terminating=pod.deleting,
        policy_intact=not problems,
        policy_problems=problems,
        identity_quarantined=None if identities is None else identities.get(pod.uid) == identity.entry(pod),
        above_namespace=None if above is None else _above_word(above),
        above_problems=[] if above is None or not above.reopened else [f"above the namespace: {above.why_open()}"],
        revoked_bindings=None if revoked is None else sum(k.startswith(f"{pod.uid}.") for k in revoked),
    )


def _above_word(above: ClusterTier) -> str:
    if above.reopened:
        return "REOPENED"
    if above.holding:
        return "held"
    return "namespace only" if above.kinds else "none served"


def _judge_above(kube: KubePort, pod: PodView) -> ClusterTier | None:
    """The tier above the namespace for one quarantined pod (None when it could not be read: shown as unknown)."""
    labels = {k: v for k, v in pod.labels.items() if k != QUARANTINE_LABEL}
    try:
        return cluster_tier.read(kube, pod, labels)
    except ResponderError:
        return None


def collect_status(
    kube: KubePort, namespace: str | None = None, own_namespace: str = "responder-system"
) -> list[QuarantinedPod]:
    """Every pod carrying the quarantine label (in ``namespace``, or everywhere), one policy list per namespace, and
    whether each one's identity is quarantined (``own_namespace``'s quarantined identities)."""
    pods = sorted(kube.list_pods(namespace, QUARANTINE_SELECTOR), key=lambda p: (p.namespace, p.name))
    policies = {ns: kube.list_network_policies(ns) for ns in dict.fromkeys(p.namespace for p in pods)}
    identities, revoked = (_own(kube, own_namespace, name) if pods else {} for name in (identity.IDENTITIES, STORE))
    return [describe(p, policies[p.namespace], identities, _judge_above(kube, p), revoked) for p in pods]


def _own(kube: KubePort, own_namespace: str, name: str) -> dict[str, str] | None:
    """One of the responder's own ConfigMaps (none: empty; unreadable: None, shown as unknown)."""
    try:
        return dict(kube.get_config_map(own_namespace, name).data)
    except NotFound:
        return {}
    except ResponderError:
        return None


def render_table(entries: list[QuarantinedPod]) -> str:
    """The human view: one line per pod, then the reasons an isolation is not intact."""
    if not entries:
        return "no quarantined pods"
    rows = [
        (
            "NAMESPACE",
            "POD",
            "QUARANTINED",
            "ACTIONS",
            "DETACHED",
            "PHASE",
            "ISOLATION",
            "ABOVE NS",
            "TOKEN WRITES",
            "REVOKED",
        )
    ]
    rows.extend(
        (
            e.namespace,
            e.pod,
            e.quarantined_at or "?",
            ",".join(e.actions) or "?",
            "yes" if e.detached else "no",
            (e.phase or "?") + (" (terminating)" if e.terminating else ""),
            "intact" if e.policy_intact else "BROKEN",
            e.above_namespace or "?",
            {True: "refused", False: "ALLOWED", None: "?"}[e.identity_quarantined],
            "?" if e.revoked_bindings is None else str(e.revoked_bindings),
        )
        for e in entries
    )
    # Every cell and line is cleaned: the cluster's names are validated, but annotations and policy problems quote
    # what anyone allowed to patch a pod wrote, and this goes straight to a terminal.
    cells = [[clean(cell, 300) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    for e in entries:
        lines.append(clean(f"{e.namespace}/{e.pod}: finding {e.finding or '(not recorded)'}", 600))
        lines.extend(clean(f"  ! {problem}", 600) for problem in [*e.policy_problems, *e.above_problems])
    return "\n".join(lines)
