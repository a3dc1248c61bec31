"""What the cluster says about a quarantine: the facts ``status`` shows and ``release`` decides on.

Everything here is judged from live objects, never from a name alone: the deny-all counts only when its content is the
responder's (``is_deny_all``; an older version's deny-all is named as such, see ``containment.shape``), and a pod
counts as quarantined only while it carries the quarantine label.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from responder.containment.keys import ORIGINAL_LABELS_ANNOTATION, PREFIX
from responder.containment.keys import RELEASED_ANNOTATION as BASE_RELEASED_ANNOTATION
from responder.containment.netpol import gaps
from responder.containment.shape import CURRENT, known_shape, responders_deny_alls
from responder.errors import InvalidIdentifier
from responder.intake import identifiers
from responder.intake.sanitize import clean
from responder.ports import NetworkPolicyView, PodView

# The pods the deny-all selects, as a label selector for a list.
QUARANTINE_SELECTOR = ",".join(f"{key}={value}" for key, value in CURRENT.selects.items())
# Left on a released pod, so that a second release can tell "already released" (no change) from a same-named
# replacement that was never quarantined (refused). It is the only responder key a released pod keeps.
RELEASED_ANNOTATION = BASE_RELEASED_ANNOTATION


def is_quarantined(pod: PodView) -> bool:
    """The label is what the deny-all selects: a pod without it is not isolated, whatever its annotations say."""
    return all(pod.labels.get(key) == value for key, value in CURRENT.selects.items())


def is_detached(pod: PodView) -> bool:
    """Detached: isolation removed its workload labels, or no controller owns it (nothing would restore it)."""
    return ORIGINAL_LABELS_ANNOTATION in pod.annotations or pod.controller is None


def original_labels(pod: PodView) -> dict[str, str]:
    """The workload labels detach removed, as recorded on the pod; {} when absent or unreadable (it is free text)."""
    try:
        raw = json.loads(pod.annotations.get(ORIGINAL_LABELS_ANNOTATION) or "{}")
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {clean(k, 316): clean(v, 63) for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def responder_annotations(pod: PodView) -> list[str]:
    """The annotation keys the responder wrote on this pod (its own domain, so never a workload's)."""
    return sorted(k for k in pod.annotations if k.startswith(f"{PREFIX}/"))


def policy_problems(pod: PodView, policies: Iterable[NetworkPolicyView]) -> list[str]:
    """Why the pod's isolation is not intact ([] when it is): the deny-all missing or not what it should be, or an
    allowing policy that still selects the pod."""
    listed = list(policies)
    # The judgement isolation makes, by content (see ``netpol.gaps``): a policy on the quarantine label itself, or
    # any other that selects the quarantined pod and allows something, breaks the isolation.
    found = gaps(listed, pod.labels)
    problems = [] if found.intact else [_deny_all_problem(found.deny_all, listed)]
    problems.extend(
        f"NetworkPolicy {p.name} selects the pod and does not exclude quarantined pods" for p in found.reopening
    )
    return problems


def _deny_all_problem(deny: NetworkPolicyView | None, listed: list[NetworkPolicyView]) -> str:
    """Why the namespace has no intact deny-all. An older version's deny-all is the responder's own, not a
    squatter's, and isolation writes today's over it (or beside it), so it is named as what it is."""
    if deny is None:
        older = [f"{p.name} (shape v{s.version})" for p, s in responders_deny_alls(listed) if s is not CURRENT]
        found = f"; an older responder's deny-all is there: {', '.join(older)}" if older else ""
        return f"no NetworkPolicy {CURRENT.name} in the namespace{found}"
    shape = known_shape(deny)
    if shape is not None:
        return (
            f"NetworkPolicy {CURRENT.name} is the deny-all of shape v{shape.version} (an older responder's), not the "
            f"current v{CURRENT.version}: isolating a pod here again replaces it"
        )
    return f"NetworkPolicy {CURRENT.name} is not the deny-all (its content was changed)"


def parse_target(target: str) -> tuple[str, str]:
    """``NAMESPACE/POD`` → (namespace, pod), each checked against Kubernetes naming rules (never escaped)."""
    namespace, sep, pod = target.partition("/")
    if not sep:
        raise InvalidIdentifier(f"{clean(target, 80)!r} is not NAMESPACE/POD")
    return identifiers.namespace(namespace), identifiers.pod_name(pod)
