"""The responder's RBAC from deploy/kubernetes, applied with kubectl as the admin, and the no-capture identity's
bindings (rbac.yaml's roles alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from node import netpol

from cluster.common import (
    CAPTURE_RBAC,
    CORE_RBAC,
    KUBECTL,
    MANIFEST_DIR,
    NOCAPTURE_IDENTITY,
    RBAC_NAMESPACE,
    RESPONDER_IDENTITY,
    cache_root,
    die,
    log,
)
from cluster.layout import Layout

GUARD_MANIFEST = "admission-guard.yaml"  # a 1.30+ apiserver runs it (not RSR_KUBE=1.20's)
GUARD_NAME = "reverse-shell-responder-guard"  # the policy's and its binding's name
IDENTITY_MANIFEST = "identity-guard.yaml"  # the quarantined pods' tokens may not write (issue 31)
IDENTITY_NAME = "reverse-shell-responder-identity"
POLICIES = ((GUARD_MANIFEST, GUARD_NAME), (IDENTITY_MANIFEST, IDENTITY_NAME))
CLUSTER_QUARANTINE_MANIFEST = "cluster-quarantine.yaml"  # the static Admin-tier ClusterNetworkPolicy (issue 30)
CLUSTER_QUARANTINE_NAME = "rsr-quarantine-deny-all"
CLUSTER_QUARANTINE_PRIORITY = 1  # the local cluster's; Terraform's cluster_quarantine_priority sets a real one
TEMPLATE_VARIABLES = {  # the variables each manifest may have beside responder_identity (Terraform fills the same)
    CLUSTER_QUARANTINE_MANIFEST: frozenset({"priority"}),
}


def render_manifest(name: str, identity: str, **variables: str) -> str:
    """A deploy/kubernetes manifest with `${responder_identity}` (and the manifest's own variables, given here: only
    `${priority}` in cluster-quarantine.yaml) filled in, as Terraform's templatefile() does. A variable left over, or
    one the manifest may not have, stops the start."""
    path = MANIFEST_DIR / name
    unexpected = set(variables) - TEMPLATE_VARIABLES.get(name, frozenset())
    if unexpected:
        die(f"{path} takes no template variable {', '.join(sorted(unexpected))}")
    text = path.read_text().replace("${responder_identity}", identity)
    for key, value in variables.items():
        text = text.replace("${" + key + "}", value)
    if "${" in text:
        allowed = ", ".join(["responder_identity", *sorted(variables)])
        die(f"{path} has a template variable other than {allowed}")
    return text


def kubectl(
    kubeconfig: Path, args: list[str], stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs kubectl (argv, never a shell) against the cluster of `kubeconfig`."""
    if not os.access(KUBECTL, os.X_OK):
        die(f"{KUBECTL} not found; install kubectl or point RSR_KUBECTL at it")
    proc = subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "--request-timeout=30s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        die(f"`kubectl {' '.join(args)}` failed (exit {proc.returncode})")
    return proc


def nocapture_bindings(admin_kubeconfig: Path, core_rbac: str) -> str:
    """rbac.yaml's bindings, renamed and bound to NOCAPTURE_IDENTITY: the same roles, and nothing from rbac-capture."""
    # kubectl turns the YAML into JSON locally, so this file keeps to the standard library.
    rendered = kubectl(admin_kubeconfig, ["create", "--dry-run=client", "-o", "json", "-f", "-"], stdin=core_rbac)
    items: list[dict[str, Any]] = []
    decoder, text, at = json.JSONDecoder(), rendered.stdout, 0
    while text[at:].strip():  # one JSON object per document, one after the other
        at += len(text[at:]) - len(text[at:].lstrip())
        item, at = decoder.raw_decode(text, at)
        items.extend(item["items"] if item.get("kind") == "List" else [item])
    bindings = []
    for item in items:
        if item.get("kind") not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        item["metadata"]["name"] += "-nocapture"
        item["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NOCAPTURE_IDENTITY}]
        bindings.append(item)
    if not bindings:
        die(f"{MANIFEST_DIR / CORE_RBAC} has no bindings to copy for {NOCAPTURE_IDENTITY}")
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": bindings})


def can_i(admin_kubeconfig: Path, user: str, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    """The authorizer's answer for `user` (the admin is in system:masters, so it may impersonate)."""
    args = ["auth", "can-i", verb, resource, f"--namespace={namespace}", f"--as={user}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    return kubectl(admin_kubeconfig, args, check=False).stdout.strip() == "yes"


def apply_rbac(layout: Layout, timeout: float = 20.0) -> None:
    """Gives the local identities their real rights: rbac.yaml + rbac-capture.yaml for the responder, rbac.yaml's
    roles alone for the no-capture identity. Idempotent (server-side apply), so an edited manifest replaces what a
    long-lived cluster stored; waits until the authorizer answers with the new bindings."""
    admin = layout.admin_kubeconfig
    core = render_manifest(CORE_RBAC, RESPONDER_IDENTITY)
    capture = render_manifest(CAPTURE_RBAC, RESPONDER_IDENTITY)
    if f"name: {RBAC_NAMESPACE}" not in core:
        die(f"{MANIFEST_DIR / CORE_RBAC} no longer creates the {RBAC_NAMESPACE} namespace")
    apply = ["apply", "--server-side", "--field-manager=rsr-kubeenv", "--force-conflicts", "-f", "-"]
    # The Namespace is the first object of rbac.yaml, so its Role lands after it in the same apply.
    kubectl(admin, apply, stdin=f"{core}\n---\n{capture}")
    kubectl(admin, apply, stdin=nocapture_bindings(admin, core))

    # The RBAC authorizer reads bindings through informers: for a moment after the apply they are unseen.
    expected = [
        (RESPONDER_IDENTITY, "delete", "pods", "default", "", True),
        (RESPONDER_IDENTITY, "update", "leases", RBAC_NAMESPACE, "", True),
        (RESPONDER_IDENTITY, "create", "pods", "default", "exec", True),
        (NOCAPTURE_IDENTITY, "delete", "pods", "default", "", True),
        (NOCAPTURE_IDENTITY, "update", "leases", RBAC_NAMESPACE, "", True),
    ]
    deadline = time.monotonic() + timeout
    while expected and time.monotonic() < deadline:
        user, verb, resource, namespace, sub, want = expected[0]
        if can_i(admin, user, verb, resource, namespace, sub) == want:
            expected.pop(0)
        else:
            time.sleep(0.2)
    if expected:
        die(f"the RBAC bindings were not in effect within {timeout:.0f}s: {expected[0]}")
    if can_i(admin, NOCAPTURE_IDENTITY, "create", "pods", "default", "exec"):
        die(f"{NOCAPTURE_IDENTITY} may exec: something besides {CAPTURE_RBAC} grants pods/exec")
    log(f"RBAC applied: {RESPONDER_IDENTITY} ({CORE_RBAC} + {CAPTURE_RBAC}), {NOCAPTURE_IDENTITY} ({CORE_RBAC} only)")


def apply_guard(layout: Layout, timeout: float = 30.0) -> None:
    """Installs deploy/kubernetes/admission-guard.yaml and identity-guard.yaml (ValidatingAdmissionPolicies and their
    bindings: a 1.30+ apiserver, not RSR_KUBE=1.20's) and waits until the apiserver has compiled each policy
    (status.observedGeneration); a type-checking warning stops the start, since it means an expression the apiserver
    reads otherwise than the tests. Then the cluster-scoped quarantine: the ClusterNetworkPolicy CRD and
    cluster-quarantine.yaml (apply_cluster_quarantine)."""
    for manifest, name in POLICIES:
        _install_policy(layout.admin_kubeconfig, manifest, name, timeout)
    log(
        f"admission guard installed: {GUARD_NAME} (enforced for {RESPONDER_IDENTITY}); {IDENTITY_NAME} (tokens of pods "
        "in the quarantined identities may not write)"
    )
    apply_cluster_quarantine(layout, timeout)


def apply_cluster_quarantine(layout: Layout, timeout: float = 30.0) -> None:
    """SIG Network's ClusterNetworkPolicy CRD, from the network-policy-api version the node's dataplane pins
    (tools/node/netpol.py reads it from that module), awaited until Established; then the static Admin-tier policy
    deploy/kubernetes/cluster-quarantine.yaml at priority CLUSTER_QUARANTINE_PRIORITY. Idempotent (server-side
    apply)."""
    admin = layout.admin_kubeconfig
    apply = ["apply", "--server-side", "--field-manager=rsr-kubeenv", "--force-conflicts", "-f", "-"]
    try:
        crd = netpol.cluster_network_policy_crd(cache_root())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        die(f"the ClusterNetworkPolicy CRD: {exc}")
    kubectl(admin, apply, stdin=crd.read_text())
    wait = ["wait", "--for=condition=Established", f"--timeout={timeout:.0f}s", f"crd/{netpol.CNP_CRD_NAME}"]
    kubectl(admin, wait)
    quarantine = render_manifest(
        CLUSTER_QUARANTINE_MANIFEST, RESPONDER_IDENTITY, priority=str(CLUSTER_QUARANTINE_PRIORITY)
    )
    # Just Established, the new kind may be unknown to the apiserver's REST mapping for a moment: retry briefly.
    deadline = time.monotonic() + timeout
    while True:
        done = kubectl(admin, apply, stdin=quarantine, check=time.monotonic() >= deadline)
        if done.returncode == 0:
            break
        time.sleep(0.5)
    log(
        f"ClusterNetworkPolicy CRD installed ({crd.parents[3].name}); {CLUSTER_QUARANTINE_NAME} "
        f"(Admin tier, priority {CLUSTER_QUARANTINE_PRIORITY}) from {CLUSTER_QUARANTINE_MANIFEST}"
    )


def _install_policy(admin: Path, manifest: str, name: str, timeout: float) -> None:
    apply = ["apply", "--server-side", "--field-manager=rsr-kubeenv", "--force-conflicts", "-f", "-"]
    kubectl(admin, apply, stdin=render_manifest(manifest, RESPONDER_IDENTITY))
    deadline = time.monotonic() + timeout
    policy: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = kubectl(admin, ["get", "validatingadmissionpolicy", name, "-o", "json"]).stdout
        policy = json.loads(out)
        if policy.get("status", {}).get("observedGeneration") == policy["metadata"]["generation"]:
            break
        time.sleep(0.2)
    else:
        die(f"the apiserver did not compile {name} ({manifest}) within {timeout:.0f}s")
    warnings = (policy["status"].get("typeChecking") or {}).get("expressionWarnings") or []
    if warnings:
        die(f"the apiserver's type check of {manifest} warns: {warnings}")
