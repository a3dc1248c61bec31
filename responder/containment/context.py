"""What an action runs with: its context (the cluster, the pod, the finding, the event's pools and reads under way),
the evidence it fills in, and the one pod patch every quarantining action shares.

An action is idempotent (delivery is at-least-once and many instances run at once), names what it creates
deterministically, and in dry-run computes the same decisions without writing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from responder.containment.budget import BudgetDecision
from responder.containment.enforcement import Enforcement, resolve
from responder.containment.keys import (
    ACTIONS_ANNOTATION,
    AT_ANNOTATION,
    FINDING_ANNOTATION,
    PRIOR_FINDING_ANNOTATION,
    QUARANTINE_LABEL,
)
from responder.containment.scheduling import WritesOut, at_once, attempt
from responder.errors import ResponderError
from responder.intake.findings import Finding
from responder.intake.triage import Target
from responder.ports import ClusterInfo, KubePort, NamespaceView, NetworkPolicyView, PodView, WorkloadView

T = TypeVar("T")


@dataclass
class Evidence:
    """Volatile evidence captured before anything destructive; goes into the incident report."""

    manifest: dict[str, Any] | None = None
    owner_chain: list[dict[str, Any]] = field(default_factory=list)
    logs: str | None = None
    process_tree: str | None = None
    sockets: list[dict[str, str | int]] | None = None  # the container's TCP sockets (/proc/net/tcp, tcp6)
    # The finding's own connection among them (matched on its Src/Dst), and whether it was open: the reverse shell's.
    shell_connection: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DenyAllState:
    """The deny-all policy is in place with the intended content; ``changed`` when this call created or repaired it."""

    changed: bool
    what: str


@dataclass(frozen=True)
class Prefetched:
    """Work started alongside the pod read, so that containment's first round is already done when it begins."""

    policies: Future[list[NetworkPolicyView]] | None = None  # the namespace's NetworkPolicies
    deny_all: Future[DenyAllState] | None = None  # the (inert) deny-all policy, ensured when isolation is certain
    pod_facts: Future[tuple[object, float]] | None = None  # the investigation's read of the pod and its owner chain
    namespace: Future[NamespaceView] | None = None  # the pod's namespace (its exemption label; the tier above reads it)

    def listed_policies(self) -> list[NetworkPolicyView] | None:
        """The namespace's NetworkPolicies as read alongside the pod; None when there is no such read or it failed
        (then the caller simply reads again)."""
        return _result(self.policies)


def _result(future: Future[T] | None) -> T | None:
    if future is None:
        return None
    try:
        return future.result()
    except ResponderError:
        return None


@dataclass
class ActionContext:
    """Everything an action may use. ``pod`` is read once per event and refreshed by actions that write it."""

    kube: KubePort
    target: Target
    finding: Finding
    dry_run: bool
    pod: PodView
    cluster_info: ClusterInfo | None = None
    evidence: Evidence = field(default_factory=Evidence)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    pool: Executor | None = None
    prefetched: Prefetched = field(default_factory=Prefetched)
    planned: tuple[str, ...] = ()
    # Takes one slot of the blast-radius budget: called by an action that declares ``budgeted``, after its own guards
    # passed; raises when the budget cannot be read (which refuses the action: the budget fails closed). None: no
    # budget here (dry-run, tests).
    charge_budget: Callable[[], BudgetDecision] | None = None
    process_capture: bool = True  # False when the operator withheld pods/exec (RESPONDER_PROCESS_CAPTURE=false)
    # Opened once the isolating writes are on the wire (see WritesOut): evidence and the investigation start then.
    writes_out: WritesOut = field(default_factory=WritesOut)
    # What the cluster's NetworkPolicy dataplane does to established connections (RESPONDER_NETPOL_ENFORCEMENT);
    # None: read from the cluster (``auto``).
    enforcement: Enforcement | None = None
    # The responder's own namespace (RESPONDER_BUDGET_NAMESPACE): the budget Lease and the quarantined identities.
    own_namespace: str = "responder-system"

    def quarantined(self) -> bool:
        """The pod carries the quarantine label (as last read or written)."""
        return self.pod.labels.get(QUARANTINE_LABEL) == "true"

    def netpol(self) -> Enforcement:
        """The enforcement in force: as configured, else from the GKE metadata (new-only when there is none)."""
        return self.enforcement or resolve("auto", self.cluster_info)

    def prefetched_policies(self) -> list[NetworkPolicyView] | None:
        """The namespace's NetworkPolicies as read alongside the pod (see :meth:`Prefetched.listed_policies`)."""
        return self.prefetched.listed_policies()

    def deny_all_ensured(self) -> DenyAllState | None:
        """What ensuring the deny-all alongside the pod read did (it is then in place, content checked), or None
        when that was not tried or failed (the action then ensures it itself, and fails if it cannot)."""
        return _result(self.prefetched.deny_all)

    def owner_chain(self) -> list[WorkloadView] | None:
        """The owner chain the investigation read for this pod, or None (then the caller reads it itself)."""
        facts = _result(self.prefetched.pod_facts)
        if facts is None:
            return None
        value, _ = facts
        if not isinstance(value, tuple) or not isinstance(value[0], PodView) or value[0].uid != self.pod.uid:
            return None  # read a different pod (replaced meanwhile): not evidence about this one
        return list(value[1])

    def start(self, call: Callable[[], object]) -> Future[object]:
        """Send one call now and go on (inline without a pool); its outcome as :meth:`run_concurrently` gives it."""
        future: Future[object] = Future()
        if self.pool is None:
            future.set_result(attempt(call))
            return future
        return self.pool.submit(attempt, call)

    def run_concurrently(self, calls: list[Callable[[], object]]) -> list[object]:
        """Run independent calls at once (sequentially without a pool): what each returned, or its error (a
        :class:`ResponderError`, returned, not raised, so that one failure does not hide the others' outcomes)."""
        return at_once(self.pool, calls)

    def quarantine(
        self, remove_labels: Iterable[str] = (), annotations: Mapping[str, str] | None = None
    ) -> tuple[bool, str]:
        """The one pod patch: quarantine label, the record annotations, and optionally labels removed (detach).

        Shared by ``label``, ``isolate`` and ``detach`` so the pod is written once per finding, whichever runs first;
        a pod that already carries the label and this finding's record is left alone. The patch carries the pod's
        UID as a precondition. Returns (changed, what); :attr:`pod` becomes the patched pod.
        """
        pod = self.pod
        removed = [k for k in remove_labels if k in pod.labels and k != QUARANTINE_LABEL]
        labelled = pod.labels.get(QUARANTINE_LABEL) == "true"
        recorded = pod.annotations.get(FINDING_ANNOTATION) == (self.finding.name or "")
        if labelled and recorded and not removed and not annotations:
            return False, "pod already carries the quarantine label and this finding's record"

        def describe(done: bool) -> str:
            if labelled:
                return f"{'recorded' if done else 'record'} the finding on pod {pod.name} (already quarantined)"
            return f"{'labelled' if done else 'label'} pod {pod.name} {QUARANTINE_LABEL}=true"

        if self.dry_run:
            return True, describe(done=False)
        new_annotations: dict[str, str | None] = {
            **self.record(),
            ACTIONS_ANNOTATION: ",".join(self.planned) or "label",
        }
        prior = pod.annotations.get(FINDING_ANNOTATION)
        if labelled and prior and not recorded:
            new_annotations[PRIOR_FINDING_ANNOTATION] = prior
        new_annotations.update(annotations or {})
        # Removing labels (a detach) is conditional on the pod as it was judged, like every write that restores or
        # strips state; the plain quarantine merge is not (a resourceVersion would collide with every kubelet update).
        self.pod = self.kube.patch_pod_metadata(
            pod.namespace,
            pod.name,
            pod.uid,
            {QUARANTINE_LABEL: "true", **dict.fromkeys(removed)},
            new_annotations,
            resource_version=pod.resource_version if removed else None,
        )
        return True, describe(done=True)

    def record(self) -> dict[str, str]:
        """Annotations that tie the pod to the finding, for the humans who look at it later."""
        return {FINDING_ANNOTATION: self.finding.name or "", AT_ANNOTATION: self.now.isoformat(timespec="seconds")}
