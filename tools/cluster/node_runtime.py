"""The node's runtime as the cluster sees it: whether a node can run, its containerd and kubelet files, the images
imported offline, the NetworkPolicy dataplane process. The host-level mechanics (namespace, cgroups, certificates,
images, the bridge, the dataplane's build and rules) live in tools/node/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from node import host, images, netpol

from cluster.common import SEALED_ENV, cache_root, die, log
from cluster.layout import Layout, free_ports, load_state, write_private, write_state
from cluster.processes import StartupError, check_health, log_tail, start_process, stop_pids, wait_until


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def node_possible(requested: bool) -> bool:
    """Whether this `up` runs the node; says why not, and under CI refuses to go on without it."""
    if not requested:
        return False
    if os.geteuid() == 0:
        return True
    message = (
        "the node (containerd, kubelet, its own network namespace and cgroups) needs root; run `sudo make kube-up` "
        "to get pods that run"
    )
    if ci():
        die(f"{message}. CI=true: failing instead of starting a cluster where no pod can run")
    log(f"WARNING: {message}. Starting the control plane only: pods stay Pending, exec and logs are impossible.")
    return False


def ctr(layout: Layout, *args: str, check: bool = True) -> str:
    """containerd's own client, on the node's socket (a Unix socket: it works from the host's namespace)."""
    cmd = ["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise StartupError(f"`{' '.join(cmd[3:])}` failed: {proc.stderr.strip()[-500:]}", "containerd")
    return proc.stdout


def write_node_files(
    layout: Layout, names: host.NodeNames, ports: dict[str, int], kubeconfigs: dict[str, str], legacy: bool = True
) -> None:
    node = layout.node
    for sub in ("containerd", "cni", "cni-ipam", "kubelet", "images", "scheduler-certs"):
        (node / sub).mkdir(parents=True, exist_ok=True)
    (node / "containerd" / "config.toml").write_text(host.containerd_config(node))
    (node / "cni" / "10-rsr.conflist").write_text(host.cni_conflist(node, names))
    (node / "kubelet-config.yaml").write_text(host.kubelet_config(layout.pki, names, ports["kubelet"], legacy))
    for name, text in kubeconfigs.items():
        write_private(node / f"{name}.kubeconfig", text)


def import_images(layout: Layout, pause_c: Path) -> list[str]:
    """Builds the pause and tools images from Debian's files and imports them into containerd (no registry)."""
    archives = [
        images.build_pause(pause_c, layout.node / "images"),
        images.build_tools(layout.node / "images"),
    ]
    for archive in archives:
        ctr(layout, "images", "import", str(archive))
    listed = ctr(layout, "images", "ls", "-q").split()
    wanted = [images.PAUSE_IMAGE, images.TOOLS_IMAGE]
    if not all(name in listed for name in wanted):
        raise StartupError(f"images not in containerd after import: {wanted} vs {listed}", "containerd")
    return wanted


def start_netpol(
    layout: Layout,
    names: host.NodeNames,
    binary: Path,
    port: int,
    mode: str,
    procs: dict[str, subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    """The NetworkPolicy dataplane, in the node's namespace, as its own identity; ready once its queue is open."""
    argv = host.in_netns(names, netpol.command(binary, layout.node / "netpol.kubeconfig", port, mode))
    proc = start_process("netpol", argv, layout, SEALED_ENV)

    def healthy() -> bool:
        try:
            return netpol.metrics(names, port, "/healthz").strip() == "ok"
        except RuntimeError:
            return False

    took = wait_until("the NetworkPolicy dataplane", healthy, 60, {**procs, "netpol": proc})
    log(f"NetworkPolicy dataplane ({mode}) ready in {took:.1f}s; metrics on 127.0.0.1:{port} in {names.netns}")
    return proc


def switch_netpol(directory: Path, mode: str) -> int:
    """Replaces the running cluster's dataplane with one in `mode` (rules and conntrack state start afresh)."""
    if mode not in netpol.MODES:
        die(f"mode must be one of {', '.join(netpol.MODES)}, got {mode!r}")
    layout = Layout(directory.resolve())
    state = load_state(layout)
    if state is None or state.get("mode") != "node":
        die(f"no cluster with a node recorded in {layout.state}")
    names = host.NodeNames.for_dir(layout.dir)
    info = state["node"].get("netpol") or {}
    if info.get("mode") == mode and (mode == "none" or not check_health(state)):
        log(f"NetworkPolicy dataplane already {mode}")
        return 0
    binary = netpol.build(cache_root(), log) if mode != "none" else None
    stop_pids({k: v for k, v in state["pids"].items() if k == "netpol"}, state["binaries"])
    state["pids"].pop("netpol", None)
    netpol.remove_rules(names)
    netpol.install_rules(names)
    port = int(state["ports"].get("netpol") or free_ports(1)[0])
    if binary is not None:
        try:
            proc = start_netpol(layout, names, binary, port, mode, {})
        except StartupError as exc:
            sys.stderr.write(f"--- last lines of the dataplane's log:\n{log_tail(layout, 'netpol')}\n")
            die(str(exc))
        state["pids"]["netpol"] = proc.pid
        state["binaries"]["netpol"] = str(binary)
    state["node"]["netpol"] = {"mode": mode, "metrics_port": port}
    state["ports"]["netpol"] = port
    write_state(layout, state)
    log(f"NetworkPolicy dataplane: {mode}")
    return 0


def remove_containers(layout: Layout) -> list[str]:
    """Kills and deletes every container of the node's containerd (pods may still run; the apiserver may be gone)."""
    if not layout.containerd_socket.exists():
        return []
    try:
        ids = ctr(layout, "containers", "ls", "-q", check=False).split()
        for task in ctr(layout, "tasks", "ls", "-q", check=False).split():
            ctr(layout, "tasks", "delete", "--force", task, check=False)
        for container in ids:
            ctr(layout, "containers", "delete", container, check=False)
    except subprocess.TimeoutExpired:
        return []
    return ids
