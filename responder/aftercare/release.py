"""``release``: let a quarantined pod go, and take the namespace's isolation down once nothing needs it.

Order matters, because a mistake re-opens a compromised pod:
1. the pod first: its quarantine label and the responder's annotations go in one patch with its UID as precondition
   (or, with ``--delete``, it is deleted with that precondition and awaited until gone). Its original labels are not
   put back: a pod is only missing labels when isolation detached it, and its controller has replaced it since;
   restoring them would have the controller adopt it again and then scale away a pod, maybe the clean one;
2. then the namespace, judged from the live list of quarantined pods: while any other pod there carries the label,
   the deny-all policy and every exclusion stay. Otherwise the exclusions are removed (each write optimistic on the
   policy's resourceVersion) and the deny-all is deleted, only if it is the responder's by content (any version's
   shape, ``containment.shape.SHAPES``: an upgrade leaves no older deny-all behind, and a squatter is never deleted);
3. then the namespace is listed again: if the responder quarantined a pod there meanwhile, its deny-all and
   exclusions are put back at once (the one race a release can lose is re-isolated, not left open);
4. SCC security marks record the release when Google APIs are on.
With the pod, its token's rights come back: writes (``identity.release``) and revoked bindings (``revoke.release``).

A dry run (no ``--yes``) computes the same steps and writes nothing. A release of a pod already released changes
nothing and says so; a same-named pod that never carried the quarantine is refused.

Rights (the operator's own, not the function's): ``pods: get, list, patch`` (+ ``delete`` for ``--delete``);
``networkpolicies: list, patch, delete`` (+ ``create`` only to re-isolate after a lost race);
``securitycenter.findingsecuritymarks.update`` for the marks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from responder.aftercare.facts import (
    QUARANTINE_SELECTOR,
    RELEASED_ANNOTATION,
    is_detached,
    is_quarantined,
    original_labels,
    parse_target,
    responder_annotations,
)
from responder.containment import identity, revoke
from responder.containment.keys import FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.netpol import ensure_deny_all, reopens
from responder.containment.progress import RELEASED, STATUS_MARK, TIME_MARK
from responder.containment.results import ActionResult, Status
from responder.containment.shape import (
    CURRENT,
    deny_all_names,
    has_exclusion,
    responders_deny_alls,
    with_exclusion,
    without_exclusion,
)
from responder.errors import Conflict, InvalidIdentifier, NotFound, ResponderError, TransientError
from responder.intake import identifiers
from responder.intake.sanitize import clean
from responder.intake.triage import Verdict
from responder.ports import FindingsAPI, KubePort, NetworkPolicyView, PodView
from responder.report.record import DecisionRecord, PodRef, make_record

_ATTEMPTS = 5  # re-reads of the namespace's policies when one changed under a write


@dataclass(frozen=True)
class ReleaseRequest:
    """What the operator asked for. ``apply`` is ``--yes``: without it, nothing is written."""

    target: str  # NAMESPACE/POD, as typed: validated here before it reaches any API path
    reason: str | None = None
    delete: bool = False
    apply: bool = False
    by: str | None = None
    # The release lasts only through SCC's marks (a redelivery reads them, never the pod): without them it is a
    # failure, unless the operator says this cluster has no SCC (``--without-marks``).
    without_marks: bool = False


@dataclass(frozen=True)
class ReleaseOutcome:
    """The decision record, and what the exit code is made of."""

    record: DecisionRecord
    refused: bool = False

    @property
    def failed(self) -> bool:
        """Any step failed: the operator must look (exit 1)."""
        return any(a.status is Status.FAILED for a in [*self.record.actions, *self.record.writebacks])


@dataclass
class _ReleaseLog:
    """One release in progress: its mode and the results so far."""

    dry_run: bool
    actions: list[ActionResult] = field(default_factory=list)
    writebacks: list[ActionResult] = field(default_factory=list)  # what was told SCC (the security marks)

    def add(self, action: str, status: Status, reason: str, changes: list[str] | tuple[str, ...] = ()) -> ActionResult:
        """Record a step in the cluster; a dry run's planned changes say "would" so nobody mistakes a plan for a
        change."""
        out = self._result(action, status, reason, changes)
        self.actions.append(out)
        return out

    def tell(self, status: Status, reason: str, changes: list[str] | tuple[str, ...] = ()) -> None:
        """Record the security marks' write-back (kept apart from the cluster steps, as in the responder's record)."""
        self.writebacks.append(self._result("mark", status, reason, changes))

    @property
    def results(self) -> list[ActionResult]:
        """Every step and write-back."""
        return [*self.actions, *self.writebacks]

    def _result(self, action: str, status: Status, reason: str, changes: list[str] | tuple[str, ...]) -> ActionResult:
        if self.dry_run and changes and status is Status.SKIPPED:
            reason = f"dry-run: would {reason}"
        return ActionResult(action=action, status=status, reason=reason, dry_run=self.dry_run, changes=tuple(changes))


def _pod_write(run: _ReleaseLog, step: str, name: str, write: Callable[[], object]) -> bool | None:
    """One write to the pod under its UID precondition: True when done; False (recorded as skipped) when the pod is
    gone or was replaced; None (recorded as failed) on any other error."""
    try:
        write()
    except NotFound:
        run.add(step, Status.SKIPPED, f"pod {name} no longer exists")
        return False
    except Conflict:
        run.add(step, Status.SKIPPED, f"pod {name} was replaced (UID changed); the new pod is not touched")
        return False
    except ResponderError as exc:
        run.add(step, Status.FAILED, f"could not {step} pod {name}: {clean(exc, 300)}")
        return None
    return True


def _planned(done: str) -> str:
    """A write's description as a plan ("remove ..."), from how it reads once done ("removed ...")."""
    for past, plan in (("removed ", "remove "), ("deleted ", "delete ")):
        if done.startswith(past):
            return plan + done[len(past) :]
    return done


class Releaser:
    """Releases one pod at a time through a :class:`KubePort` (and SCC marks through a :class:`FindingsAPI`)."""

    def __init__(  # noqa: PLR0913 - keyword-only: where a release reads and writes, and its clock
        self,
        kube: KubePort,
        *,
        protected: Callable[[str], bool],
        findings: FindingsAPI | None = None,
        cluster: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        delete_wait_s: float = 60.0,
        own_namespace: str = "responder-system",
    ) -> None:
        """``protected``: the policy engine's protected-namespace test; ``own_namespace``: the responder's."""
        self.own_namespace = own_namespace
        self.kube = kube
        self.protected = protected
        self.findings = findings
        self.cluster = cluster
        self.clock = clock
        self.sleep = sleep
        self.delete_wait_s = delete_wait_s

    # ----------------------------------------------------------------------------------------------- entry
    def release(self, request: ReleaseRequest) -> ReleaseOutcome:
        """Plan (dry run) or carry out the release; exactly one decision record either way."""
        try:
            namespace, name = parse_target(request.target)
        except InvalidIdentifier as exc:
            return self._refuse(str(exc), None)
        ref = PodRef(namespace=namespace, name=name)
        if self.protected(namespace):
            return self._refuse(f"namespace {namespace} is protected: the responder never touches it", ref)
        try:
            pod: PodView | None = self.kube.get_pod(namespace, name)
        except NotFound:
            pod = None
        if pod is not None and not is_quarantined(pod) and RELEASED_ANNOTATION not in pod.annotations:
            return self._refuse(
                f"not quarantined: pod {namespace}/{name} does not carry {QUARANTINE_LABEL}=true (a pod created "
                "after the quarantine under the same name is never touched)",
                ref,
            )
        run = _ReleaseLog(dry_run=not request.apply)
        finding = pod.annotations.get(FINDING_ANNOTATION) if pod is not None else None
        released = self._pod_step(run, pod, namespace, name, request)
        for lift in (identity.release, revoke.release) if released is not None else ():  # the token's rights back
            if (lifted := lift(self.kube, self.own_namespace, pod, run.dry_run)) is not None:
                run.add(lifted.action, lifted.status, lifted.reason, lifted.changes)
        if released is not None:  # None: the pod step failed, so the namespace keeps its isolation
            self._namespace_step(run, namespace, ignore_uid=pod.uid if (run.dry_run and pod) else None)
        self._marks_step(run, finding, bool(released), request, (namespace, name))
        return ReleaseOutcome(record=self._record(run, ref, finding, pod))

    # ---------------------------------------------------------------------------------------------- the pod
    def _pod_step(
        self, run: _ReleaseLog, pod: PodView | None, namespace: str, name: str, request: ReleaseRequest
    ) -> bool | None:
        """Release or delete the pod. True: this run changed it; False: nothing to change; None: failed."""
        if pod is None:
            run.add("release", Status.SKIPPED, f"pod {namespace}/{name} no longer exists; the namespace is checked")
            return False
        if request.delete:
            return self._delete(run, pod)
        if not is_quarantined(pod):
            at = clean(pod.annotations.get(RELEASED_ANNOTATION, "?"), 40)
            run.add("release", Status.SKIPPED, f"pod {name} was already released (at {at}): no change")
            return False
        keys = [k for k in responder_annotations(pod) if k != RELEASED_ANNOTATION]
        what = f"remove {QUARANTINE_LABEL} and the annotations {', '.join(keys) or '(none)'} from pod {name}"
        kept = original_labels(pod)
        if is_detached(pod) and kept:
            what += (
                f" (its original labels {', '.join(sorted(kept))} are not restored: it was detached, so its "
                "controller makes or made a replacement)"
            )
        if run.dry_run:
            run.add("release", Status.SKIPPED, what, [what])
            return True
        annotations: dict[str, str | None] = dict.fromkeys(keys)
        annotations[RELEASED_ANNOTATION] = self.clock().isoformat(timespec="seconds")
        written = _pod_write(run, "release", name, lambda: self._lift(pod, annotations))
        if written is not True:
            return written
        run.add("release", Status.SUCCEEDED, f"released: {what.removeprefix('remove ')} removed", [what])
        return True

    def _lift(self, pod: PodView, annotations: dict[str, str | None]) -> PodView:
        """The release patch, conditional on the pod's resourceVersion as well as its UID: a quarantine by a new
        finding that lands between the read and the patch must not be lifted with it. A change that leaves the pod
        as quarantined as it was (a kubelet status update) is read again and the patch retried."""
        current = pod
        for _ in range(3):
            try:
                return self.kube.patch_pod_metadata(
                    pod.namespace,
                    pod.name,
                    pod.uid,
                    {QUARANTINE_LABEL: None},
                    annotations,
                    resource_version=current.resource_version,
                )
            except Conflict:
                current = self.kube.get_pod(pod.namespace, pod.name)
                if current.uid != pod.uid:
                    raise
                if current.annotations.get(FINDING_ANNOTATION) != pod.annotations.get(FINDING_ANNOTATION):
                    why = f"pod {pod.name} was quarantined again for another finding meanwhile"
                    raise TransientError(why) from None
        raise TransientError(f"pod {pod.name} kept changing; release it again")

    def _delete(self, run: _ReleaseLog, pod: PodView) -> bool | None:
        """Delete with the UID read at the start as precondition, then wait until it is gone: while it terminates it
        still carries the label, and the namespace's isolation must stay until then."""
        what = f"delete pod {pod.name} (uid {pod.uid} as precondition) and wait until it is gone"
        if run.dry_run:
            run.add("delete", Status.SKIPPED, what, [what])
            return True
        written = _pod_write(
            run, "delete", pod.name, lambda: self.kube.delete_pod(pod.namespace, pod.name, pod.uid, None)
        )
        if written is not True:
            return written
        if not self._gone(pod):
            run.add(
                "delete",
                Status.FAILED,
                f"deleted pod {pod.name}, but it is still terminating after {self.delete_wait_s:g} s; the namespace "
                "keeps its isolation: run release again once it is gone",
                [what],
            )
            return None
        run.add("delete", Status.SUCCEEDED, f"deleted pod {pod.name} (uid {pod.uid})", [what])
        return True

    def _gone(self, pod: PodView) -> bool:
        deadline = time.monotonic() + self.delete_wait_s
        while True:
            try:
                if self.kube.get_pod(pod.namespace, pod.name).uid != pod.uid:
                    return True
            except NotFound:
                return True
            if time.monotonic() >= deadline:
                return False
            self.sleep(0.5)

    # --------------------------------------------------------------------------------------- the namespace
    def _namespace_step(self, run: _ReleaseLog, namespace: str, ignore_uid: str | None) -> None:
        """Remove the exclusions and the deny-all when no quarantined pod remains; never while one does."""
        done: list[str] = []
        for _ in range(_ATTEMPTS):
            try:
                remaining = [p for p in self.kube.list_pods(namespace, QUARANTINE_SELECTOR) if p.uid != ignore_uid]
                if remaining:
                    names = ", ".join(p.name for p in remaining[:5]) + (" ..." if len(remaining) > 5 else "")
                    run.add(
                        "policies",
                        Status.SKIPPED,
                        f"{len(remaining)} other quarantined pod(s) remain in {namespace} ({names}): the deny-all "
                        "policy and the exclusions stay",
                        done,
                    )
                    if done:  # someone was quarantined while this run wrote: put their isolation back
                        self._recheck(run, namespace)
                    return
                writes = self._cleanup_writes(namespace, self.kube.list_network_policies(namespace))
                if not writes:
                    if done:
                        break
                    run.add("policies", Status.SKIPPED, f"nothing to remove: {namespace} has no exclusion or deny-all")
                    return
                if run.dry_run:
                    planned = [_planned(w) for w, _ in writes]
                    run.add("policies", Status.SKIPPED, "; ".join(planned), planned)
                    return
                for what, write in writes:
                    write()
                    done.append(what)
            except (Conflict, NotFound):
                continue  # a policy changed under us (a concurrent release, or the responder): judge it again
            except ResponderError as exc:
                run.add("policies", Status.FAILED, f"could not clean up {namespace}: {clean(exc, 300)}", done)
                return
            break
        else:
            run.add("policies", Status.FAILED, f"NetworkPolicies in {namespace} kept changing; run release again", done)
            return
        run.add("policies", Status.SUCCEEDED, "; ".join(done), done)
        self._recheck(run, namespace)

    def _cleanup_writes(
        self, namespace: str, policies: list[NetworkPolicyView]
    ) -> list[tuple[str, Callable[[], object]]]:
        """The writes that return the namespace's policies to their state before any quarantine: exclusions first,
        the deny-alls last (each deleted only when it is some version's by content, with its resourceVersion)."""
        writes: list[tuple[str, Callable[[], object]]] = []
        for p in policies:
            if p.name not in deny_all_names() and has_exclusion(p):
                writes.append(
                    (
                        f"removed the quarantine exclusion from NetworkPolicy {namespace}/{p.name}",
                        _unexclude(self.kube, p),
                    )
                )
        for deny, shape in responders_deny_alls(policies):
            older = "" if shape is CURRENT else f" (shape v{shape.version}, an older responder's deny-all)"
            writes.append((f"deleted NetworkPolicy {namespace}/{deny.name}{older}", _delete_policy(self.kube, deny)))
        return writes

    def _recheck(self, run: _ReleaseLog, namespace: str) -> None:
        """A pod the responder quarantined while the namespace was being cleaned would now be open: isolate it again."""
        try:
            pods = self.kube.list_pods(namespace, QUARANTINE_SELECTOR)
            if not pods:
                return
            changes = [ensure_deny_all(self.kube, namespace).what]
            for _ in range(_ATTEMPTS):
                try:
                    for p in self.kube.list_network_policies(namespace):
                        if p.name != CURRENT.name and any(reopens(p, pod.labels) for pod in pods):
                            self.kube.set_network_policy_selector(
                                namespace, p.name, with_exclusion(p.pod_selector), p.resource_version
                            )
                            changes.append(f"excluded quarantined pods from NetworkPolicy {namespace}/{p.name}")
                except (Conflict, NotFound):
                    continue
                break
            else:
                raise Conflict(f"NetworkPolicies in {namespace} kept changing")
        except ResponderError as exc:
            run.add(
                "reisolate",
                Status.FAILED,
                f"a pod was quarantined in {namespace} meanwhile and could not be "
                f"re-isolated: {clean(exc, 300)}; run the responder or release again",
            )
            return
        names = ", ".join(p.name for p in pods)
        run.add("reisolate", Status.SUCCEEDED, f"{names} quarantined meanwhile: isolation restored", changes)

    # ------------------------------------------------------------------------------------------------- SCC
    def _marks_step(
        self, run: _ReleaseLog, finding: str | None, released: bool, request: ReleaseRequest, pod: tuple[str, str]
    ) -> None:
        """Security marks on the finding: released, by whom, why. Only when this run released the pod, so that a
        second release changes nothing anywhere, and only on a finding whose SCC record names this pod."""
        if not released:
            run.tell(Status.SKIPPED, "nothing was released by this run: security marks left as they are")
            return
        if not finding:
            run.tell(Status.SKIPPED, "the pod records no finding: no security marks written")
            return
        if self.findings is None:
            if run.dry_run and not request.without_marks:
                run.tell(Status.SKIPPED, "Google APIs are off: with --yes this fails unless --without-marks is given")
            elif request.without_marks:
                run.tell(Status.SKIPPED, "--without-marks: not recorded in SCC; a redelivery would contain it again")
            else:
                # The release lasts through SCC's marks only: a redelivery of the finding would isolate the pod again.
                run.tell(
                    Status.FAILED,
                    "Google APIs are off (RESPONDER_GOOGLE_APIS): the release is not recorded in SCC's marks, so a "
                    "redelivery of the finding would contain the pod again; turn them on and release again, or pass "
                    "--without-marks on a cluster without SCC",
                )
            return
        unbound = self._names_this_pod(finding, pod)
        if unbound is not None:
            run.tell(*unbound)
            return
        # The marks a redelivery reads to leave the pod released (``containment.progress.released``).
        marks = {STATUS_MARK: RELEASED, TIME_MARK: self.clock().isoformat(timespec="seconds")}
        if request.by:
            marks["rsr_released_by"] = clean(request.by, 200)
        if request.reason and request.reason.strip():
            marks["rsr_release_reason"] = clean(request.reason.strip(), 1000)
        what = f"set security marks {', '.join(sorted(marks))} on {clean(finding, 300)}"
        if run.dry_run:
            run.tell(Status.SKIPPED, what, [what])
            return
        try:
            self.findings.update_marks(finding, marks)
        except ResponderError as exc:
            run.tell(Status.FAILED, f"security marks not written: {clean(exc, 300)}")
            return
        run.tell(Status.SUCCEEDED, f"security marks set: rsr_status=released on {clean(finding, 300)}", [what])

    def _names_this_pod(self, finding: str, pod: tuple[str, str]) -> tuple[Status, str] | None:
        """Why the marks must not go to ``finding`` (None: SCC's record of it names this pod, in this cluster); a
        failed lookup is a failure (exit 1), anything else a refusal.

        The finding comes from the pod's annotation, which anyone with ``pods: patch`` can point at an unrelated
        finding; SCC's own record is what binds the two."""
        shown = clean(finding, 300)
        try:
            identifiers.finding_name(finding)
            assert self.findings is not None
            record = self.findings.get_finding(finding)
        except InvalidIdentifier:
            return Status.SKIPPED, f"the pod's annotation {shown!r} is not a finding name: no security marks written"
        except ResponderError as exc:
            return Status.FAILED, f"could not read {shown} from SCC to check that it names this pod: {clean(exc, 200)}"
        where = f"{pod[0]}/{pod[1]}"
        if record is None:
            return Status.SKIPPED, f"SCC does not know {shown}, which the pod's annotation names: no marks written"
        if pod not in record.pods:
            return Status.SKIPPED, f"SCC's record of {shown} does not name pod {where}: no security marks written"
        if self.cluster is not None:
            try:
                cluster = identifiers.parse_cluster_resource(record.resource_name or "").path
            except InvalidIdentifier:
                cluster = None
            if cluster != self.cluster:
                return Status.SKIPPED, f"SCC's record of {shown} is about another cluster: no security marks written"
        return None

    # ----------------------------------------------------------------------------------------------- record
    def _record(self, run: _ReleaseLog, ref: PodRef, finding: str | None, pod: PodView | None) -> DecisionRecord:
        changed = any(a.changes for a in run.results)
        if run.dry_run:
            reason = f"plan to release {ref.namespace}/{ref.name}; nothing written (--yes to apply)"
        elif any(a.status is Status.FAILED for a in run.results):
            reason = f"release of {ref.namespace}/{ref.name} incomplete: see the failed steps"
        elif changed:
            reason = f"released {ref.namespace}/{ref.name}"
        else:
            reason = f"{ref.namespace}/{ref.name} already released: no change"
        return make_record(
            Verdict.ACT,
            "release",
            reason,
            finding=finding,
            cluster=self.cluster,
            pod=ref,
            actions=run.actions,
            writebacks=run.writebacks,
            mode="dry-run" if run.dry_run else "enforce",
        )

    def _refuse(self, reason: str, ref: PodRef | None) -> ReleaseOutcome:
        record = make_record(Verdict.REJECT, "release_refused", reason, cluster=self.cluster, pod=ref)
        return ReleaseOutcome(record=record, refused=True)


def _unexclude(kube: KubePort, policy: NetworkPolicyView) -> Callable[[], object]:
    return lambda: kube.set_network_policy_selector(
        policy.namespace, policy.name, without_exclusion(policy.pod_selector), policy.resource_version
    )


def _delete_policy(kube: KubePort, policy: NetworkPolicyView) -> Callable[[], object]:
    return lambda: kube.delete_network_policy(policy.namespace, policy.name, policy.resource_version)
