"""The tier above the namespace: which cluster-scoped (or non-core) network policy kinds the cluster serves, what
each of them does to the quarantined pod, and whether isolation holds there too.

The namespaced deny-all is the layer every cluster has; a hardened cluster usually has policy above it, and an allow
there (a platform team's "always allow egress to the proxy" guardrail, or a rule an attacker added) can let traffic
reach or leave the pod whatever the deny-all says. This module reads every such kind the cluster serves (API
discovery, cached with the connection) and judges each policy by content (``cluster_judge``). It runs behind the
isolating writes, never before them: the writes are the containment, this is the check that the record may say so.

Where the cluster serves ClusterNetworkPolicy, the static Admin-tier deny (deploy/kubernetes/cluster-quarantine.yaml,
installed by the platform team, never written by the responder) is what holds the pod ahead of any Admin ``Accept``
at a worse priority; it is recognised by content, like the deny-all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from responder.containment import cluster_judge as judge
from responder.containment.cluster_judge import Subject, Tagged, Verdict
from responder.containment.keys import QUARANTINE_LABEL
from responder.errors import Forbidden, NotFound, PermanentError, ResponderError
from responder.intake.sanitize import clean
from responder.ports import KubePort, KubeRead, NamespaceView, PodView


@dataclass(frozen=True, slots=True)
class Kind:
    """A policy kind the judgement knows: where it is served and which project's semantics judge it."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool
    family: str  # npa | cilium | calico

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}"


KINDS = (
    Kind("ClusterNetworkPolicy", "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies", False, "npa"),
    Kind("AdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", False, "npa"),
    Kind(
        "BaselineAdminNetworkPolicy",
        "policy.networking.k8s.io",
        "v1alpha1",
        "baselineadminnetworkpolicies",
        False,
        "npa",
    ),
    Kind("CiliumClusterwideNetworkPolicy", "cilium.io", "v2", "ciliumclusterwidenetworkpolicies", False, "cilium"),
    Kind("CiliumNetworkPolicy", "cilium.io", "v2", "ciliumnetworkpolicies", True, "cilium"),
    Kind("GlobalNetworkPolicy", "projectcalico.org", "v3", "globalnetworkpolicies", False, "calico"),
    Kind("Calico NetworkPolicy", "projectcalico.org", "v3", "networkpolicies", True, "calico"),
    # Calico without its API server keeps the same objects as CRDs; read only when the v3 API is not served.
    Kind("GlobalNetworkPolicy", "crd.projectcalico.org", "v1", "globalnetworkpolicies", False, "calico"),
    Kind("Calico NetworkPolicy", "crd.projectcalico.org", "v1", "networkpolicies", True, "calico"),
)
_JUDGES: dict[str, Callable[[Tagged, Subject], list[Verdict]]] = {
    "npa": judge.judge_npa,
    "cilium": judge.judge_cilium,
    "calico": judge.judge_calico,
}


def served(group_versions: frozenset[str]) -> list[Kind]:
    """The known kinds the cluster serves (Calico's CRD form only where its v3 API is not)."""
    kinds = [k for k in KINDS if k.group_version in group_versions]
    if any(k.group == "projectcalico.org" for k in kinds):
        kinds = [k for k in kinds if k.group != "crd.projectcalico.org"]
    return kinds


@dataclass(frozen=True)
class ClusterTier:
    """What the tier above the namespace does to the quarantined pod."""

    kinds: tuple[str, ...] = ()  # the policy kinds the cluster serves
    verdicts: tuple[Verdict, ...] = ()
    unread: tuple[tuple[str, str], ...] = ()  # (kind, why) served but not readable (403): nothing is ruled out there

    @property
    def reopening(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.reopens]

    @property
    def holding(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.holds]

    @property
    def reopened(self) -> bool:
        """Traffic may reach or leave the pod past the deny-all (or that cannot be ruled out)."""
        return bool(self.reopening or self.unread)

    def isolated_at(self) -> str:
        """Which tier holds the pod: the record's words."""
        if self.reopened:
            return "not held: " + self.why_open()
        if self.holding:
            names = ", ".join(f"{v.kind} {v.name}" for v in self.holding)
            return f"cluster tier ({names}) and namespace tier (NetworkPolicy deny-all)"
        return "namespace tier (NetworkPolicy deny-all)"

    def why_open(self) -> str:
        parts = [v.line() for v in self.reopening]
        parts += [f"{k} could not be read ({why}): a reopening cannot be ruled out" for k, why in self.unread]
        return clean("; ".join(parts), 600)

    def details(self) -> dict[str, Any]:
        """What the isolate step's record carries about the tier above the namespace."""
        return {
            "isolated_at": self.isolated_at(),
            "cluster_policy_kinds": list(self.kinds),
            "cluster_policies": [v.line() for v in self.verdicts[:50]],
            **({"reopened_by": [v.line() for v in self.reopening]} if self.reopened else {}),
        }


def _list(kind: Kind, namespace: str) -> KubeRead:
    return KubeRead("list_objects", (kind.group, kind.version, kind.plural, namespace if kind.namespaced else None))


def _outcome(read: Future[Any]) -> object:
    """What the read returned, or the error it raised (handed back, not raised)."""
    try:
        return read.result()
    except Exception as exc:
        return exc


def read(
    kube: KubePort, pod: PodView, labels: Mapping[str, str], namespace_read: Future[NamespaceView] | None = None
) -> ClusterTier:
    """Discover the policy kinds the cluster serves, list each (together: one round), and judge every policy for the
    pod with ``labels`` (its own, without the quarantine label).

    The namespace's labels are needed only where a policy selects namespaces by a label other than
    ``kubernetes.io/metadata.name``, which the apiserver sets to the name on every namespace: ``namespace_read`` (as
    read alongside the pod) is then used, else the namespace is read after the lists, and only when one needs it.

    A kind that vanished between discovery and the list (404) is skipped; one the identity may not read (403, or
    another permanent refusal) is recorded as unread, and counts as a possible reopening: a refusal is never taken
    for "nothing there". So does a namespace whose labels cannot be read, since selectors match on them. A transient
    failure propagates, so the delivery is retried.
    """
    kinds = served(kube.served_group_versions())
    if not kinds:
        return ClusterTier()
    outcomes = [_outcome(listed) for listed in kube.read_together([_list(k, pod.namespace) for k in kinds])]
    namespace = _outcome(namespace_read) if namespace_read is not None else None
    unread: list[tuple[str, str]] = []
    by_family: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for kind, outcome in zip(kinds, outcomes, strict=True):
        if isinstance(outcome, NotFound):
            continue
        if isinstance(outcome, Forbidden | PermanentError):
            unread.append((f"{kind.kind} ({kind.group_version})", clean(outcome, 160)))
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, list)
        by_family.setdefault(kind.family, []).extend((kind.kind, o) for o in outcome)
    if namespace is None and any(judge.needs_namespace_labels(f, tagged) for f, tagged in by_family.items()):
        namespace = _outcome(kube.read_together([KubeRead("get_namespace", (pod.namespace,))])[0])
    if isinstance(namespace, Forbidden | PermanentError | NotFound):
        unread.insert(0, (f"Namespace {pod.namespace}", clean(namespace, 160)))
    elif isinstance(namespace, BaseException):
        raise namespace
    who = Subject(
        namespace=pod.namespace,
        labels=labels,
        namespace_labels=namespace.labels if isinstance(namespace, NamespaceView) else {},
        service_account=pod.service_account,
    )
    verdicts = [v for family, tagged in by_family.items() for v in _JUDGES[family](tagged, who)]
    names = tuple(dict.fromkeys(f"{k.kind} ({k.group_version})" for k in kinds))
    return ClusterTier(names, tuple(verdicts), tuple(unread))


def reopened_now(kube: KubePort, pod: PodView) -> bool:
    """Whether the tier above the namespace lets the quarantined ``pod``'s traffic through now, for a redelivery's
    convergence check: a cluster-wide allow added since the isolation means the delivery is handled in full (the
    isolate step judges again, and the live-session rule runs). What cannot be read counts as reopened. Costs
    nothing where no such kind is served (discovery is cached), else one round (each kind at once), and a second (the
    namespace) only where a policy selects namespaces by a label other than their name."""
    labels = {k: v for k, v in pod.labels.items() if k != QUARANTINE_LABEL}
    try:
        return read(kube, pod, labels).reopened
    except ResponderError:
        return True
