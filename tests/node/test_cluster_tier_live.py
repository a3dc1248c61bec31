"""The cluster-scoped tiers proven where the attacker sits: SIG Network's ClusterNetworkPolicy on the real node.

The node's dataplane (tools/node/netpol.py) evaluates kube-network-policies' ClusterNetworkPolicy Admin tier before
NetworkPolicy and its Baseline tier after; `make kube-up` installs the CRD and the static Admin-tier Deny
(deploy/kubernetes/cluster-quarantine.yaml, `rsr-quarantine-deny-all`, priority 1) that selects quarantined pods. Each
test opens a live reverse shell (as tests/node/test_reverse_shell.py does) in `established` mode, adds a
ClusterNetworkPolicy of its own, replays the finding, and reads what the attacker sees. Every test asserts on the
attacker's end and on new connections only, never on the responder's record, so they stay true while the responder
learns to judge the cluster-scoped tiers. A bystander pod in the victim's namespace keeps connecting throughout.

    a. an Admin `Accept` (priority 500) for the victim's egress to the attacker, without the static Deny: the
       namespace's deny-all cannot cut the shell (the Admin tier comes first); the static Deny, re-created, cuts it
    b. the same `Accept` at 500 under the static Deny at 1: the shell is cut; `responder release` opens the pod again
    c. a Baseline `Accept` selecting the victim (the static Deny set aside): the namespace's deny-all comes first, and
       the shell is cut; no escalation
    d. an Admin `Accept` at a better priority than the static Deny: the responder judges it reopening, the
       live-session rule escalates (capture, then delete), the shell ends with the pod and the record names the policy
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.node.test_reverse_shell import assert_cut, assert_still_answering, dataplane
from tests.support import reverse_shell as rs
from tests.support import workloads as w
from tests.support.common import responder_cli
from tests.support.kube import KubeEnv

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]
SHELL_POLICY = ROOT / "policy.yaml"
GROUP, VERSION, PLURAL = "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies"
STATIC = "rsr-quarantine-deny-all"  # deploy/kubernetes/cluster-quarantine.yaml, installed by `make kube-up`
ACCEPT_PRIORITY = 500  # worse than the static Deny's 1: the responder need not escalate for it
NAME_KEY = "kubernetes.io/metadata.name"


@pytest.fixture
def established(kube_env: KubeEnv, kube_node: dict[str, Any]) -> None:
    dataplane(kube_env, "established")


@pytest.fixture
def namespaces(kube_admin: client.ApiClient) -> Iterator[tuple[str, str]]:
    victim = rs.create_namespace(kube_admin, "shop")
    attacker = rs.create_namespace(kube_admin, "c2")
    yield victim, attacker
    for name in (victim, attacker):
        client.CoreV1Api(kube_admin).delete_namespace(name)


@pytest.fixture
def cluster_policies(kube_admin: client.ApiClient) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Creates ClusterNetworkPolicies as the cluster admin; every one is deleted at the end, whatever happens."""
    api = client.CustomObjectsApi(kube_admin)
    created: list[str] = []

    def create(spec: dict[str, Any]) -> str:
        name = f"rsr-test-{uuid.uuid4().hex[:8]}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterNetworkPolicy", "metadata": {"name": name}}
        api.create_cluster_custom_object(GROUP, VERSION, PLURAL, {**body, "spec": spec})
        created.append(name)
        return name

    yield create
    for name in created:
        try:
            api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def static_deny(kube_admin: client.ApiClient) -> Iterator[dict[str, Any]]:
    """The static Admin-tier Deny as `make kube-up` installed it; re-created at the end if a test deleted it."""
    api = client.CustomObjectsApi(kube_admin)
    policy: dict[str, Any] = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, STATIC)
    assert (policy["spec"]["tier"], policy["spec"]["priority"]) == ("Admin", 1), policy["spec"]
    yield policy
    try:
        api.get_cluster_custom_object(GROUP, VERSION, PLURAL, STATIC)
    except ApiException as exc:
        if exc.status != 404:
            raise
        restore_static(kube_admin, policy)


def restore_static(api: client.ApiClient, policy: dict[str, Any]) -> None:
    meta = {"name": policy["metadata"]["name"], "labels": policy["metadata"].get("labels") or {}}
    body = {"apiVersion": policy["apiVersion"], "kind": policy["kind"], "metadata": meta, "spec": policy["spec"]}
    client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)


def victim_subject(shell: rs.Shell) -> dict[str, Any]:
    app = shell.victim_pod.metadata.labels["app"]
    return {
        "pods": {
            "namespaceSelector": {"matchLabels": {NAME_KEY: shell.victim_namespace}},
            "podSelector": {"matchLabels": {"app": app}},
        }
    }


def accept_egress_to_attacker(shell: rs.Shell, tier: str, priority: int) -> dict[str, Any]:
    """A `tier` policy whose subject is the victim and whose egress `Accept` reaches the attacker's pod."""
    attacker = {
        "pods": {
            "namespaceSelector": {"matchLabels": {NAME_KEY: shell.attacker_namespace}},
            "podSelector": {"matchLabels": {"app": "c2"}},
        }
    }
    return {
        "tier": tier,
        "priority": priority,
        "subject": victim_subject(shell),
        "egress": [{"name": "to-the-c2", "action": "Accept", "to": [attacker]}],
    }


def report_only_policy(tmp_path: Path) -> Path:
    """The shipped policy with `live_session: report` on every isolate step: the pod is never deleted, whatever the
    responder concludes about the shell (today it reports it cut; once it judges the Admin tier, not contained)."""
    doc = yaml.safe_load(SHELL_POLICY.read_text())
    doc["defaults"]["live_session"] = "report"
    for rule in doc["rules"]:
        for step in rule["actions"]:
            if step["action"] == "isolate":
                step["live_session"] = "report"
    path = tmp_path / "policy-report.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def replay(kube_env: KubeEnv, shell: rs.Shell, tmp_path: Path, policy: Path) -> tuple[datetime, str]:
    """`python -m responder replay` of the shell's finding as the responder's least-privilege identity, in enforce
    mode; only "it ran" is asserted here (0 contained or 3 not contained). Returns when it did, and its JSON report."""
    finding = tmp_path / f"finding-{uuid.uuid4().hex[:8]}.json"
    finding.write_text(json.dumps(shell.finding()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(
        {
            "RESPONDER_MODE": "enforce",
            "RESPONDER_KUBECONFIG": str(kube_env.responder_kubeconfig),
            "RESPONDER_VERIFY_FINDING": "false",
            "RESPONDER_BUDGET_MAX": "1000",
            "RESPONDER_GOOGLE_APIS": "off",
            "RESPONDER_NETPOL_ENFORCEMENT": "established",
            "RESPONDER_POLICY_FILE": str(policy),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "responder", "replay", str(finding), "--report", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr[-3000:]
    return datetime.now(UTC), done.stdout


def pod_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


class Bystander:
    """A pod in the victim's namespace, without the quarantine label, that must keep connecting to the attacker."""

    def __init__(self, api: client.ApiClient, shell: rs.Shell) -> None:
        self.api, self.shell = api, shell
        w.create_running_deployment(api, shell.victim_namespace, "bystander", 1, "sleep 2147483647")
        (pod,) = w.wait_for_running(api, shell.victim_namespace, 1, "app=bystander")
        self.name = pod.metadata.name

    def check(self, when: str) -> None:
        ns = self.shell.victim_namespace
        assert rs.connects(self.api, ns, self.name, self.shell.attacker_ip, rs.PROBE_PORT), f"bystander cut {when}"


def test_admin_accept_keeps_the_shell_alive_past_the_namespace_deny_all_without_the_static_deny(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    established: None,
    static_deny: dict[str, Any],
    cluster_policies: Callable[[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)
    bystander = Bystander(kube_admin, shell)
    bystander.check("before anything")
    cluster_policies(accept_egress_to_attacker(shell, "Admin", ACCEPT_PRIORITY))
    custom = client.CustomObjectsApi(kube_admin)
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, STATIC)
    try:
        replayed, _ = replay(kube_env, shell, tmp_path, report_only_policy(tmp_path))
        victim = shell.victim_pod.metadata.name
        assert pod_exists(kube_admin, victim_ns, victim), "live_session: report never deletes the pod"
        labels = client.CoreV1Api(kube_admin).read_namespaced_pod(victim, victim_ns).metadata.labels
        assert labels.get("responder.rsr.dev/quarantine") == "true", labels  # quarantined by the namespace's layer
        # The Admin tier's Accept comes before NetworkPolicy: the deny-all cannot cut the shell's egress.
        assert_still_answering(shell, replayed, 12.0)
        bystander.check("after the replay")
    finally:
        restore_static(kube_admin, static_deny)
    # The static Deny back (priority 1 beats the Accept's 500): its creation alone triggers the sweep that cuts it.
    restored = datetime.now(UTC)
    last = assert_cut(shell, restored)
    # Within seconds: the ClusterNetworkPolicy informer's event starts the sweep (the dataplane's 10 s safety-net
    # sweep alone would often be later than this).
    assert (last - restored).total_seconds() < 5.0, (last, restored)
    bystander.check("after the static deny came back")


def test_static_admin_deny_outranks_a_worse_admin_accept_and_release_reopens_the_pod(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    established: None,
    static_deny: dict[str, Any],
    cluster_policies: Callable[[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)
    bystander = Bystander(kube_admin, shell)
    accept = cluster_policies(accept_egress_to_attacker(shell, "Admin", ACCEPT_PRIORITY))
    time.sleep(1)
    assert_still_answering(shell, datetime.now(UTC), 3.0)  # the Accept alone changes nothing for a live shell
    bystander.check("before the replay")

    replayed, report = replay(kube_env, shell, tmp_path, SHELL_POLICY)
    assert_cut(shell, replayed)
    victim = shell.victim_pod.metadata.name
    assert pod_exists(kube_admin, victim_ns, victim), "an outranked Accept is no reason to escalate"
    isolate = next(a for a in json.loads(report)["response"]["actions"] if a["action"] == "isolate")
    assert f"held at the cluster tier (ClusterNetworkPolicy {STATIC})" in isolate["reason"], isolate
    assert not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT), "new egress allowed"
    assert not rs.connects(kube_admin, attacker_ns, "c2", shell.victim_ip, rs.SERVICE_PORT), "new ingress allowed"
    bystander.check("after the replay")

    # Release as the operator (the admin kubeconfig): the label goes, so neither the static Deny nor the namespace's
    # deny-all selects the pod. The test's Accept goes first, so only the release can explain what opens again.
    client.CustomObjectsApi(kube_admin).delete_cluster_custom_object(GROUP, VERSION, PLURAL, accept)
    released = responder_cli(
        "release", f"{victim_ns}/{victim}", "--yes", "--json", "--without-marks", "--reason", "test: contained",
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")},
             "RESPONDER_KUBECONFIG": str(kube_env.kubeconfig), "RESPONDER_GOOGLE_APIS": "off"},
    )  # fmt: skip
    assert released.returncode == 0, released.stdout[-2000:] + released.stderr[-2000:]
    labels = client.CoreV1Api(kube_admin).read_namespaced_pod(victim, victim_ns).metadata.labels or {}
    assert "responder.rsr.dev/quarantine" not in labels, labels
    deadline = time.monotonic() + 30
    while not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT):
        assert time.monotonic() < deadline, "the released pod still cannot connect out"
    assert rs.connects(kube_admin, attacker_ns, "c2", shell.victim_ip, rs.SERVICE_PORT), "the released pod is shut"
    bystander.check("after the release")


def test_baseline_accept_does_not_reopen_a_quarantined_pod(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    established: None,
    static_deny: dict[str, Any],
    cluster_policies: Callable[[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)
    bystander = Bystander(kube_admin, shell)
    baseline = accept_egress_to_attacker(shell, "Baseline", 0)
    baseline["ingress"] = [{"name": "from-anywhere", "action": "Accept", "from": [{"namespaces": {}}]}]
    cluster_policies(baseline)
    bystander.check("before the replay")
    # Without the static Admin Deny, so that only the namespace's deny-all stands between the Baseline Accept and the
    # shell: NetworkPolicy is evaluated first, and it denies.
    client.CustomObjectsApi(kube_admin).delete_cluster_custom_object(GROUP, VERSION, PLURAL, STATIC)
    try:
        replayed, _ = replay(kube_env, shell, tmp_path, SHELL_POLICY)
        assert_cut(shell, replayed)
        victim = shell.victim_pod.metadata.name
        assert pod_exists(kube_admin, victim_ns, victim), "a Baseline Accept is no reason to escalate"
        assert not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT), "new egress allowed"
        assert not rs.connects(kube_admin, attacker_ns, "c2", shell.victim_ip, rs.SERVICE_PORT), "ingress allowed"
        bystander.check("after the replay")
    finally:
        restore_static(kube_admin, static_deny)
    bystander.check("with the static deny back")


def test_an_admin_accept_ahead_of_the_static_deny_escalates_and_the_shell_ends_with_the_pod(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    established: None,
    static_deny: dict[str, Any],
    cluster_policies: Callable[[dict[str, Any]], str],
    tmp_path: Path,
) -> None:
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)
    bystander = Bystander(kube_admin, shell)
    accept = cluster_policies(accept_egress_to_attacker(shell, "Admin", 0))  # better than the static Deny's 1
    bystander.check("before the replay")
    replayed, report = replay(kube_env, shell, tmp_path, SHELL_POLICY)  # shipped policy: live_session: escalate
    actions = {a["action"]: a for a in json.loads(report)["response"]["actions"]}
    isolate = actions["isolate"]
    assert isolate["reason"].startswith("NOT HELD") and f"ClusterNetworkPolicy {accept}: reopens" in isolate["reason"]
    assert actions["delete"]["status"] == "succeeded", actions
    victim = shell.victim_pod.metadata.name
    assert not pod_exists(kube_admin, victim_ns, victim) or _terminating(kube_admin, victim_ns, victim)
    assert_cut(shell, replayed)  # the shell ends with the pod
    bystander.check("after the escalation")


def _terminating(api: client.ApiClient, namespace: str, name: str) -> bool:
    pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    return pod.metadata.deletion_timestamp is not None
