"""deploy/kubernetes/cluster-quarantine.yaml, the static Admin-tier ClusterNetworkPolicy (issue 30), as `make kube-up`
renders it (tools/cluster/rbac.py fills `${priority}` the way Terraform's templatefile() will): it parses, sits in the
Admin tier, selects the quarantine label and nothing else, and denies both directions. The node tier proves what the
dataplane makes of it (tests/node/test_cluster_tier_live.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from cluster import rbac
from cluster.common import RESPONDER_IDENTITY
from cluster.layout import Layout
from node import netpol

from responder.containment.keys import QUARANTINE_LABEL

MANIFEST = rbac.CLUSTER_QUARANTINE_MANIFEST


def rendered(priority: str = "1") -> dict[str, Any]:
    doc = yaml.safe_load(rbac.render_manifest(MANIFEST, RESPONDER_IDENTITY, priority=priority))
    assert isinstance(doc, dict)
    return doc


def test_the_manifest_renders_to_an_admin_tier_deny_of_the_quarantine_label() -> None:
    policy = rendered("7")
    assert (policy["apiVersion"], policy["kind"]) == ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy")
    assert policy["metadata"]["name"] == rbac.CLUSTER_QUARANTINE_NAME
    spec = policy["spec"]
    assert spec["tier"] == "Admin"
    assert spec["priority"] == 7  # an integer once filled, as the CRD's schema wants
    subject = spec["subject"]
    assert set(subject) == {"pods"}, subject  # never `namespaces` alone: that would be every pod of a namespace
    assert subject["pods"]["podSelector"] == {"matchLabels": {QUARANTINE_LABEL: "true"}}
    (excluded,) = subject["pods"]["namespaceSelector"]["matchExpressions"]
    assert (excluded["key"], excluded["operator"]) == ("kubernetes.io/metadata.name", "NotIn")
    assert {"kube-system", "responder-system"} <= set(excluded["values"])
    assert [(r["action"], r["from"]) for r in spec["ingress"]] == [("Deny", [{"namespaces": {}}])]
    assert [(r["action"], r["to"]) for r in spec["egress"]] == [("Deny", [{"networks": ["0.0.0.0/0", "::/0"]}])]


def test_priority_must_be_given_and_only_this_manifest_takes_it() -> None:
    with pytest.raises(SystemExit):
        rbac.render_manifest(MANIFEST, RESPONDER_IDENTITY)  # ${priority} left over
    with pytest.raises(SystemExit):
        rbac.render_manifest(rbac.GUARD_MANIFEST, RESPONDER_IDENTITY, priority="1")
    with pytest.raises(SystemExit):
        rbac.render_manifest(MANIFEST, RESPONDER_IDENTITY, priority="1", tier="Baseline")


def test_kube_up_installs_the_crd_then_the_policy_at_priority_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    crd = tmp_path / "network-policy-api@v0" / "config" / "crd" / "standard" / "cnp.yaml"
    crd.parent.mkdir(parents=True)
    crd.write_text("kind: CustomResourceDefinition\n")
    calls: list[tuple[list[str], str | None]] = []

    class Done:
        returncode = 0
        stdout = ""

    def kubectl(_: Path, args: list[str], stdin: str | None = None, check: bool = True) -> Done:
        calls.append((args, stdin))
        return Done()

    monkeypatch.setattr(rbac, "kubectl", kubectl)
    monkeypatch.setattr(netpol, "cluster_network_policy_crd", lambda _cache: crd)
    rbac.apply_cluster_quarantine(Layout(tmp_path))

    (apply_crd, crd_text), (wait, _), (apply_policy, policy_text) = calls
    assert apply_crd[0] == "apply" and crd_text == crd.read_text()
    assert wait[:2] == ["wait", "--for=condition=Established"] and wait[-1] == f"crd/{netpol.CNP_CRD_NAME}"
    assert apply_policy[0] == "apply" and policy_text is not None
    policy = yaml.safe_load(policy_text)
    assert rbac.CLUSTER_QUARANTINE_PRIORITY == 1
    assert (policy["spec"]["tier"], policy["spec"]["priority"]) == ("Admin", 1)


def test_the_dataplane_identity_reads_cluster_network_policies_and_nodes_and_writes_nothing() -> None:
    (role,) = [item for item in netpol.RBAC["items"] if item["kind"] == "ClusterRole"]  # type: ignore[index]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("", "nodes"), ("policy.networking.k8s.io", "clusternetworkpolicies")} <= granted
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in role["rules"])
