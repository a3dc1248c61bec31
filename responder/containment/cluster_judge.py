"""Whether a cluster-scoped (or non-core) network policy lets traffic reach or leave a quarantined pod despite the
namespace's deny-all: judged by content, per project, with the same care as the namespaced judgement (``netpol``).

Every judge answers for the pod as it will be once quarantined (``quarantined_views``: its labels with the
quarantine label, and the quarantine label alone), so a selector on the quarantine label itself counts. A selector or
rule the judge cannot read is assumed to select the pod when it would allow traffic, and never assumed to hold it
when it would deny: what cannot be read must not be taken for containment.

- **SIG Network's policy API** (``ClusterNetworkPolicy`` v1alpha2; the older ``AdminNetworkPolicy`` and
  ``BaselineAdminNetworkPolicy`` v1alpha1). The Admin tier is evaluated before NetworkPolicy: within it the first
  match by priority wins (lower number first; at equal priority the order is up to the implementation, so an equal
  priority counts against us). An ``Accept`` (``Allow``) that selects the pod reopens it unless a catch-all ``Deny``
  that selects it comes strictly first. The Baseline tier is evaluated after NetworkPolicy, and the deny-all selects
  the pod in both directions, so nothing there reaches it.
- **Cilium** (``CiliumClusterwideNetworkPolicy``, ``CiliumNetworkPolicy``): allow rules are additive across every
  policy, so any allow that selects the pod reopens it; deny rules (``ingressDeny``, ``egressDeny``) take precedence
  over every allow, so a catch-all deny that selects the pod holds that direction.
- **Calico** (``GlobalNetworkPolicy``, and Calico's own namespaced ``NetworkPolicy``): ordered by ``order``, the
  namespace's Kubernetes policies sit at order 1000 in the default tier, and a policy without a matching rule passes
  the packet on to the next one (the tier denies only at its end). So an ``Allow`` that selects the pod reopens it
  at any order, unless a catch-all ``Deny`` that selects it comes strictly first; a policy in another tier is counted
  as reopening (its tier's place is not read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from responder.containment import calico_selector
from responder.containment.netpol import quarantined_views
from responder.intake.sanitize import clean
from responder.ports import LabelSelector

DIRECTIONS = ("ingress", "egress")
ALL_V4, ALL_V6 = "0.0.0.0/0", "::/0"
NAME_LABEL = "kubernetes.io/metadata.name"  # set by the apiserver to the namespace's name, on every namespace


@dataclass(frozen=True, slots=True)
class Subject:
    """The quarantined pod as cluster-scoped policies see it: its own labels (without the quarantine label), its
    namespace and that namespace's labels, and its service account."""

    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]
    service_account: str | None = None

    def views(self) -> list[dict[str, str]]:
        return quarantined_views(self.labels)

    def namespace_view(self) -> dict[str, str]:
        return {**self.namespace_labels, NAME_LABEL: self.namespace}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One policy's verdict: ``reopens`` (traffic can reach or leave the quarantined pod past the deny-all), or
    ``holds`` (it denies all of the pod's traffic ahead of the namespace tier), with why, in words."""

    kind: str
    name: str
    why: str
    reopens: bool = False
    holds: bool = False

    def line(self) -> str:
        return clean(f"{self.kind} {self.name}: {self.why}", 400)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One rule of one policy, normalised across the projects: where it stands in its policy's evaluation order."""

    policy: str
    direction: str
    action: str  # accept | deny | pass | other
    rank: float  # the policy's priority/order: lower is evaluated first
    index: int  # the rule's place in its policy
    catch_all: bool
    label: str

    def first(self, other: _Rule) -> bool:
        """Whether this rule is certainly evaluated before ``other`` (an equal rank in another policy is not)."""
        if self.rank != other.rank:
            return self.rank < other.rank
        return self.policy == other.policy and self.index < other.index


def _named(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "?")
    return f"{meta['namespace']}/{name}" if meta.get("namespace") else name


def _label_selector(raw: Any, key: Callable[[str], str] = str) -> LabelSelector | None:
    """A Kubernetes label selector from JSON (keys mapped by ``key``), or None when it cannot be read."""
    if not isinstance(raw, Mapping):
        return LabelSelector() if raw is None else None
    try:
        return LabelSelector(
            match_labels={key(str(k)): str(v) for k, v in (raw.get("matchLabels") or {}).items()},
            match_expressions=tuple({**e, "key": key(str(e.get("key")))} for e in raw.get("matchExpressions") or ()),
        )
    except (ValidationError, AttributeError, TypeError):
        return None


def _matches(raw: Any, labels: Sequence[Mapping[str, str]], unreadable: bool, key: Callable[[str], str] = str) -> bool:
    selector = _label_selector(raw, key)
    if selector is None:
        return unreadable
    return any(selector.matches(view) for view in labels)


Tagged = Sequence[tuple[str, Mapping[str, Any]]]  # (kind, object as API JSON)


def _verdicts(
    objects: Sequence[tuple[str, str, bool]], rules: Sequence[_Rule], reopening: Mapping[str, list[str]]
) -> list[Verdict]:
    """Verdicts of ``objects`` (kind, name, selects the pod) from the rules that reopen and the catch-all denies."""
    out = []
    for kind, name, selects in objects:
        key = f"{kind} {name}"
        mine = [r for r in rules if r.policy == key]
        if key in reopening:
            out.append(Verdict(kind, name, "reopens the quarantined pod: " + "; ".join(reopening[key]), reopens=True))
        elif not selects:
            out.append(Verdict(kind, name, "does not select the quarantined pod"))
        elif all(any(r.catch_all and r.action == "deny" and r.direction == d for r in mine) for d in DIRECTIONS):
            out.append(Verdict(kind, name, "denies all of the quarantined pod's traffic first", holds=True))
        elif any(r.action == "accept" for r in mine):
            out.append(Verdict(kind, name, "its allowing rules are outranked by a deny of all the pod's traffic"))
        else:
            out.append(Verdict(kind, name, "selects the quarantined pod but allows nothing"))
    return out


def _ordered(rules: Sequence[_Rule], outranked_by: str) -> dict[str, list[str]]:
    """The accepting rules no catch-all deny certainly comes before, per policy (first match wins)."""
    reopening: dict[str, list[str]] = {}
    for rule in rules:
        if rule.action != "accept":
            continue
        denies = [d for d in rules if d.direction == rule.direction and d.action == "deny" and d.catch_all]
        if any(d.first(rule) for d in denies):
            continue
        reopening.setdefault(rule.policy, []).append(f"{rule.label} ({outranked_by})")
    return reopening


# ----------------------------------------------------------------------------------------- SIG Network's policy API
def needs_namespace_labels(family: str, objects: Tagged) -> bool:
    """Whether judging ``objects`` needs the pod's namespace labels beyond its name (:data:`NAME_LABEL`, which
    :meth:`Subject.namespace_view` always holds). SIG Network's kinds match namespace labels only in their subject, so
    theirs are looked at; Cilium's and Calico's selectors are not taken apart here: any of their objects needs them."""
    if family != "npa":
        return bool(objects)
    return any(_npa_namespace_keys((obj.get("spec") or {}).get("subject")) - {NAME_LABEL} for _, obj in objects)


def _npa_namespace_keys(subject: Any) -> set[str]:
    """The namespace label keys a SIG Network subject selects on; one that cannot be read stands for some other key."""
    unknown = {"\x00unreadable"}
    if not isinstance(subject, Mapping):
        return unknown
    pods = subject.get("pods")
    if "namespaces" in subject:
        selector = subject.get("namespaces")
    else:
        selector = pods.get("namespaceSelector") if isinstance(pods, Mapping) else None
    if selector is None:
        return set()
    if not isinstance(selector, Mapping) or set(selector) - {"matchLabels", "matchExpressions"}:
        return unknown
    labels, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or ()
    if not isinstance(labels, Mapping) or not isinstance(expressions, Sequence):
        return unknown
    return {str(k) for k in labels} | {str(e.get("key")) if isinstance(e, Mapping) else "" for e in expressions}


def _npa_selects(subject_raw: Any, who: Subject, unreadable: bool) -> bool:
    if not isinstance(subject_raw, Mapping):
        return unreadable
    namespace = [who.namespace_view()]
    if "namespaces" in subject_raw:
        return _matches(subject_raw.get("namespaces"), namespace, unreadable)
    pods = subject_raw.get("pods")
    if isinstance(pods, Mapping):
        return _matches(pods.get("namespaceSelector"), namespace, unreadable) and _matches(
            pods.get("podSelector"), who.views(), unreadable
        )
    return unreadable


def _empty_selector(raw: Any) -> bool:
    return isinstance(raw, Mapping) and not raw.get("matchLabels") and not raw.get("matchExpressions")


def _npa_catch_all(direction: str, rule: Mapping[str, Any]) -> bool:
    """A rule that matches all of the pod's traffic in that direction (no protocol filter; every peer)."""
    if rule.get("protocols") or rule.get("ports"):
        return False
    peers = [p for p in rule.get("from" if direction == "ingress" else "to") or () if isinstance(p, Mapping)]
    if direction == "ingress":  # in-cluster sources only: what comes from outside falls through to the deny-all
        return any(
            _empty_selector(p.get("namespaces"))
            or (
                isinstance(p.get("pods"), Mapping)
                and _empty_selector(p["pods"].get("namespaceSelector"))
                and _empty_selector(p["pods"].get("podSelector"))
            )
            for p in peers
        )
    networks = {str(n) for p in peers for n in p.get("networks") or ()}
    return {ALL_V4, ALL_V6} <= networks


def judge_npa(objects: Tagged, who: Subject) -> list[Verdict]:
    """ClusterNetworkPolicy (``tier``), AdminNetworkPolicy (Admin) and BaselineAdminNetworkPolicy (Baseline)."""
    admin: list[tuple[str, str, bool]] = []
    rules: list[_Rule] = []
    out: list[Verdict] = []
    for kind, obj in objects:
        name, spec = _named(obj), obj.get("spec") or {}
        tier = "Baseline" if kind == "BaselineAdminNetworkPolicy" else str(spec.get("tier") or "Admin")
        if tier == "Baseline":
            selects = _npa_selects(spec.get("subject"), who, unreadable=False)
            why = (
                "Baseline tier, evaluated after the namespace's deny-all, which decides first"
                if selects
                else "does not select the quarantined pod"
            )
            out.append(Verdict(kind, name, why))
            continue
        priority = spec.get("priority")
        rank = float(priority) if isinstance(priority, int) and not isinstance(priority, bool) else -1.0
        selects_open = _npa_selects(spec.get("subject"), who, unreadable=True)
        selects_hold = _npa_selects(spec.get("subject"), who, unreadable=False)
        admin.append((kind, name, selects_open))
        for direction in DIRECTIONS:
            for index, rule in enumerate(spec.get(direction) or ()):
                if not isinstance(rule, Mapping):
                    continue
                action = {"Accept": "accept", "Allow": "accept", "Deny": "deny", "Pass": "pass"}.get(
                    str(rule.get("action")), "other"
                )
                if (action == "accept" and not selects_open) or (action != "accept" and not selects_hold):
                    continue
                label = f"{direction} rule {rule.get('name') or index} ({rule.get('action')}, priority {priority})"
                catch_all = action == "deny" and rank >= 0 and _npa_catch_all(direction, rule)
                rules.append(_Rule(f"{kind} {name}", direction, action, rank, index, catch_all, label))
    reopening = _ordered(rules, "no Admin-tier deny of all the pod's traffic comes first")
    return _verdicts(admin, rules, reopening) + out


# ------------------------------------------------------------------------------------------------------------ Cilium
_CILIUM_SOURCES = ("k8s:", "any:")
_NOT_A_POD_LABEL = "\x00not-a-pod-label"


def _cilium_key(key: str) -> str:
    for prefix in _CILIUM_SOURCES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return _NOT_A_POD_LABEL if ":" in key.split("/", 1)[0] else key  # reserved:, cidr:, ... never label a pod


def _cilium_views(who: Subject) -> list[dict[str, str]]:
    extra = {
        "io.kubernetes.pod.namespace": who.namespace,
        **{f"io.cilium.k8s.namespace.labels.{k}": v for k, v in who.namespace_view().items()},
    }
    if who.service_account:
        extra["io.cilium.k8s.policy.serviceaccount"] = who.service_account
    return [{**view, **extra} for view in who.views()]


def _cilium_catch_all(direction: str, rule: Mapping[str, Any]) -> bool:
    if rule.get("toPorts") or rule.get("icmps"):
        return False
    entities = {str(e) for e in rule.get("fromEntities" if direction == "ingress" else "toEntities") or ()}
    return "all" in entities or {"cluster", "world"} <= entities


def judge_cilium(objects: Tagged, who: Subject) -> list[Verdict]:
    """CiliumClusterwideNetworkPolicy and CiliumNetworkPolicy, judged together: a deny in one outranks an allow in
    any other."""
    views = _cilium_views(who)
    rules: list[_Rule] = []
    named: list[tuple[str, str, bool]] = []
    for kind, obj in objects:
        name = _named(obj)
        specs = [obj["spec"]] if isinstance(obj.get("spec"), Mapping) else []
        specs += [s for s in obj.get("specs") or () if isinstance(s, Mapping)]
        selects = False
        for spec in specs:
            if "endpointSelector" not in spec and "nodeSelector" in spec:
                continue  # a host policy: it selects nodes, not pods
            opens = _matches(spec.get("endpointSelector"), views, unreadable=True, key=_cilium_key)
            holds = _matches(spec.get("endpointSelector"), views, unreadable=False, key=_cilium_key)
            selects = selects or opens
            for direction in DIRECTIONS:
                for index, rule in enumerate(spec.get(direction) or ()):
                    if opens and isinstance(rule, Mapping) and rule:
                        label = f"{direction} allow rule {index}"
                        rules.append(_Rule(f"{kind} {name}", direction, "accept", 1.0, index, False, label))
                for index, rule in enumerate(spec.get(f"{direction}Deny") or ()):
                    if holds and isinstance(rule, Mapping):
                        catch_all = _cilium_catch_all(direction, rule)
                        rules.append(
                            _Rule(
                                f"{kind} {name}", direction, "deny", 0.0, index, catch_all, f"{direction} deny {index}"
                            )
                        )
        named.append((kind, name, selects))
    return _verdicts(named, rules, _ordered(rules, "allow rules add up, and no deny of all its traffic"))


# ------------------------------------------------------------------------------------------------------------ Calico
def _calico_views(who: Subject) -> tuple[list[dict[str, str]], dict[str, str]]:
    namespace = who.namespace_view()
    extra = {
        "projectcalico.org/namespace": who.namespace,
        "projectcalico.org/orchestrator": "k8s",
        **{f"pcns.{k}": v for k, v in namespace.items()},
    }
    if who.service_account:
        extra["projectcalico.org/serviceaccount"] = who.service_account
    return [{**v, **extra} for v in who.views()], {**namespace, "projectcalico.org/name": who.namespace}


def _calico_selects(spec: Mapping[str, Any], who: Subject, unreadable: bool) -> bool:
    views, namespace = _calico_views(who)
    try:
        pods = calico_selector.parse(spec.get("selector"))
        namespaces = calico_selector.parse(spec.get("namespaceSelector"))
    except calico_selector.SelectorError:
        return unreadable
    return namespaces(namespace) and any(pods(v) for v in views)


def _calico_types(spec: Mapping[str, Any]) -> set[str]:
    types = spec.get("types")
    if isinstance(types, list) and types:
        return {str(t).lower() for t in types}
    return {"ingress"} | ({"egress"} if spec.get("egress") else set())


def _calico_catch_all(rule: Mapping[str, Any]) -> bool:
    return all(k in ("action", "metadata") or not rule[k] for k in rule)


def judge_calico(objects: Tagged, who: Subject) -> list[Verdict]:
    """Calico's GlobalNetworkPolicy and namespaced NetworkPolicy, judged together (one order across both)."""
    rules: list[_Rule] = []
    named: list[tuple[str, str, bool]] = []
    elsewhere: dict[str, list[str]] = {}
    for kind, obj in objects:
        name, spec = _named(obj), obj.get("spec") or {}
        if spec.get("doNotTrack") or spec.get("preDNAT"):
            named.append((kind, name, False))  # host endpoints only
            continue
        opens, holds = _calico_selects(spec, who, True), _calico_selects(spec, who, False)
        named.append((kind, name, opens))
        order = spec.get("order")
        rank = float(order) if isinstance(order, int | float) and not isinstance(order, bool) else float("inf")
        tier = str(spec.get("tier") or "default")
        for direction in _calico_types(spec) & set(DIRECTIONS):
            for index, rule in enumerate(spec.get(direction) or ()):
                if not isinstance(rule, Mapping):
                    continue
                action = {"Allow": "accept", "Deny": "deny", "Pass": "pass"}.get(str(rule.get("action")), "other")
                label = f"{direction} rule {index} ({rule.get('action')}, order {order})"
                if action == "accept" and opens and tier != "default":
                    elsewhere.setdefault(f"{kind} {name}", []).append(
                        f"{label} in tier {tier}, whose place is not read"
                    )
                elif (action == "accept" and opens) or (action != "accept" and holds and tier == "default"):
                    catch_all = action == "deny" and _calico_catch_all(rule)
                    rules.append(_Rule(f"{kind} {name}", direction, action, rank, index, catch_all, label))
    reopening = _ordered(rules, "a policy without a matching rule passes the packet on; no deny of all comes first")
    for name, why in elsewhere.items():
        reopening.setdefault(name, []).extend(why)
    return _verdicts(named, rules, reopening)
