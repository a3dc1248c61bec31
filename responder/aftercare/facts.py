"""What the cluster says about a quarantine: the facts ``status`` shows and ``release`` decides on.

Everything here is judged from live objects, never from a name alone: the deny-all counts only when its content is the
responder's (``is_deny_all``), and a pod counts as quarantined only while it carries the quarantine label.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from responder.containment.keys import DENY_ALL_POLICY, ORIGINAL_LABELS_ANNOTATION, PREFIX, QUARANTINE_LABEL
from responder.containment.keys import RELEASED_ANNOTATION as BASE_RELEASED_ANNOTATION
from responder.containment.netpol import is_deny_all, reopens
from responder.intake.sanitize import clean
from responder.ports import LabelSelector, LabelSelectorRequirement, NetworkPolicyView, PodView

QUARANTINE_SELECTOR = f"{QUARANTINE_LABEL}=true"
# Left on a released pod, so that a second release can tell "already released" (no change) from a same-named
# replacement that was never quarantined (refused). It is the only responder key a released pod keeps.
RELEASED_ANNOTATION = BASE_RELEASED_ANNOTATION
# The term isolation appends to allowing policies; equal by value to the one isolate.py writes.
EXCLUDE = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))


def is_quarantined(pod: PodView) -> bool:
    """The label is what the deny-all selects: a pod without it is not isolated, whatever its annotations say."""
    return pod.labels.get(QUARANTINE_LABEL) == "true"


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


def has_exclusion(policy: NetworkPolicyView) -> bool:
    """Whether the policy carries the quarantine exclusion."""
    return EXCLUDE in policy.pod_selector.match_expressions


def without_exclusion(selector: LabelSelector) -> LabelSelector:
    """The selector as it was before isolation appended the exclusion (every copy of it removed)."""
    kept = tuple(e for e in selector.match_expressions if e != EXCLUDE)
    return selector.model_copy(update={"match_expressions": kept})


def with_exclusion(selector: LabelSelector) -> LabelSelector:
    """The selector with the exclusion appended, as isolation writes it."""
    return selector.model_copy(update={"match_expressions": (*selector.match_expressions, EXCLUDE)})


def policy_problems(pod: PodView, policies: Iterable[NetworkPolicyView]) -> list[str]:
    """Why the pod's isolation is not intact ([] when it is): the deny-all missing or not what it should be, or an
    allowing policy that still selects the pod."""
    listed = list(policies)
    problems: list[str] = []
    deny = next((p for p in listed if p.name == DENY_ALL_POLICY), None)
    if deny is None:
        problems.append(f"no NetworkPolicy {DENY_ALL_POLICY} in the namespace")
    elif not is_deny_all(deny):
        problems.append(f"NetworkPolicy {DENY_ALL_POLICY} is not the deny-all (its content was changed)")
    # The judgement isolation makes, by content (see ``reopens``): a policy on the quarantine label itself, or any
    # other that selects the quarantined pod and allows something, breaks the isolation.
    problems.extend(
        f"NetworkPolicy {p.name} selects the pod and does not exclude quarantined pods"
        for p in listed
        if p.name != DENY_ALL_POLICY and reopens(p, pod.labels)
    )
    return problems
