"""What the pod's service account may do: the RBAC bindings that name it, and the rules of the roles they bind.

A stolen token carries every right its account has, and the identity guard refuses only its writes: the report has
to say what the account could read and write. :func:`gather` lists the four RBAC kinds once each (rolebindings in
every namespace, since a RoleBinding anywhere may name an account of another namespace; clusterrolebindings; roles;
clusterroles), a fixed four reads whatever the number of bindings; :func:`rights_of` is the pure part.

A binding names the account the way the apiserver's RBAC authorizer matches it: a ``ServiceAccount`` subject with
its name and namespace (a RoleBinding's subject without a namespace means the binding's own), a ``User`` subject
``system:serviceaccount:NS:SA``, or a ``Group`` the token's user belongs to (``system:serviceaccounts``,
``system:serviceaccounts:NS``, ``system:authenticated``). The cluster's default bindings (label
``kubernetes.io/bootstrapping: rbac-defaults``: discovery, basic-user, public-info-viewer) are left out, or every
report would list them. Everything here came from the cluster and is untrusted: it is bounded here, and the report
sanitises it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from responder.ports import KubePort

GROUP, VERSION = "rbac.authorization.k8s.io", "v1"
PLURALS = ("rolebindings", "clusterrolebindings", "roles", "clusterroles")
DEFAULTS_LABEL, DEFAULTS_VALUE = "kubernetes.io/bootstrapping", "rbac-defaults"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"})
READ_VERBS = frozenset({"get", "list", "watch"})
# A session into another pod is as good as a write: exec and attach run commands, port-forward reaches its ports.
SESSION_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
MAX_BINDINGS = 50  # the report's record of them stays far below Cloud Logging's entry size
MAX_RULES = 50  # per binding
MAX_VALUES = 20  # per field of a rule (verbs, resources, names, ...)
MAX_TARGETS = 40  # per rule: every group times every resource times every name can be many
MAX_SUMMARY = 20  # phrases in each of the two summary lines
MAX_NAME = 253


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class RbacRule(_Model):
    """One rule of a Role or ClusterRole, and what it lets the account do."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @property
    def writes(self) -> tuple[str, ...]:
        """The verbs that change something (every verb, on exec, attach or port-forward)."""
        if any(_session(r) for r in self.resources):
            return self.verbs
        return _writes(self.verbs)

    @property
    def targets(self) -> tuple[str, ...]:
        """What the rule applies to: ``resource`` (core), ``resource.group``, ``resource/name``, or a URL path."""
        return tuple(target for target, _, _ in self.access())

    def access(self) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
        """(target, the verbs that write it, the verbs that read it), at most MAX_TARGETS: a session into a pod
        (exec, attach, port-forward) is a write whatever its verb, never a read."""
        out = []
        for group in self.api_groups or ("",):
            for resource in self.resources:
                session = _session(resource)
                writes, reads = (self.verbs, ()) if session else (_writes(self.verbs), _reads(self.verbs))
                base = f"{resource}.{group}" if group else resource
                out += [(f"{base}/{n}", writes, reads) for n in self.resource_names] or [(base, writes, reads)]
        out += [(f"URL {u}", _writes(self.verbs), _reads(self.verbs)) for u in self.non_resource_urls]
        if len(out) > MAX_TARGETS:
            out = [*out[:MAX_TARGETS], (f"{len(out) - MAX_TARGETS} more", (), ())]
        return tuple(out)


class Grant(_Model):
    """A binding that names the account, how it names it, and its role's rules."""

    kind: Literal["RoleBinding", "ClusterRoleBinding"]
    namespace: str | None = None  # a RoleBinding's: its rules hold only there
    name: str
    role_kind: str
    role_name: str
    subject: str  # how it names the account: "ServiceAccount shop/web", "User system:serviceaccount:...", "Group ..."
    direct: bool  # the account itself, not one of its groups
    role_found: bool = True  # False: the role it binds does not exist (yet), so it grants nothing for now
    rules: tuple[RbacRule, ...] = ()
    rules_truncated: int = 0

    @property
    def scope(self) -> str:
        """Where its rules hold."""
        return f"namespace {self.namespace}" if self.namespace else "every namespace"


class Rights(_Model):
    """What the account may do, as far as RBAC says."""

    namespace: str
    account: str
    grants: tuple[Grant, ...] = ()
    truncated: int = 0  # bindings naming the account that are not listed (over MAX_BINDINGS)
    defaults_skipped: int = 0  # the cluster's default bindings that name it (through system:authenticated, ...)

    @property
    def username(self) -> str:
        """The user its tokens authenticate as."""
        return username(self.namespace, self.account)

    def summary(self, access: Literal["writes", "reads"]) -> tuple[str, ...]:
        """``configmaps in namespace shop (create, patch)``, one phrase per target and scope, at most MAX_SUMMARY."""
        verbs: dict[tuple[str, str], list[str]] = {}
        for grant in self.grants:
            for rule in grant.rules:
                for target, writes, reads in rule.access():
                    granted = writes if access == "writes" else reads
                    if granted:
                        seen = verbs.setdefault((target, grant.scope), [])
                        seen.extend(v for v in granted if v not in seen)
        phrases = [f"{target} in {scope} ({', '.join(v)})" for (target, scope), v in verbs.items()]
        if len(phrases) > MAX_SUMMARY:
            phrases = [*phrases[:MAX_SUMMARY], f"{len(phrases) - MAX_SUMMARY} more"]
        return tuple(phrases)


def username(namespace: str, account: str) -> str:
    """The user name a service account's tokens authenticate as."""
    return f"system:serviceaccount:{namespace}:{account}"


def groups(namespace: str) -> tuple[str, ...]:
    """The groups every token of a service account in ``namespace`` carries."""
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")


def gather(kube: KubePort, namespace: str, account: str) -> Rights:
    """List the RBAC objects (four reads) and keep what names the account. Raises what a list raises (Forbidden,
    Unavailable): a read that failed is never taken for "no rights"."""
    listed = {plural: kube.list_objects(GROUP, VERSION, plural) for plural in PLURALS}
    return rights_of(namespace, account, **listed)


def rights_of(
    namespace: str,
    account: str,
    rolebindings: Iterable[Mapping[str, Any]],
    clusterrolebindings: Iterable[Mapping[str, Any]],
    roles: Iterable[Mapping[str, Any]],
    clusterroles: Iterable[Mapping[str, Any]],
) -> Rights:
    """The bindings naming ``namespace``/``account`` (the direct ones first, then the widest), each with its rules."""
    role_rules: dict[tuple[str, str], Mapping[str, Any]] = {(_meta(r, "namespace"), _meta(r, "name")): r for r in roles}
    cluster_rules = {_meta(r, "name"): r for r in clusterroles}
    found: list[Grant] = []
    defaults = 0
    for kind, bindings in (("ClusterRoleBinding", clusterrolebindings), ("RoleBinding", rolebindings)):
        for binding in bindings:
            scope = _meta(binding, "namespace") if kind == "RoleBinding" else None
            how = names(binding.get("subjects"), scope, namespace, account)
            if how is None:
                continue
            labels = _mapping(binding.get("metadata")).get("labels")
            if isinstance(labels, Mapping) and labels.get(DEFAULTS_LABEL) == DEFAULTS_VALUE:
                defaults += 1
                continue
            ref = _mapping(binding.get("roleRef"))
            role_kind, role_name = _text(ref.get("kind")), _text(ref.get("name"))
            role = (
                cluster_rules.get(role_name) if role_kind == "ClusterRole" else role_rules.get((scope or "", role_name))
            )
            rules = [_rule(r) for r in _list(role.get("rules"))] if role is not None else []
            found.append(
                Grant(
                    kind="RoleBinding" if kind == "RoleBinding" else "ClusterRoleBinding",
                    namespace=scope,
                    name=_meta(binding, "name"),
                    role_kind=role_kind,
                    role_name=role_name,
                    subject=how[0],
                    direct=how[1],
                    role_found=role is not None,
                    rules=tuple(rules[:MAX_RULES]),
                    rules_truncated=max(0, len(rules) - MAX_RULES),
                )
            )
    found.sort(key=lambda g: (not g.direct, g.kind != "ClusterRoleBinding", g.namespace or "", g.name))
    return Rights(
        namespace=namespace,
        account=account,
        grants=tuple(found[:MAX_BINDINGS]),
        truncated=max(0, len(found) - MAX_BINDINGS),
        defaults_skipped=defaults,
    )


def names(subjects: object, binding_namespace: str | None, namespace: str, account: str) -> tuple[str, bool] | None:
    """How the subjects name the account: (``"ServiceAccount NS/SA"``, ``"User ..."`` or ``"Group ..."``, whether it
    is the account itself rather than one of its groups; the account itself wins), or None. Also what ``revoke``
    (containment/revoke.py) asks of a binding and of the records release recreates."""
    user, member_of = username(namespace, account), groups(namespace)
    through_group = None
    for subject in _list(subjects):
        kind, name = _text(subject.get("kind")), _text(subject.get("name"))
        if kind == "ServiceAccount":
            # As the authorizer reads it: a RoleBinding's subject without a namespace is in the binding's namespace.
            where = _text(subject.get("namespace")) or binding_namespace
            if where == namespace and name == account:
                return f"ServiceAccount {where}/{name}", True
        elif kind == "User" and name == user:
            return f"User {name}", True
        elif kind == "Group" and name in member_of and through_group is None:
            through_group = f"Group {name}"
    return (through_group, False) if through_group else None


def _rule(raw: Mapping[str, Any]) -> RbacRule:
    def values(key: str) -> tuple[str, ...]:
        return tuple(_text(v) for v in _list(raw.get(key), scalars=True)[:MAX_VALUES])

    return RbacRule(
        verbs=values("verbs"),
        api_groups=values("apiGroups"),
        resources=values("resources"),
        resource_names=values("resourceNames"),
        non_resource_urls=values("nonResourceURLs"),
    )


def _writes(verbs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in verbs if v in WRITE_VERBS or v == "*")


def _reads(verbs: tuple[str, ...]) -> tuple[str, ...]:
    """Admission never sees these, so nothing refuses them."""
    return tuple(v for v in verbs if v in READ_VERBS or v == "*")


def _session(resource: str) -> bool:
    """``pods/exec``, ``pods/attach``, ``pods/portforward``, ``pods/*``, ``*/exec``. A bare ``*`` counts by its verbs
    (its ``create`` is already a write)."""
    parent, _, sub = resource.partition("/")
    return parent in ("pods", "*") and (sub in SESSION_SUBRESOURCES or sub == "*")


def _meta(obj: Mapping[str, Any], key: str) -> str:
    return _text(_mapping(obj.get("metadata")).get(key))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object, *, scalars: bool = False) -> list[Any]:
    """A JSON list's elements: objects only, or (``scalars``) anything; nothing for a value that is not a list."""
    if not isinstance(value, list):
        return []
    return list(value) if scalars else [v for v in value if isinstance(v, Mapping)]


def _text(value: object) -> str:
    return value[:MAX_NAME] if isinstance(value, str) else ""
