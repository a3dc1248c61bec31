"""revoke: the RBAC bindings that give the compromised pod's service account, and no one else, its rights are deleted,
so a token taken from the pod can no longer read (or write) what they granted.

Permissions: ``rolebindings, clusterrolebindings: list, delete`` (rbac.authorization.k8s.io, cluster-wide: a
RoleBinding in any namespace may name the account), ``configmaps: get, create, patch`` on
``<own namespace>/rsr-revoked-bindings``. The identity step (``containment.identity``) already has the cluster refuse
the token's writes; admission never sees a read, so reads are refused only by taking the rights away.

What it deletes, and what it never does:

- Only a binding whose *sole* subject is this service account. Updating a binding to drop one subject runs RBAC's
  escalation check (the responder would need ``bind`` on every role it names), so a binding shared with other
  subjects is kept and listed. Bindings of the cluster's defaults (``kubernetes.io/bootstrapping``) and bindings in a
  protected namespace are never touched; rights the account gets through a group (``system:serviceaccounts``...)
  cannot be taken from it alone and are listed too.
- Not when the account is shared: the namespace's ``default`` account, or a pod a controller manages (its other
  replicas, and the replacement a detach makes, run under the same account and would lose their rights with it).
  The step's ``shared: true`` revokes anyway. Other workloads naming the same account are not seen: the responder may
  not list pods (their specs carry environment variables).
- Each binding is recorded whole in the ConfigMap before it is deleted (a crash in between leaves the record, and a
  redelivery finishes the deletes), and each delete carries the binding's UID and resourceVersion as preconditions:
  only the version that was judged goes. ``release`` recreates the recorded bindings with the operator's rights (the
  responder cannot: creating a binding needs ``bind`` on its role) and removes the records.

It deletes what a refuted message's rollback could not put back, so it waits until SCC vouches for the message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar

from responder.containment import identity
from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.identity import Delta
from responder.containment.keys import PROTECTED_FLOOR
from responder.containment.results import ActionResult, Status, result
from responder.errors import Conflict, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.investigation import rights
from responder.ports import KubePort, PodView

RBAC = rights.GROUP
KINDS = {"rolebindings": "RoleBinding", "clusterrolebindings": "ClusterRoleBinding"}
STORE = "rsr-revoked-bindings"
SHOWN = 20  # bindings named in a reason; the details hold every one


class RevokeParams(ActionParams):
    """``shared: true`` revokes even when pods that are not quarantined share the service account (they lose the
    rights with it)."""

    shared: bool = False


@dataclass(frozen=True, slots=True)
class Binding:
    """A RoleBinding or ClusterRoleBinding as listed, and what is kept of it for ``release``."""

    plural: str
    namespace: str | None
    name: str
    uid: str
    resource_version: str
    whole: dict[str, Any]  # what release recreates: kind, name, namespace, labels, annotations, roleRef, subjects

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        role = self.whole.get("roleRef") or {}
        return f"{KINDS[self.plural]} {where}{self.name} ({role.get('kind')} {role.get('name')})"


def _binding(plural: str, obj: Mapping[str, Any]) -> Binding:
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    whole = {
        "apiVersion": f"{RBAC}/v1",
        "kind": KINDS[plural],
        "metadata": kept,
        "roleRef": obj.get("roleRef") or {},
        "subjects": obj.get("subjects") or [],
    }
    return Binding(
        plural=plural,
        namespace=meta.get("namespace") or None,
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        whole=whole,
    )


def _names_account(subjects: object, binding_namespace: str | None, pod: PodView) -> bool:
    """Whether the subjects name the pod's service account itself, as RBAC reads them (``rights.names``: a
    RoleBinding's ServiceAccount subject may leave its namespace out; a group of the account does not count here)."""
    how = rights.names(subjects, binding_namespace, pod.namespace, pod.service_account or "default")
    return how is not None and how[1]


@dataclass(frozen=True, slots=True)
class Found:
    """The bindings naming the account: those this step deletes, and those it keeps (with why)."""

    revocable: tuple[Binding, ...]
    kept: tuple[str, ...]


def find(kube: KubePort, pod: PodView, pool: Executor | None = None) -> Found:
    """List both kinds (at once when a pool is given) and sort the bindings that name the pod's account."""
    lists = {
        plural: (pool.submit(kube.list_objects, RBAC, "v1", plural) if pool is not None else None) for plural in KINDS
    }
    revocable: list[Binding] = []
    kept: list[str] = []
    for plural, listing in lists.items():
        objects = listing.result() if listing is not None else kube.list_objects(RBAC, "v1", plural)
        for obj in objects:
            binding = _binding(plural, obj)
            subjects = [s for s in binding.whole["subjects"] if isinstance(s, Mapping)]
            if not _names_account(subjects, binding.namespace, pod):
                continue
            labels = binding.whole["metadata"].get("labels") or {}
            if rights.DEFAULTS_LABEL in labels:  # any value: as the admission guard refuses it
                kept.append(f"{binding}: one of the cluster's default bindings")
            elif binding.namespace and any(fnmatch.fnmatchcase(binding.namespace, p) for p in PROTECTED_FLOOR):
                kept.append(f"{binding}: in a protected namespace")
            elif len(subjects) != 1:
                kept.append(f"{binding}: it names other subjects too (deleting it would take their rights)")
            elif subjects[0].get("kind") != "ServiceAccount":
                kept.append(
                    f"{binding}: it names the account as a User (the guard lets the responder delete only a "
                    "binding of one ServiceAccount subject)"
                )
            else:
                revocable.append(binding)
    return Found(revocable=tuple(revocable), kept=tuple(kept))


def record_key(pod: PodView, binding: Binding) -> str:
    """The store's key: the pod's UID (release finds its records by it), then a digest of the binding's identity
    (binding names may hold ``:``, which a ConfigMap key may not)."""
    digest = hashlib.sha256(f"{binding.plural}/{binding.namespace or ''}/{binding.name}".encode()).hexdigest()
    return f"{pod.uid}.{digest[:16]}"


def shared_by(pod: PodView) -> str | None:
    """Why pods that are not quarantined may run under the pod's account, or None when nothing the responder can
    read says so."""
    account = pod.service_account or "default"
    if account == "default":
        return f"it is namespace {pod.namespace}'s default service account (every pod without its own runs as it)"
    if pod.controller is not None:
        owner = pod.controller
        return f"{owner.kind} {owner.name} runs its other and replacement pods under it"
    return None


def recorded(kube: KubePort, namespace: str, pod: PodView) -> dict[str, dict[str, Any]]:
    """The bindings revoked for ``pod`` (its records in the store), by key; raises what the read raises, except a
    missing store (nothing revoked)."""
    try:
        data = kube.get_config_map(namespace, STORE).data
    except NotFound:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key.startswith(f"{pod.uid}."):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            out[key] = parsed if isinstance(parsed, dict) else {}
    return out


def _restorable(pod: PodView, whole: Mapping[str, Any]) -> str | None:
    """Why a record must not be recreated, or None. Release recreates with the operator's rights what the responder's
    identity recorded: only a binding of the pod's own account alone, of a known kind, with a role, is ever made."""
    subjects = whole.get("subjects")
    meta = whole.get("metadata")
    if whole.get("kind") not in KINDS.values() or not isinstance(meta, dict) or not meta.get("name"):
        return "not a RoleBinding or ClusterRoleBinding record"
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        return "it names other subjects than the pod's service account"
    if whole.get("kind") == "RoleBinding" and not meta.get("namespace"):
        return "a RoleBinding record without its namespace"
    if not _names_account(subjects, meta.get("namespace"), pod) or subjects[0].get("kind") != "ServiceAccount":
        return "it names another subject than the pod's service account"
    if not isinstance(whole.get("roleRef"), dict) or not whole["roleRef"].get("name"):
        return "it has no role"
    return None


def _dropping(keys: list[str]) -> Callable[[dict[str, str]], Delta | None]:
    """The store's edit that removes these records (those still there)."""
    return lambda data: {key: None for key in keys if key in data} or None


def release(kube: KubePort, namespace: str, pod: PodView | None, dry_run: bool) -> ActionResult | None:
    """How ``python -m responder release`` undoes the step (with the operator's rights): each recorded binding is
    recreated as it was, then its record removed; None when nothing was revoked for the pod."""
    if pod is None:
        return None
    try:
        records = recorded(kube, namespace, pod)
        if not records:
            return None
        changes: list[str] = []
        refused: list[str] = []
        made: list[str] = []  # records whose binding stands again: removed in one write, even if a later one fails
        try:
            for key, whole in records.items():
                meta = whole.get("metadata") or {}
                shown = f"{whole.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")
                why = _restorable(pod, whole)
                if why is not None:
                    refused.append(f"{clean(shown, 200)} not recreated: {why} (record {key} kept for review)")
                    continue
                changes.append(f"recreate {clean(shown, 200)} (role {clean(whole['roleRef'].get('name'), 200)})")
                if dry_run:
                    continue
                plural = next(p for p, k in KINDS.items() if k == whole["kind"])
                try:
                    kube.create_object(RBAC, "v1", plural, meta.get("namespace") or None, whole)
                except Conflict:
                    changes[-1] += ": it exists again already, kept as it is"
                made.append(key)
        finally:
            if made:
                identity.change(kube, namespace, _dropping(made), name=STORE)
    except ResponderError as exc:
        why = f"could not recreate the revoked bindings from {namespace}/{STORE}: {clean(exc, 200)}"
        return ActionResult(action=RevokeAction.name, status=Status.FAILED, reason=why)
    status = Status.FAILED if refused else (Status.SKIPPED if dry_run else Status.SUCCEEDED)
    reason = "; ".join([*changes, *refused]) or "nothing to recreate"
    return ActionResult(
        action=RevokeAction.name,
        status=status,
        reason=reason if not dry_run or refused else f"dry-run: would {reason}",
        dry_run=dry_run,
        changes=tuple(changes),
    )


class RevokeAction(Traits):
    """Delete the bindings that give only the pod's service account its rights: the stolen token's reads too."""

    name: ClassVar[str] = "revoke"
    waits_for_scc: ClassVar[bool] = True
    held_means: ClassVar[str] = "the service account's bindings not revoked"
    released_by: ClassVar[str] = "recreates the recorded bindings with the operator's rights"
    rbac: ClassVar[tuple[Rule, ...]] = (
        Rule(("rolebindings", "clusterrolebindings"), ("list", "delete"), group=RBAC),
        Rule(("configmaps",), ("get", "create", "patch")),
    )
    guard: ClassVar[tuple[str, ...]] = ("isBinding", "isRevokedBindings")
    Params: ClassVar[type[ActionParams]] = RevokeParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Record, then delete, each binding whose sole subject is the pod's account (idempotent)."""
        assert isinstance(params, RevokeParams)
        pod, own = ctx.pod, ctx.own_namespace
        where = f"{own}/{STORE}"
        who = identity.account(pod)
        if ctx.dry_run:
            plan = (
                f"delete the RoleBindings and ClusterRoleBindings whose sole subject is {who}, each recorded whole in "
                f"{where} first (release recreates them): the stolen token's reads they grant are refused too"
            )
            return result(self.name, Status.SKIPPED, plan, ctx, [plan])
        if not ctx.quarantined():
            return result(self.name, Status.SKIPPED, "the pod is not quarantined: its bindings are left alone", ctx)
        shared = None if params.shared else shared_by(pod)
        if shared is not None:
            why = (
                f"NOT REVOKED: {who} is shared ({shared}), so pods that are not quarantined would lose its rights; "
                "the step's shared: true revokes anyway. Its reads are not refused: see the report's identity section"
            )
            return result(self.name, Status.SKIPPED, why, ctx, shared=True)
        found = find(ctx.kube, pod, ctx.pool)
        if not found.revocable:
            before = len(recorded(ctx.kube, own, pod))
            what = f"{before} already revoked (recorded in {where})" if before else "no binding names it alone"
            why = f"nothing to revoke for {who}: {what}"
            if found.kept:
                why += f"; kept: {'; '.join(found.kept[:SHOWN])}"
            return result(self.name, Status.SKIPPED, why, ctx, kept=list(found.kept))

        def add(data: dict[str, str]) -> Delta | None:
            wanted = {record_key(pod, b): json.dumps(b.whole, sort_keys=True) for b in found.revocable}
            return {k: v for k, v in wanted.items() if data.get(k) != v} or None

        identity.change(ctx.kube, own, add, name=STORE)  # recorded before anything is deleted
        gone: list[str] = []
        for binding in found.revocable:
            try:
                ctx.kube.delete_object(
                    RBAC, "v1", binding.plural, binding.namespace, binding.name, binding.uid, binding.resource_version
                )
            except NotFound:
                gone.append(str(binding))  # deleted meanwhile: its record stays, and release recreates it
        names = [str(b) for b in found.revocable]
        done = (
            f"revoked {len(names)} binding(s) of {who}: {'; '.join(names[:SHOWN])} (recorded in {where}; release "
            "recreates them): RBAC now refuses the stolen token's reads and writes they granted"
        )
        if found.kept:
            done += f"; kept: {'; '.join(found.kept[:SHOWN])}"
        return result(
            self.name,
            Status.SUCCEEDED,
            done,
            ctx,
            [f"delete {n}" for n in names],
            revoked=[b.whole for b in found.revocable],
            kept=list(found.kept),
            already_gone=gone,
        )
