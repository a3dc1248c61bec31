"""identity: the quarantined pod's service-account token may no longer write, wherever it is used from.

Permissions: ``configmaps: get, create, patch`` in the responder's own namespace (rbac.yaml's Role there). Not a
policy action of its own: the runner runs it right after the step that puts the quarantine label on the pod (isolate,
or label), since the first thing an attacker with a shell does is read the pod's token.

It adds the pod to the parameter of deploy/kubernetes/identity-guard.yaml, the ConfigMap
``<own namespace>/rsr-quarantined-identities``: its UID mapped to ``system:serviceaccount:NAMESPACE:ACCOUNT
NAMESPACE/POD``. Every request made with a pod-bound token carries the pod's UID, and that admission policy refuses
each write (CREATE, UPDATE, DELETE, CONNECT) whose token belongs to a pod listed there. Reads cannot be refused by
admission (it never sees them): the result says so. A refuted message's rollback removes the entry again, exactly,
and ``release`` removes it with the operator's rights; so it runs before SCC vouches, like the label.

The ConfigMap is read, then merge-patched key by key (instances adding different pods at once never conflict). It is
kept small: when it holds more than :data:`PRUNE_AT` pods, the entries of pods that are gone (or replaced under the
same name) are dropped in the same write.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import ClassVar

from responder.containment.action import ActionParams, Rule, Traits
from responder.containment.context import ActionContext
from responder.containment.keys import QUARANTINE_LABEL
from responder.containment.results import ActionResult, Status, result
from responder.errors import Conflict, NotFound, ResponderError
from responder.intake.sanitize import clean
from responder.investigation import rights
from responder.ports import ConfigMapView, KubePort, PodView

IDENTITIES = "rsr-quarantined-identities"
GUARD_BINDING = "reverse-shell-responder-identity"  # deploy/kubernetes/identity-guard.yaml's binding
PRUNE_AT = 2000  # ~200 KB of entries: well inside a ConfigMap's 1 MiB
# A create raced by another instance (or a parameter deleted meanwhile) is read again after a short random pause.
_ATTEMPTS = 5
_PAUSE_S = 0.01
READS_NOTE = "reads with it are not refused (admission never sees a read): see the report's identity section"


def account(pod: PodView) -> str:
    """The user name the pod's service-account token authenticates as."""
    return rights.username(pod.namespace, pod.service_account or "default")


def entry(pod: PodView) -> str:
    """The parameter's value for ``pod``: its account (the token must belong to it) and the pod (for pruning)."""
    return f"{account(pod)} {pod.namespace}/{pod.name}"


def listed(kube: KubePort, namespace: str, pod: PodView) -> bool:
    """Whether the pod's identity is quarantined (its entry is in the parameter); raises what the read raises,
    except a missing parameter (nothing is quarantined)."""
    try:
        return kube.get_config_map(namespace, IDENTITIES).data.get(pod.uid) == entry(pod)
    except NotFound:
        return False


def _not_enforced(kube: KubePort) -> str | None:
    """Why the cluster does not refuse a listed pod's writes (identity-guard.yaml not installed, or its binding does
    not deny), or None when it does: the step never claims a refusal the cluster will not make."""
    try:
        actions = kube.get_admission_binding(GUARD_BINDING)
    except NotFound:
        return f"this cluster has no admission binding {GUARD_BINDING} (deploy/kubernetes/identity-guard.yaml)"
    except ResponderError as exc:
        return f"whether admission binding {GUARD_BINDING} is installed could not be read ({clean(exc, 160)})"
    return None if "Deny" in actions else f"admission binding {GUARD_BINDING} does not deny ({', '.join(actions)})"


def holds(kube: KubePort, namespace: str, pod: PodView, read: Future[ConfigMapView] | None = None) -> bool:
    """For a redelivery: a quarantined pod's identity is still quarantined (``read``: the parameter as read beside the
    pod; None: read it now). A pod that is not quarantined, or is going, needs none. Unknown counts as lost: the
    delivery is then handled in full, and the step writes the entry again."""
    if pod.deleting or pod.labels.get(QUARANTINE_LABEL) != "true":
        return True
    try:
        if read is None:
            return listed(kube, namespace, pod)
        return read.result().data.get(pod.uid) == entry(pod)
    except ResponderError:  # NotFound from the read beside the pod among them: no parameter, nothing quarantined
        return False


def _gone(kube: KubePort, uid: str, value: str) -> bool:
    """Whether the pod an entry names no longer stands (deleted, or replaced under its name)."""
    _, _, where = value.partition(" ")
    namespace, _, name = where.partition("/")
    try:
        return kube.get_pod(namespace, name).uid != uid
    except NotFound:
        return True


def _pruned(kube: KubePort, data: Mapping[str, str], keep: str) -> dict[str, None]:
    """The entries to drop with this write: those of pods that are gone, once the list is long."""
    if len(data) <= PRUNE_AT:
        return {}
    return {uid: None for uid, value in data.items() if uid != keep and _gone(kube, uid, value)}


Delta = dict[str, str | None]  # keys to set, and keys to remove (None)


def change(
    kube: KubePort, namespace: str, edit: Callable[[dict[str, str]], Delta | None], name: str = IDENTITIES
) -> bool:
    """Apply what ``edit`` asks of the ConfigMap ``name``'s data (None or empty: nothing), key by key with a merge
    patch, so that instances adding different pods at once never conflict (a worm quarantines many pods together);
    the ConfigMap is created when missing. True when something was written. The quarantined identities by default;
    the revoked bindings' records (``containment.revoke``) too."""
    for attempt in range(_ATTEMPTS):
        try:
            current: dict[str, str] | None = dict(kube.get_config_map(namespace, name).data)
        except NotFound:
            current = None
        delta = edit(current or {})
        if not delta:
            return False
        try:
            if current is None:
                kube.create_config_map(namespace, name, {k: v for k, v in delta.items() if v is not None})
            else:
                kube.patch_config_map_data(namespace, name, delta)
            return True
        except (Conflict, NotFound):  # created or deleted by someone else between the read and the write
            if attempt == _ATTEMPTS - 1:
                raise  # a failure that heals, retried on redelivery
            time.sleep(random.uniform(0, _PAUSE_S))  # noqa: S311 - jitter, not a secret
    return False


def forget(kube: KubePort, namespace: str, pod: PodView) -> bool:
    """Remove the pod's entry (a rollback, or release with the operator's rights); True when one was removed."""

    def without(data: dict[str, str]) -> Delta | None:
        return {pod.uid: None} if data.get(pod.uid) == entry(pod) else None

    return change(kube, namespace, without)


def release(kube: KubePort, namespace: str, pod: PodView | None, dry_run: bool) -> ActionResult | None:
    """How ``python -m responder release`` undoes the step (with the operator's rights): the pod's entry leaves the
    quarantined identities and its token may write again; None when the pod's identity is not quarantined."""
    where = f"{namespace}/{IDENTITIES}"
    if pod is None:
        return None
    try:
        if not listed(kube, namespace, pod):
            return None
        what = f"remove pod {pod.name}'s entry from {where} (its service-account token may write again)"
        if dry_run:
            return ActionResult(
                action=IdentityAction.name, status=Status.SKIPPED, reason=what, dry_run=True, changes=(what,)
            )
        forget(kube, namespace, pod)
    except ResponderError as exc:
        why = f"could not lift the identity quarantine in {where}: {clean(exc, 200)}"
        return ActionResult(action=IdentityAction.name, status=Status.FAILED, reason=why)
    done = f"released: {what.removeprefix('remove ')}"
    return ActionResult(action=IdentityAction.name, status=Status.SUCCEEDED, reason=done, changes=(what,))


class IdentityParams(ActionParams):
    """No parameters: every quarantined pod's identity is quarantined with it."""


class IdentityAction(Traits):
    """Add the quarantined pod to the identity guard's parameter: its token's writes are refused by the cluster."""

    name: ClassVar[str] = "identity"
    held_means: ClassVar[str] = "identity not quarantined"
    released_by: ClassVar[str] = "the pod's entry is removed from rsr-quarantined-identities: its token writes again"
    rbac: ClassVar[tuple[Rule, ...]] = (
        Rule(("configmaps",), ("get", "create", "patch")),
        Rule(("validatingadmissionpolicybindings",), ("get",), group="admissionregistration.k8s.io"),
    )
    guard: ClassVar[tuple[str, ...]] = ("isIdentityList",)
    Params: ClassVar[type[ActionParams]] = IdentityParams

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult:
        """Quarantine the identity of a quarantined pod (idempotent); ``skipped`` for a pod that is not quarantined."""
        pod, namespace = ctx.pod, ctx.own_namespace
        where = f"{namespace}/{IDENTITIES}"
        what = f"writes with the service-account token of pod {pod.name} ({account(pod)}) refused by the cluster"
        if ctx.dry_run:
            plan = f"add pod {pod.name}'s UID to {where}: {what}"
            return result(self.name, Status.SKIPPED, plan, ctx, [plan])
        if not ctx.quarantined():
            return result(self.name, Status.SKIPPED, "the pod is not quarantined: its identity is left alone", ctx)

        def add(data: dict[str, str]) -> Delta | None:
            if data.get(pod.uid) == entry(pod):
                return None
            return {**_pruned(ctx.kube, data, pod.uid), pod.uid: entry(pod)}

        # Whether the policy is in force is asked alongside the write (one round fewer before the delivery ends).
        checking = ctx.pool.submit(_not_enforced, ctx.kube) if ctx.pool is not None else None
        written = change(ctx.kube, namespace, add)
        unenforced = checking.result() if checking is not None else _not_enforced(ctx.kube)
        if unenforced is not None:
            # The entry is kept (it takes effect once the policy is installed), but nothing refuses the token yet.
            why = f"pod UID {'added to' if written else 'already in'} {where}, but {unenforced}: the token still writes"
            return result(self.name, Status.FAILED, why, ctx, [why] if written else [])
        if not written:
            return result(self.name, Status.SKIPPED, f"already {what} ({where}); {READS_NOTE}", ctx)
        done = f"{what} (pod UID added to {where}, judged by admission policy {GUARD_BINDING})"
        return result(self.name, Status.SUCCEEDED, f"{done}; {READS_NOTE}", ctx, [done])
