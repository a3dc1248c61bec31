"""`tools/kubeenv.py down` leaves nothing behind: no process, mount, namespace, link, route, cgroup or file of its own.

Its own cluster (in a temp dir), so the session's cluster is untouched; down runs while a pod is still running, as
after a demo or an interrupted test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.support import workloads as w
from tests.support.reverse_shell import exec_out

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]
KUBEENV = ROOT / "tools" / "kubeenv.py"


def kubeenv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(KUBEENV), *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )


def footprint(directory: Path) -> list[str]:
    probe = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, 'tools'); import kubeenv; "
        f"print(json.dumps(kubeenv.footprint(Path({str(directory)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return list(json.loads(done.stdout))


def test_down_leaves_nothing_behind(kube_node: dict[str, Any], tmp_path: Path) -> None:
    directory = tmp_path / "env"
    started = kubeenv("up", "--dir", str(directory))
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        state = json.loads((directory / "state.json").read_text())
        node = state["node"]
        api = config.new_client_from_config(config_file=state["kubeconfig"])
        namespace = "teardown"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        w.create_running_deployment(api, namespace, "shell")
        (pod,) = w.wait_for_running(api, namespace, 1, "app=shell")
        # Traffic through the dataplane, so there is conntrack state to clean up (a connection to itself via its IP
        # stays inside the pod; this one crosses the node: the pod's own service, probed from the pod's gateway side).
        w.create_running_deployment(api, namespace, "peer", 1, "sleep 2147483647")
        (peer,) = w.wait_for_running(api, namespace, 1, "app=peer")
        exec_out(api, namespace, peer.metadata.name, ["nc", "-w", "1", pod.status.pod_ip, "4444"])
        api.close()
        seen = footprint(directory)
        assert any("nftables table ip filter" in f for f in seen), seen  # the dataplane's rules
        assert state["node"]["netpol"]["mode"] == "established"
        pids = list(state["pids"].values())
    finally:
        stopped = kubeenv("down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    print("\n" + stopped.stderr)

    assert footprint(directory) == []
    # The node's conntrack state went with its namespace: nothing of the pod subnet in the host's table either.
    prefix = node["pod_subnet"].rsplit(".", 1)[0] + "."
    listed = subprocess.run(["conntrack", "-L"], capture_output=True, text=True, check=False).stdout
    assert not [line for line in listed.splitlines() if prefix in line]
    assert not [pid for pid in pids if _alive(pid)]
    assert not Path(f"/run/netns/{node['netns']}").exists()
    route = subprocess.run(["ip", "route", "show", node["pod_subnet"]], capture_output=True, text=True, check=True)
    assert route.stdout.strip() == ""
    assert not any(Path(h, node["cgroup_parent"].lstrip("/")).exists() for h in Path("/sys/fs/cgroup").iterdir())
    uid = pod.metadata.uid
    pod_logs = Path("/var/log/pods")
    assert not pod_logs.exists() or not [p for p in pod_logs.iterdir() if p.name.endswith(uid)]
    results = Path("/var/lib/cni/results")
    assert not results.exists() or not [p for p in results.iterdir() if p.name.startswith(f"rsr-{node['netns'][4:]}")]
    assert "apiserver.sock" not in os.listdir(directory)
    assert "node" not in os.listdir(directory)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie: a stopped daemon's entry lingers as a zombie until its parent (init,
    which in a container may reap late) collects it, and a zombie holds no resource the node needs cleaned up."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
