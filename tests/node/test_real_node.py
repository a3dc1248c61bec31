"""The runbook's step 5 and 7 against running containers on the real node (tools/kubeenv.py, root).

The responder is driven as a user drives it: `python -m responder replay FINDING --report json` in a subprocess, as
its least-privilege identity (`.testenv/responder.kubeconfig`), in enforce mode. There is no Security Command Center
here to re-read a finding from, so RESPONDER_VERIFY_FINDING=false (the verification has its own suites).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.notifications import notification
from tests.support import workloads as w
from tests.support.kube import KubeEnv

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]

# Runs the replay as its only child and reports that child's peak resident memory (ru_maxrss of RUSAGE_CHILDREN
# counts only children this wrapper waited for: just the one).
MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "peak_kib": peak}))
"""


def finding_for(pod: Any) -> dict[str, Any]:
    """A Reverse Shell finding about a live pod: its namespace, name and container, happening now."""
    return notification(
        namespace=pod.metadata.namespace,
        pod=pod.metadata.name,
        container=pod.spec.containers[0].name,
        name_suffix=uuid.uuid4().hex,
    )


def replay(
    kube_env: KubeEnv, finding: dict[str, Any], tmp_path: Path, expect_rc: int = 0, **env_overrides: str
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(decision record, incident report, peak RSS in KiB) of one `python -m responder replay --report json`, which
    must exit ``expect_rc`` (3: not contained)."""
    path = tmp_path / f"finding-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(finding))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(
        {
            "RESPONDER_MODE": "enforce",
            "RESPONDER_KUBECONFIG": str(kube_env.responder_kubeconfig),
            "RESPONDER_VERIFY_FINDING": "false",
            "RESPONDER_BUDGET_MAX": "1000",
            "RESPONDER_GOOGLE_APIS": "off",
            # The node's dataplane cuts established connections (tools/node/netpol.py, `established` unless a test
            # switches it): stated, as an operator of a Dataplane V2 cluster would. "auto" reads it as new-only.
            "RESPONDER_NETPOL_ENFORCEMENT": "established",
            **env_overrides,
        }
    )
    cmd = [sys.executable, "-m", "responder", "replay", str(path), "--report", "json"]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["rc"] == expect_rc, result["stderr"][-3000:]
    records = [json.loads(line) for line in result["stderr"].splitlines() if line.startswith('{"')]
    record = next(r for r in reversed(records) if "verdict" in r)
    return record, json.loads(result["stdout"]), int(result["peak_kib"])


def actions(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["action"]: a for a in record["actions"]}


def exec_in(api: client.ApiClient, pod: Any, argv: list[str]) -> str:
    from kubernetes.stream import stream

    return str(
        stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            pod.metadata.name,
            pod.metadata.namespace,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
    )


# ----------------------------------------------------------------------------------------------------- the node


def test_node_runs_sealed_in_its_own_network_namespace(kube_env: KubeEnv, kube_node: dict[str, Any]) -> None:
    state = json.loads((kube_env.directory / "state.json").read_text())
    host_netns = os.stat("/proc/self/ns/net").st_ino
    node_netns = os.stat(f"/run/netns/{kube_node['netns']}").st_ino
    assert node_netns == kube_node["netns_inode"] != host_netns
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "containerd", "kubelet", "kube-scheduler"):
        assert os.stat(f"/proc/{state['pids'][name]}/ns/net").st_ino == node_netns, name
    # Inside: loopback, and on each pod's veth (ptp) the pod subnet's gateway address; routes lead only into the pod
    # subnet (one host route per pod), which is otherwise unreachable. No default route: nothing leaves.
    subnet = ipaddress.ip_network(kube_node["pod_subnet"])
    addresses = subprocess.run(
        ["ip", "-n", kube_node["netns"], "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    inet = {line.split()[3] for line in addresses.splitlines() if " inet " in line}
    assert "127.0.0.1/8" in inet
    assert all(ipaddress.ip_interface(a).ip in subnet for a in inet - {"127.0.0.1/8"}), inet
    routes = subprocess.run(["ip", "-n", kube_node["netns"], "route"], capture_output=True, text=True, check=True)
    lines = routes.stdout.splitlines()
    assert f"unreachable {kube_node['pod_subnet']}" in [line.strip() for line in lines], lines
    assert not any(line.startswith("default") for line in lines), lines
    assert all(ipaddress.ip_network(line.split()[1 if line.startswith("unreachable") else 0]).subnet_of(subnet)
               for line in lines), lines  # fmt: skip


def test_kubelet_refuses_an_unauthenticated_call(kube_env: KubeEnv, kube_node: dict[str, Any]) -> None:
    port = json.loads((kube_env.directory / "state.json").read_text())["ports"]["kubelet"]
    probe = (
        "import ssl, sys, urllib.request, urllib.error\n"
        f"ctx = ssl.create_default_context(cafile={str(kube_env.directory / 'pki' / 'ca.crt')!r})\n"
        "try:\n"
        f"    urllib.request.urlopen('https://127.0.0.1:{port}/pods', context=ctx, timeout=5)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code)\n"
    )
    # The kubelet's serving certificate verifies against the cluster CA (IP 127.0.0.1); without a client identity it
    # answers 401 Unauthorized.
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{kube_node['netns']}", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip() == "401", done.stderr


def test_pods_reach_nothing_but_their_subnet(
    kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any]
) -> None:
    w.create_running_deployment(kube_admin, kube_namespace, "probe", command="sleep 2147483647")
    (pod,) = w.wait_for_running(kube_admin, kube_namespace, 1, "app=probe")
    routes = exec_in(kube_admin, pod, ["ip", "route"])
    assert "default" not in routes
    assert kube_node["pod_subnet"].rsplit(".", 1)[0] in routes
    out = exec_in(kube_admin, pod, ["sh", "-c", "nc -w 2 192.0.2.1 80 </dev/null; echo rc=$?"])
    assert "Network is unreachable" in out
    assert "nameserver 127.0.0.1" in exec_in(kube_admin, pod, ["cat", "/etc/resolv.conf"])


# ---------------------------------------------------------------------------------------------------- capture


def test_capture_returns_the_real_process_tree_and_log_tail(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    w.create_running_deployment(kube_admin, kube_namespace, "shop", replicas=2)
    pod = w.wait_for_running(kube_admin, kube_namespace, 2, "app=shop")[0]
    time.sleep(1.5)  # the in-pod "attacker" has sent its commands (the shell's answers are in the log)
    record, report, _ = replay(kube_env, finding_for(pod), tmp_path)

    assert record["verdict"] == "act", record
    capture = actions(record)["capture"]
    assert capture["status"] == "succeeded", capture
    assert "process tree" in capture["details"]["captured"], capture
    tree = report["inspect"]["process_tree"]
    assert "PPID" in tree
    assert "COMMAND" in tree
    assert "nc -l -p 4444" in tree  # the listener
    assert "/bin/sh" in tree  # the shell `nc -e` handed over
    assert "ps axjf" in tree  # the responder's own exec, as a real `ps` shows it
    assert "uid=0(root)" in report["logs"]["captured_tail"]  # the shell's answer to the attacker's `id`
    assert actions(record)["isolate"]["status"] == "succeeded"
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(pod.metadata.name, kube_namespace)
    assert live.status.phase == "Running"  # isolation leaves the evidence running


HOSTILE_BYTES = 64 * 1024 * 1024
# The container is the attacker's: it replaces `ps` with a program that prints 64 MiB.
HOSTILE_PS = (
    "printf '#!/bin/sh\\nyes attacker-controlled-output-attacker-controlled-output | head -c "
    f"{HOSTILE_BYTES}\\n' > /usr/bin/ps && chmod 755 /usr/bin/ps && echo ready && sleep 2147483647"
)


def test_hostile_output_is_cut_at_the_cap_and_does_not_grow_memory(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    kube_namespace: str,
    kube_node: dict[str, Any],
    tmp_path: Path,
) -> None:
    from responder.adapters.kube import KubeAdapter

    w.create_running_deployment(kube_admin, kube_namespace, "honest", command="sleep 2147483647")
    w.create_running_deployment(kube_admin, kube_namespace, "hostile", command=HOSTILE_PS)
    honest = w.wait_for_running(kube_admin, kube_namespace, 1, "app=honest")[0]
    hostile = w.wait_for_running(kube_admin, kube_namespace, 1, "app=hostile")[0]

    # The adapter itself, with a small cap: it stops reading at the cap (the marker says so, not the deadline's).
    out = KubeAdapter(kube_responder).exec(kube_namespace, hostile.metadata.name, "api", ["ps", "axjf"], 60, 64 * 1024)
    assert out.truncated_at == 64 * 1024 and out.stopped_after_s is None, out.text[-200:]
    assert len(out.text.encode()) <= 64 * 1024 + 100

    # The whole responder, twice, the same way: an honest `ps`, then the hostile one (64 MiB against the default
    # 256 KiB cap). Were the output held, the peak would grow by 64 MiB or more (Python strings).
    _, honest_report, honest_peak = replay(kube_env, finding_for(honest), tmp_path)
    hostile_record, hostile_report, hostile_peak = replay(kube_env, finding_for(hostile), tmp_path)
    print(f"\npeak RSS of the replay: honest ps {honest_peak / 1024:.1f} MiB, hostile {hostile_peak / 1024:.1f} MiB")
    assert "PPID" in honest_report["inspect"]["process_tree"]
    assert "attacker-controlled-output" in hostile_report["inspect"]["process_tree"]
    assert "process tree" in actions(hostile_record)["capture"]["details"]["captured"]
    assert hostile_peak - honest_peak < 16 * 1024, (honest_peak, hostile_peak)


# ------------------------------------------------------------------------------------------------------ respond


def test_delete_after_capture_gets_a_running_replacement(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    w.create_running_deployment(kube_admin, kube_namespace, "shop", replicas=2)
    suspect = w.wait_for_running(kube_admin, kube_namespace, 2, "app=shop")[0]
    record, report, _ = replay(kube_env, finding_for(suspect), tmp_path, RESPONDER_ACTION="delete")

    steps = actions(record)
    assert steps["delete"]["status"] == "succeeded", steps
    assert [a["action"] for a in record["actions"]].index("capture") < [a["action"] for a in record["actions"]].index(
        "delete"
    )
    assert "nc -l -p 4444" in report["inspect"]["process_tree"]  # captured before the pod went
    started = time.monotonic()
    replacement = w.wait_for_running(
        kube_admin, kube_namespace, 2, "app=shop", timeout_s=60, exclude_uids={suspect.metadata.uid}
    )
    print(f"\nreplacement Running {time.monotonic() - started:.1f}s after the replay returned")
    assert all(p.metadata.uid != suspect.metadata.uid for p in replacement)


def test_stale_uid_patch_against_a_replaced_pod_reads_as_replaced(
    kube_admin: client.ApiClient, kube_responder: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any]
) -> None:
    from responder.adapters.kube import KubeAdapter
    from responder.errors import Conflict

    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": w.runnable_spec("sleep 2147483647")},
        },
    }
    client.AppsV1Api(kube_admin).create_namespaced_stateful_set(kube_namespace, body)
    (first,) = w.wait_for_running(kube_admin, kube_namespace, 1, "app=db")
    client.CoreV1Api(kube_admin).delete_namespaced_pod("db-0", kube_namespace, grace_period_seconds=0)
    (second,) = w.wait_for_running(
        kube_admin, kube_namespace, 1, "app=db", timeout_s=60, exclude_uids={first.metadata.uid}
    )
    assert second.metadata.name == "db-0" and second.metadata.uid != first.metadata.uid  # same name, another pod

    with pytest.raises(Conflict, match="replaced"):
        KubeAdapter(kube_responder).patch_pod_metadata(
            kube_namespace, "db-0", first.metadata.uid, {"responder.rsr.dev/quarantine": "true"}, {}
        )
    labels = client.CoreV1Api(kube_admin).read_namespaced_pod("db-0", kube_namespace).metadata.labels
    assert "responder.rsr.dev/quarantine" not in labels  # the running replacement was not touched


def test_host_network_pod_is_not_isolatable_and_escalates_per_policy(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_namespace: str, kube_node: dict[str, Any], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "defaults:\n"
        "  live_session: escalate\n"
        "rules:\n"
        "  - name: isolate-everything\n"
        "    actions:\n"
        "      - action: isolate\n"
    )
    # hostNetwork on this node means the node's own sealed namespace: still nothing but loopback.
    w.create_running_deployment(kube_admin, kube_namespace, "agent", 2, "sleep 2147483647", host_network=True)
    suspect = w.wait_for_running(kube_admin, kube_namespace, 2, "app=agent")[0]
    assert suspect.spec.host_network
    record, report, _ = replay(kube_env, finding_for(suspect), tmp_path, RESPONDER_POLICY_FILE=str(policy))

    steps = actions(record)
    assert steps["isolate"]["status"] == "failed", steps
    assert "hostNetwork" in steps["isolate"]["reason"]
    order = [a["action"] for a in record["actions"]]
    assert order.index("capture") < order.index("delete"), order  # escalation: evidence first, then delete
    assert steps["delete"]["status"] == "succeeded", steps
    assert "sleep 2147483647" in report["inspect"]["process_tree"]
