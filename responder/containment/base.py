"""What every action shares: its result, its context, and the labels/annotations it writes.

An action is idempotent (delivery is at-least-once and many instances run at once), names what it creates
deterministically, and in dry-run computes the same decisions without writing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from responder.containment.budget import BudgetDecision
from responder.containment.enforcement import Enforcement, resolve
from responder.containment.scheduling import WritesOut
from responder.errors import Conflict, NotFound, ResponderError
from responder.intake.findings import Finding
from responder.intake.triage import Target
from responder.ports import ClusterInfo, KubePort, NetworkPolicyView, PodView, WorkloadView

T = TypeVar("T")


# Keys the responder writes. A domain of its own, so they can never collide with a workload's labels.
PREFIX = "responder.rsr.dev"
QUARANTINE_LABEL = f"{PREFIX}/quarantine"
FINDING_ANNOTATION = f"{PREFIX}/finding"
ACTIONS_ANNOTATION = f"{PREFIX}/actions"
AT_ANNOTATION = f"{PREFIX}/at"
ORIGINAL_LABELS_ANNOTATION = f"{PREFIX}/original-labels"
# The finding whose quarantine this pod carried when another finding's delivery recorded itself on it: a rollback
# of the later one (refuted by SCC) hands the quarantine back to it instead of lifting it.
PRIOR_FINDING_ANNOTATION = f"{PREFIX}/prior-finding"
# Left on a released pod (``release``): when, so that a redelivery of the finding it was released from is not acted on.
RELEASED_ANNOTATION = f"{PREFIX}/released-at"
DENY_ALL_POLICY = "rsr-quarantine-deny-all"
MANAGED_BY = {"app.kubernetes.io/managed-by": "reverse-shell-responder"}


class Status(StrEnum):
    """The three result states of every action."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"


class ActionResult(BaseModel):
    """One action's outcome, as it appears in the decision record."""

    model_config = ConfigDict(frozen=True)

    action: str
    status: Status
    reason: str
    dry_run: bool = False
    changes: tuple[str, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)


class ActionParams(BaseModel):
    """Base of every action's typed parameters; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Evidence:
    """Volatile evidence captured before anything destructive; goes into the incident report."""

    manifest: dict[str, Any] | None = None
    owner_chain: list[dict[str, Any]] = field(default_factory=list)
    logs: str | None = None
    process_tree: str | None = None
    sockets: list[dict[str, str | int]] | None = None  # the container's TCP sockets (/proc/net/tcp, tcp6)
    connection: dict[str, object] | None = None  # the finding's connection among them, and whether it was open
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
    # Takes one slot of the blast-radius budget, after an action's own guards passed; raises when the budget cannot
    # be read (which refuses the action: the budget fails closed). None: no budget here (dry-run, tests).
    charge_budget: Callable[[], BudgetDecision] | None = None
    process_capture: bool = True  # False when the operator withheld pods/exec (RESPONDER_PROCESS_CAPTURE=false)
    # Opened once the isolating writes are on the wire (see WritesOut): evidence and the investigation start then.
    writes_out: WritesOut = field(default_factory=WritesOut)
    # What the cluster's NetworkPolicy dataplane does to established connections (RESPONDER_NETPOL_ENFORCEMENT);
    # None: read from the cluster (``auto``).
    enforcement: Enforcement | None = None

    def netpol(self) -> Enforcement:
        """The enforcement in force: as configured, else from the GKE metadata (new-only when there is none)."""
        return self.enforcement or resolve("auto", self.cluster_info)

    def prefetched_policies(self) -> list[NetworkPolicyView] | None:
        """The namespace's NetworkPolicies as read alongside the pod; None when there is no such read or it failed
        (then the caller simply reads again)."""
        return _result(self.prefetched.policies)

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

    def run_concurrently(self, calls: list[Callable[[], object]], announce: bool = False) -> list[object]:
        """Run independent calls at once (sequentially without a pool): what each returned, or its error (a
        :class:`ResponderError`, returned, not raised, so that one failure does not hide the others' outcomes).

        ``announce``: these are the isolating writes; :attr:`writes_out` opens as soon as they are all submitted.
        """

        def attempt(call: Callable[[], object]) -> object:
            try:
                return call()
            except ResponderError as exc:
                return exc

        if self.pool is None or (len(calls) < 2 and not announce):
            if announce:
                self.writes_out.open()  # nothing runs alongside without a pool: no one to hold back
            return [attempt(c) for c in calls]
        futures = [self.pool.submit(attempt, c) for c in calls]
        if announce:
            self.writes_out.open()
        return [f.result() for f in futures]

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


class Traits:
    """What an action is, declared on its class. An action declares only what is true of it: by default it writes
    nothing a refuted message's rollback cannot take back exactly, runs in plan order, and ends nothing."""

    isolating: ClassVar[bool] = False
    verified_first: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    destructive: ClassVar[bool] = False
    needs_capture_before: ClassVar[bool] = False


class Action(Protocol):
    """An action module's entry point."""

    name: ClassVar[str]
    isolating: ClassVar[bool]  # cuts the pod off: its writes go out first, and everything else waits for them
    verified_first: ClassVar[bool]  # a write a refuted message's rollback cannot take back: held until SCC vouches
    read_only: ClassVar[bool]  # only reads: may run alongside containment
    destructive: ClassVar[bool]  # ends the pod (held for SCC); the runner charges no budget: delete.py charges its own
    needs_capture_before: ClassVar[bool]  # what it ends is evidence: capture runs first (unless the policy opts out)
    held_means: ClassVar[str]  # what the record says it did not do while SCC had not vouched for the message
    Params: ClassVar[type[ActionParams]]

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult: ...


def result(
    action: str,
    status: Status,
    reason: str,
    ctx: ActionContext,
    changes: list[str] | tuple[str, ...] = (),
    **details: Any,
) -> ActionResult:
    """Build a result, prefixing dry-run reasons so nobody mistakes a plan for a change."""
    if ctx.dry_run and status is Status.SKIPPED and changes:
        reason = f"dry-run: would {reason}"
    return ActionResult(
        action=action, status=status, reason=reason, dry_run=ctx.dry_run, changes=tuple(changes), details=details
    )


def pod_gone(
    action: str, ctx: ActionContext, exc: NotFound | Conflict, changes: list[str] | tuple[str, ...] = ()
) -> ActionResult:
    """The skipped result when the pod vanished, or was replaced under us (the new pod is never touched)."""
    # ``gone``: the compromised pod no longer runs, so neither does its shell (the outcome rule reads it).
    if isinstance(exc, NotFound):
        return result(action, Status.SKIPPED, "pod no longer exists", ctx, changes, gone=True)
    return result(action, Status.SKIPPED, "pod was replaced (UID changed); the new pod is not touched", ctx, gone=True)


def done(value: T) -> Future[T]:
    """A future that already holds ``value`` (a read made synchronously, handed where a read under way would go)."""
    future: Future[T] = Future()
    future.set_result(value)
    return future


def now(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` called here and now, its result or its error in a future (for code that takes reads under way)."""
    future: Future[T] = Future()
    try:
        future.set_result(fn(*args))
    except ResponderError as exc:
        future.set_exception(exc)
    return future
