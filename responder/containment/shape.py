"""The shapes the quarantine gives NetworkPolicies, in one place: the deny-all (today's and every earlier version's)
and the ``NotIn`` exclusion term it needs in the namespace's other policies.

Everything that needs the deny-all's shape derives it from here: the body isolation writes (``deny_all_body``), the
judgement that it is intact (``is_deny_all``: the current shape, what isolation and convergence require), the
recognition of what any version of the responder wrote (``known_shape``: what ``release`` deletes and ``status``
names), and, checked by tests/unit/test_shape.py, the admission guard's ``isExactDenyAll`` clause and the fixtures in
tests/fixtures/admission/deny-all.yaml (generated from ``CURRENT`` by tests/support/deny_all_fixtures.py).

Content is compared on the spec as the apiserver returns it (``normalised_spec``), never on the name alone: anyone
who can write NetworkPolicies in a namespace can create one under the deny-all's name, and the responder must neither
trust nor delete that squatter as its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from responder.containment.keys import DENY_ALL_POLICY, MANAGED_BY, QUARANTINE_LABEL
from responder.ports import LabelSelector, LabelSelectorRequirement, NetworkPolicyView

# The fields of networking.k8s.io/v1 NetworkPolicySpec that the deny-all may hold (its rule lists only empty): any
# other field is content the responder never wrote, so it is not the deny-all.
SPEC_FIELDS = ("podSelector", "policyTypes", "ingress", "egress")


@dataclass(frozen=True)
class DenyAllShape:
    """One version of the deny-all: what the responder wrote, and which versions of it wrote that."""

    version: int
    written_by: str  # the responder versions (and commits) that wrote this shape, so the table can be audited
    name: str
    selects: Mapping[str, str]  # spec.podSelector.matchLabels, the whole selector
    policy_types: tuple[str, ...]  # every direction it governs; it has no rule in any, so it denies them all
    # Labels it carries. Others may sit beside them: replacing a squatter keeps the squatter's own labels (since
    # 89a7b78), so these are required, not exclusive (as the guard's isExactDenyAll has them).
    labels: Mapping[str, str]

    def spec(self) -> dict[str, Any]:
        """The spec as the responder writes it (a fresh copy: callers hand it to the API)."""
        return {"podSelector": {"matchLabels": dict(self.selects)}, "policyTypes": list(self.policy_types)}

    def body(self) -> dict[str, Any]:
        """The whole object as the responder creates it."""
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": self.name, "labels": dict(self.labels)},
            "spec": self.spec(),
        }

    @property
    def exclusion(self) -> LabelSelectorRequirement:
        """The term that keeps the pods this deny-all selects out of an allowing policy (``NotIn`` their label)."""
        ((key, value),) = self.selects.items()  # one label: a NotIn on it excludes exactly what this selects
        return LabelSelectorRequirement(key=key, operator="NotIn", values=(value,))

    def matches(self, policy: NetworkPolicyView) -> bool:
        """``policy`` is this shape by content: its name, its normalised spec, the labels it must carry."""
        return (
            policy.name == self.name
            and normalised_spec(policy.spec) == normalised_spec(self.spec())
            and all(policy.labels.get(k) == v for k, v in self.labels.items())
        )


def normalised_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` as the apiserver stores and returns it, so that equal content compares equal: empty lists and maps
    left out (the API's omitempty: ``ingress: []`` is no rule), ``policyTypes`` defaulted when absent (Ingress, and
    Egress when there are egress rules, as the API does) and compared as the set it means. Every other field is kept
    as it is, so a field the responder never writes makes the spec unequal."""
    out = {k: v for k, v in spec.items() if not _empty(v)}  # compared, never changed: no copy needed
    selector = spec.get("podSelector") or {}
    out["podSelector"] = (
        {k: v for k, v in selector.items() if not _empty(v)} if isinstance(selector, Mapping) else selector
    )
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    out["policyTypes"] = sorted(str(t) for t in types) if isinstance(types, list | tuple) else types
    return out


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | tuple | dict) and not value)


# ------------------------------------------------------------------------------------------------ the table

V1 = DenyAllShape(
    version=1,
    written_by=(
        "responder 0.1.0: every commit from 24672bd (2026-11-28, created only) on; from 89a7b78 (2026-12-01) also "
        "written over a squatter, keeping its other labels"
    ),
    name=DENY_ALL_POLICY,
    selects={QUARANTINE_LABEL: "true"},
    policy_types=("Ingress", "Egress"),
    labels=dict(MANAGED_BY),
)

# What isolation writes today, and the only shape that counts as an intact isolation.
CURRENT = V1

# Every shape any version of the responder wrote, newest first. An entry never leaves: a namespace keeps an older
# deny-all for as long as one of its pods stays quarantined across an upgrade, and release deletes only what it
# recognises here (a policy under the name that matches no entry is a squatter, and stays). So far there is one:
# the name, the label, the selector and the policy types have not changed since the first commit (git log -S on
# DENY_ALL_SPEC, deny_all_body, rsr-quarantine-deny-all and managed-by). A new shape goes first, as CURRENT; the
# guard's isExactDenyAll and the generated fixtures follow it (tests/unit/test_shape.py says where they differ).
SHAPES: tuple[DenyAllShape, ...] = (V1,)


def deny_all_body() -> dict[str, Any]:
    """The deny-all as isolation creates it: selects quarantined pods, allows nothing in either direction."""
    return CURRENT.body()


def is_deny_all(policy: NetworkPolicyView) -> bool:
    """``policy`` is today's deny-all by content (not merely by name): what an intact isolation needs."""
    return CURRENT.matches(policy)


def known_shape(policy: NetworkPolicyView) -> DenyAllShape | None:
    """The version of the deny-all ``policy`` is, by content, if any version of the responder wrote it; None for
    anything else (a squatter under the name, or another policy)."""
    return next((shape for shape in SHAPES if shape.matches(policy)), None)


def deny_all_names() -> frozenset[str]:
    """The names any version gave its deny-all: release never edits a policy under one of them as an allowing one."""
    return frozenset(shape.name for shape in SHAPES)


def responders_deny_alls(policies: Iterable[NetworkPolicyView]) -> list[tuple[NetworkPolicyView, DenyAllShape]]:
    """The deny-alls among ``policies`` that a version of the responder wrote, each with its shape."""
    return [(p, shape) for p in policies if (shape := known_shape(p)) is not None]


# ---------------------------------------------------------------------------------------------- the exclusion

# The term isolation appends to an allowing policy's selector, so quarantined pods leave it.
EXCLUSION = CURRENT.exclusion


def with_exclusion(selector: LabelSelector) -> LabelSelector:
    """The selector with the exclusion appended, as isolation writes it."""
    return selector.model_copy(update={"match_expressions": (*selector.match_expressions, EXCLUSION)})


def has_exclusion(policy: NetworkPolicyView) -> bool:
    """The policy carries the exclusion of any version's deny-all (release removes each of them)."""
    terms = {shape.exclusion for shape in SHAPES}
    return any(e in terms for e in policy.pod_selector.match_expressions)


def without_exclusion(selector: LabelSelector) -> LabelSelector:
    """The selector as it was before isolation appended an exclusion (every copy of every version's removed)."""
    terms = {shape.exclusion for shape in SHAPES}
    kept = tuple(e for e in selector.match_expressions if e not in terms)
    return selector.model_copy(update={"match_expressions": kept})
