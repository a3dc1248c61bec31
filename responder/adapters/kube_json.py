"""Kubernetes API JSON (as the apiserver sends it) reduced to the views in ``responder.ports``.

The object itself stays JSON (``PodView.manifest``, ``NetworkPolicyView.spec``): the evidence and the deny-all's
content check see exactly what the server stored, with no model class in between to drop or rename a field.
"""

from __future__ import annotations

from typing import Any

from responder.ports import (
    ConfigMapView,
    ContainerView,
    LabelSelector,
    LabelSelectorRequirement,
    LeaseView,
    NetworkPolicyView,
    OwnerRef,
    PodView,
    ServiceAccountView,
    WorkloadView,
)

MAX_ACCOUNT_SECRETS = 50  # named in the report; a bound, since the object is the cluster's, not ours


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def selector(raw: Any) -> LabelSelector:
    """A ``LabelSelector`` JSON object (absent: the empty selector, which selects every pod)."""
    raw = _dict(raw)
    return LabelSelector(
        match_labels=_strings(raw.get("matchLabels")),
        match_expressions=tuple(
            LabelSelectorRequirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
            for e in raw.get("matchExpressions") or ()
        ),
    )


def owners(meta: dict[str, Any]) -> tuple[OwnerRef, ...]:
    """``metadata.ownerReferences``."""
    return tuple(
        OwnerRef(
            api_version=o["apiVersion"],
            kind=o["kind"],
            name=o["name"],
            uid=o["uid"],
            controller=bool(o.get("controller")),
        )
        for o in meta.get("ownerReferences") or ()
    )


def pod_view(pod: dict[str, Any]) -> PodView:
    """A Pod object."""
    meta, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or ()}
    containers = []
    for c in spec.get("containers") or ():
        st = statuses.get(c.get("name"))
        sc = _dict(c.get("securityContext"))
        containers.append(
            ContainerView(
                name=c["name"],
                image=c.get("image"),
                image_id=st.get("imageID") if st else None,
                ready=st.get("ready") if st else None,
                running=bool(st and _dict(st.get("state")).get("running") is not None),
                restart_count=int(st.get("restartCount") or 0) if st else 0,
                privileged=bool(sc.get("privileged")),
                run_as_user=sc.get("runAsUser"),
                allow_privilege_escalation=sc.get("allowPrivilegeEscalation"),
            )
        )
    return PodView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        resource_version=meta.get("resourceVersion"),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        owners=owners(meta),
        node_name=spec.get("nodeName"),
        host_network=bool(spec.get("hostNetwork")),
        host_pid=bool(spec.get("hostPID")),
        service_account=spec.get("serviceAccountName"),
        phase=status.get("phase"),
        start_time=status.get("startTime"),
        created=meta.get("creationTimestamp"),
        deleting=meta.get("deletionTimestamp") is not None,
        containers=tuple(containers),
        manifest=pod,
    )


def network_policy_view(obj: dict[str, Any]) -> NetworkPolicyView:
    """A NetworkPolicy object."""
    meta, spec = _dict(obj.get("metadata")), _dict(obj.get("spec"))
    return NetworkPolicyView(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=meta.get("resourceVersion"),
        pod_selector=selector(spec.get("podSelector")),
        policy_types=tuple(spec.get("policyTypes") or ()),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        spec=spec,
    )


def workload_view(kind: str, namespace: str, obj: dict[str, Any]) -> WorkloadView:
    """A ReplicaSet, Deployment, StatefulSet, DaemonSet, Job or CronJob."""
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    return WorkloadView(
        kind=kind,
        namespace=namespace,
        name=meta["name"],
        uid=meta["uid"],
        owners=owners(meta),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        replicas=spec.get("replicas"),
        ready_replicas=status.get("readyReplicas") or status.get("numberReady"),
    )


def config_map_view(obj: dict[str, Any]) -> ConfigMapView:
    """A ConfigMap's identity and data."""
    meta = _dict(obj.get("metadata"))
    return ConfigMapView(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=meta.get("resourceVersion"),
        data=_strings(obj.get("data")),
    )


def lease_view(obj: dict[str, Any]) -> LeaseView:
    """A coordination.k8s.io Lease."""
    meta = _dict(obj.get("metadata"))
    return LeaseView(
        namespace=meta["namespace"],
        name=meta["name"],
        resource_version=meta.get("resourceVersion"),
        annotations=_strings(meta.get("annotations")),
    )


def service_account_view(namespace: str, name: str, obj: dict[str, Any]) -> ServiceAccountView:
    """A ServiceAccount: its annotations, the Secrets its ``secrets`` field names (by name: the responder never reads
    a Secret) and ``automountServiceAccountToken``."""
    meta = _dict(obj.get("metadata"))
    refs = obj.get("secrets")
    refs = refs if isinstance(refs, list) else []
    secrets = [str(r["name"]) for r in refs if isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"]]
    automount = obj.get("automountServiceAccountToken")
    return ServiceAccountView(
        namespace=namespace,
        name=name,
        annotations=_strings(meta.get("annotations")),
        secrets=tuple(dict.fromkeys(secrets))[:MAX_ACCOUNT_SECRETS],
        automount_token=automount if isinstance(automount, bool) else None,
    )
