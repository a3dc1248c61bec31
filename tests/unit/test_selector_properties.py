"""Property tests for isolation by content: generated selectors, judged as Kubernetes judges them.

The oracle is written from the Kubernetes label-selector documentation in its string form (``k=v``, ``k in (a,b)``,
``k notin (a)``, ``k``, ``!k``; every requirement must hold), independently of :meth:`LabelSelector.matches`. The same
generated selectors run against a real apiserver's label selection in tests/integration/test_trust.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from responder.aftercare.facts import policy_problems
from responder.containment.keys import DENY_ALL_POLICY, MANAGED_BY, QUARANTINE_LABEL
from responder.containment.netpol import reopens
from responder.containment.shape import CURRENT, with_exclusion
from responder.ports import LabelSelector, LabelSelectorRequirement, NetworkPolicyView, PodView

Q = QUARANTINE_LABEL
KEYS = ["app", "tier", Q]
VALUES = ["web", "db", "true", "false"]

requirements = st.builds(
    LabelSelectorRequirement,
    key=st.sampled_from(KEYS),
    operator=st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
    values=st.lists(st.sampled_from(VALUES), min_size=1, max_size=3, unique=True).map(tuple),
).map(lambda r: r if r.operator in ("In", "NotIn") else r.model_copy(update={"values": ()}))
selectors = st.builds(
    LabelSelector,
    match_labels=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
    match_expressions=st.lists(requirements, max_size=3).map(tuple),
)
label_sets = st.dictionaries(st.sampled_from(KEYS[:2]), st.sampled_from(VALUES), max_size=2)


def selector_string(selector: LabelSelector) -> str:
    """The selector in Kubernetes' string form, as ``kubectl -l`` and the API's labelSelector parameter take it."""
    terms = [f"{k}={v}" for k, v in selector.match_labels.items()]
    for r in selector.match_expressions:
        terms.append(
            {
                "In": f"{r.key} in ({','.join(r.values)})",
                "NotIn": f"{r.key} notin ({','.join(r.values)})",
                "Exists": r.key,
                "DoesNotExist": f"!{r.key}",
            }[r.operator]
        )
    return ",".join(terms)


def oracle(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes' documented semantics of the string form: every comma-separated requirement must hold."""
    if not selector:
        return True  # the empty selector selects everything
    terms, depth, current = [], 0, ""
    for ch in selector:  # split on commas outside parentheses
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    for term in terms:
        if " notin (" in term:
            key, rest = term.split(" notin (")
            if key in labels and labels[key] in rest.rstrip(")").split(","):
                return False
        elif " in (" in term:
            key, rest = term.split(" in (")
            if key not in labels or labels[key] not in rest.rstrip(")").split(","):
                return False
        elif "=" in term:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def policy(selector: LabelSelector, rules: bool = True) -> NetworkPolicyView:
    spec: dict[str, object] = {"podSelector": {}, "policyTypes": ["Ingress"]}
    if rules:
        spec["ingress"] = [{}]
    return NetworkPolicyView(namespace="shop", name="planted", pod_selector=selector, spec=spec)


@settings(max_examples=400, deadline=None)
@given(selectors, label_sets, st.booleans())
def test_selection_follows_kubernetes_semantics(
    selector: LabelSelector, labels: dict[str, str], quarantined: bool
) -> None:
    pod_labels = {**labels, Q: "true"} if quarantined else labels
    assert selector.matches(pod_labels) == oracle(selector_string(selector), pod_labels)


@settings(max_examples=400, deadline=None)
@given(selectors, label_sets)
def test_a_policy_reopens_the_pod_exactly_when_it_selects_it_quarantined_and_allows_something(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    as_string = selector_string(selector)
    selects = oracle(as_string, {**labels, Q: "true"}) or oracle(as_string, {Q: "true"})
    assert reopens(policy(selector), labels) == selects
    assert not reopens(policy(selector, rules=False), labels)  # allows nothing: nothing to reopen


@settings(max_examples=400, deadline=None)
@given(selectors, label_sets)
def test_the_exclusion_neutralises_any_selector_for_quarantined_pods_and_changes_nothing_for_others(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    excluded = selector_string(with_exclusion(selector))
    assert not oracle(excluded, {**labels, Q: "true"}) and not oracle(excluded, {Q: "true"})
    assert not reopens(policy(with_exclusion(selector)), labels)
    assert oracle(excluded, labels) == oracle(selector_string(selector), labels)  # pods outside quarantine: as before


@settings(max_examples=200, deadline=None)
@given(selectors, label_sets)
def test_status_judges_a_quarantined_pod_as_isolation_does(selector: LabelSelector, labels: dict[str, str]) -> None:
    pod = PodView(namespace="shop", name="web-1", uid="u1", labels={**labels, Q: "true"})
    deny = NetworkPolicyView(
        namespace="shop",
        name=DENY_ALL_POLICY,
        pod_selector=LabelSelector(match_labels={Q: "true"}),
        spec=CURRENT.spec(),
        labels=dict(MANAGED_BY),
    )
    problems = policy_problems(pod, [deny, policy(selector)])
    assert bool(problems) == reopens(policy(selector), labels)
