"""The responder's NetworkPolicy judgements and writes, shared by isolation, the duplicate check and release.

NetworkPolicies are additive: a deny-all policy does not override another policy that allows traffic to the same pod.
So isolation needs three things, all judged by content, never by name: the deny-all itself (``ensure_deny_all``; its
shape and ``is_deny_all`` live in ``shape``), which policies allow anything (``allows_traffic``), and which of those
would reopen a quarantined pod (``reopens``), each of which gets the ``NotIn`` exclusion (``exclude``). Whether a
namespace's policies hold a quarantined pod is one judgement (``gaps``), made alike by isolation's re-check, the
redelivery's convergence check and ``status``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from responder.containment.context import DenyAllState
from responder.containment.shape import CURRENT, deny_all_body, is_deny_all, known_shape, with_exclusion
from responder.errors import Conflict, DenyAllNotEnsured, IsolationNotEnsured, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.ports import KubePort, NetworkPolicyView

CONFLICT_ATTEMPTS = 5


def ensure_deny_all(
    kube: KubePort, namespace: str, listed: Future[list[NetworkPolicyView]] | None = None
) -> DenyAllState:
    """Make the deny-all policy exist with exactly the intended content; returns what was done.

    Idempotent and safe against concurrent instances (create; on 409 read it and judge its content; replace a squatter
    optimistically). Raises :class:`DenyAllNotEnsured` when the server keeps answering with something else.
    ``listed``: the namespace's policies, read in the same round as the create. When the create finds the policy
    already there (a second incident in the namespace) and that read shows it intact, its content is judged from that
    read, which saves a round; anything else is judged from a fresh read, as before.
    """
    where = f"{namespace}/{CURRENT.name}"
    for _ in range(CONFLICT_ATTEMPTS):
        try:
            made = kube.create_network_policy(namespace, deny_all_body())
        except Conflict:
            seen = _listed_deny_all(listed)
            listed = None  # used once: a second conflict is judged on a fresh read
            if seen is not None and is_deny_all(seen):
                return DenyAllState(False, f"NetworkPolicy {where} (deny all ingress and egress) in place")
            existing = next((p for p in kube.list_network_policies(namespace) if p.name == CURRENT.name), None)
            if existing is None:
                continue  # deleted between our create and our read: create again
            if is_deny_all(existing):
                return DenyAllState(False, f"NetworkPolicy {where} (deny all ingress and egress) in place")
            with contextlib.suppress(Conflict, NotFound):  # changed or deleted under us: judge it again
                fixed = kube.replace_network_policy(
                    namespace,
                    CURRENT.name,
                    CURRENT.spec(),
                    {**existing.labels, **CURRENT.labels},  # the squatter's own labels stay: only its content was wrong
                    existing.resource_version,
                )
                if is_deny_all(fixed):
                    return DenyAllState(True, f"replaced {replaced(where, existing)} with the deny-all")
            continue
        if is_deny_all(made):
            return DenyAllState(True, f"created NetworkPolicy {where} (deny all ingress and egress)")
        raise DenyAllNotEnsured(f"the server stored {where} as {describe(made)}, not as a deny-all")
    raise DenyAllNotEnsured(f"could not ensure the deny-all {where} after {CONFLICT_ATTEMPTS} attempts")


def _listed_deny_all(listed: Future[list[NetworkPolicyView]] | None) -> NetworkPolicyView | None:
    if listed is None:
        return None
    try:
        return next((p for p in listed.result() if p.name == CURRENT.name), None)
    except ResponderError:
        return None


def replaced(where: str, existing: NetworkPolicyView) -> str:
    """What ``existing``, under the deny-all's name but not today's deny-all, is when isolation writes over it: an
    older version's deny-all (an upgrade, nothing to worry about) or an impostor (someone else's content)."""
    shape = known_shape(existing)
    if shape is not None:
        return f"the deny-all {where} of shape v{shape.version} (an older responder's)"
    return f"an impostor NetworkPolicy {where} (it was not the deny-all: {describe(existing)})"


def describe(policy: NetworkPolicyView) -> str:
    spec = policy.spec
    return clean(
        f"podSelector={json.dumps(spec.get('podSelector') or {}, sort_keys=True)}, "
        f"policyTypes={list(spec.get('policyTypes') or [])}, ingress rules={len(spec.get('ingress') or [])}, "
        f"egress rules={len(spec.get('egress') or [])}, labels={json.dumps(policy.labels, sort_keys=True)}",
        300,
    )


def allows_traffic(policy: NetworkPolicyView) -> bool:
    """Whether the policy lets anything through: a rule in a direction it governs (``policyTypes``; when absent,
    Ingress, and Egress if it has egress rules, as the API defaults them).

    Only such a policy can reopen a quarantined pod past the deny-all (NetworkPolicies are additive), so only such a
    policy is given the ``NotIn`` exclusion. On a policy that allows nothing (a default-deny) the exclusion would
    only take quarantined pods out of a deny; the admission guard refuses it there.
    """
    spec = policy.spec
    types = spec.get("policyTypes") or policy.policy_types
    ingress = bool(spec.get("ingress")) and (not types or "Ingress" in types)
    egress = bool(spec.get("egress")) and (not types or "Egress" in types)
    return ingress or egress


def quarantined_views(labels: Mapping[str, str]) -> list[dict[str, str]]:
    """The label sets a quarantined pod is judged by: its own labels with the quarantine label, and the quarantine
    label alone (what is left once detach, or anyone, removes the others)."""
    return [{**labels, **CURRENT.selects}, dict(CURRENT.selects)]


def reopens(policy: NetworkPolicyView, labels: Mapping[str, str]) -> bool:
    """Whether ``policy`` would let traffic reach or leave the pod with ``labels`` once (or while) it is quarantined.

    Judged by content alone: any policy other than the responder's deny-all that allows something and whose selector
    matches the quarantined pod, whatever the selector is made of (``matchLabels`` on the quarantine label itself,
    ``Exists``, ``In``, ``DoesNotExist`` on a label detach removes, the empty selector). NetworkPolicies are additive,
    so any such policy would open a hole in the deny-all. Its ``NotIn`` exclusion makes it match no quarantined pod.
    """
    if is_deny_all(policy):
        return False
    return allows_traffic(policy) and any(policy.pod_selector.matches(v) for v in quarantined_views(labels))


@dataclass(frozen=True, slots=True)
class Gaps:
    """What keeps a namespace's policies from holding a quarantined pod: ``deny_all`` is the policy under the
    deny-all's name (None: none), ``intact`` whether it is the deny-all by content, ``reopening`` every other policy
    that would let traffic reach or leave the pod (see :func:`reopens`)."""

    deny_all: NetworkPolicyView | None
    intact: bool
    reopening: list[NetworkPolicyView]

    @property
    def none(self) -> bool:
        """The isolation holds: the deny-all is intact and nothing reopens the pod."""
        return self.intact and not self.reopening


def gaps(policies: Iterable[NetworkPolicyView], labels: Mapping[str, str]) -> Gaps:
    """Judge the namespace's ``policies`` for a pod with ``labels`` (with or without the quarantine label)."""
    listed = list(policies)
    deny_all = next((p for p in listed if p.name == CURRENT.name), None)
    reopening = [p for p in listed if p.name != CURRENT.name and reopens(p, labels)]
    return Gaps(deny_all, deny_all is not None and is_deny_all(deny_all), reopening)


def exclude(kube: KubePort, namespace: str, policy: NetworkPolicyView, labels: Mapping[str, str]) -> None:
    """Append the exclusion and judge what the server stored: isolation fails loudly rather than trust the write."""
    stored = kube.set_network_policy_selector(
        namespace, policy.name, with_exclusion(policy.pod_selector), policy.resource_version
    )
    if reopens(stored, labels):
        raise IsolationNotEnsured(
            f"NetworkPolicy {namespace}/{policy.name} still selects the quarantined pod after its exclusion was "
            f"written ({describe(stored)})"
        )
