"""`down` stops everything `up` started and removes what it created; `footprint` says what is still there."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from node import host, netpol

from cluster.common import log
from cluster.layout import Layout, load_state
from cluster.node_runtime import remove_containers
from cluster.processes import cgroup_pids, kill_pids, stop_pids


def down(directory: Path) -> int:
    """Stops everything `up` started and removes what it created, even after a crash (from pids.json)."""
    layout = Layout(directory.resolve())
    state = load_state(layout)
    if state is None and layout.state.exists():
        log(f"{layout.state} is unreadable; removing it")
    recorded: dict[str, Any] = {"pids": {}, "binaries": {}}
    for source in (layout.pids, layout.state):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(source.read_text())
            recorded["pids"].update(data.get("pids", {}))
            recorded["binaries"].update(data.get("binaries", {}))
    names = host.NodeNames.for_dir(layout.dir)
    has_node = layout.node.exists() or names.netns_path.exists()
    if not recorded["pids"] and not has_node:
        log(f"nothing running ({layout.state} not found)")
        layout.state.unlink(missing_ok=True)
        return 0
    pids, binaries = recorded["pids"], recorded["binaries"]

    def stop(group: tuple[str, ...]) -> None:
        stop_pids({n: p for n, p in pids.items() if n in group}, binaries)

    stop(("netpol", "kube-scheduler", "kubelet"))
    container_ids = remove_containers(layout)
    stop(("containerd",))
    if has_node:
        kill_pids(host.shims_of(layout.containerd_socket), "containerd shim")
        kill_pids(cgroup_pids(names), "pod process")
    stop(("kube-controller-manager", "kube-apiserver", "etcd", "bridge-outer", "bridge-inner"))
    if has_node:
        kill_pids(host.processes_in_netns(names), "process left in the node's namespace")
        netpol.remove_rules(names)  # its nftables table and conntrack state, before the namespace goes
        left = netpol.leftovers(names)
        left += host.unmount_all(layout.dir)
        host.remove_pod_files(layout.node / "kubelet", names.cni_network, container_ids)
        host.delete_netns(names, layout.host_route_marker.exists())
        layout.host_route_marker.unlink(missing_ok=True)
        left += host.remove_cgroups(names)
        left += host.remove_host_paths(names)
        if not host.mounts_under(layout.dir):
            shutil.rmtree(layout.node, ignore_errors=True)
        for item in left:
            log(f"WARNING: could not remove {item}")
    layout.bridge_socket.unlink(missing_ok=True)
    layout.pids.unlink(missing_ok=True)
    layout.state.unlink(missing_ok=True)
    log("stopped")
    return 0


def footprint(directory: Path) -> list[str]:
    """What of this cluster is still on the machine (empty after a clean `down`): for tests and `status`."""
    layout = Layout(directory.resolve())
    names = host.NodeNames.for_dir(layout.dir)
    found = []
    if names.netns_path.exists():
        found.append(f"network namespace {names.netns}")
    found += [f"process {pid} in {names.netns}" for pid in host.processes_in_netns(names)]
    found += [f"mount {point}" for point in host.mounts_under(layout.dir)]
    found += [f"containerd shim {pid}" for pid in host.shims_of(layout.containerd_socket)]
    found += [f"cgroup {path}" for path in host.cgroup_dirs(names) if path.exists()]
    found += netpol.leftovers(names)  # nftables tables, conntrack entries (while the namespace exists)
    if layout.host_route_marker.exists():
        found.append(f"host route marker {layout.host_route_marker}")
    route = subprocess.run(["ip", "route", "show", names.pod_subnet], capture_output=True, text=True, check=False)
    if route.stdout.strip():
        found.append(f"host route {route.stdout.strip()}")
    if layout.node.exists():
        found.append(f"directory {layout.node}")
    for path in (layout.pids, layout.state, layout.bridge_socket):
        if path.exists():
            found.append(f"file {path}")
    return found
