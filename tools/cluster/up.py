"""`up`, in phases: reuse a healthy cluster or clear what is left; build; fresh directories and credentials; the
control plane (etcd, the apiserver, the controller-manager) and the responder's RBAC; as root, the node (its network
namespace, containerd, the images, the kubelet, the scheduler, the NetworkPolicy dataplane); then state.json, last."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node import host, netpol

from cluster import credentials, gobuild
from cluster.build import KUBE_VERSION, PAUSE_SOURCE, build, ensure_node_packages
from cluster.commands import Ports, all_commands
from cluster.common import (
    ADMIN_USER,
    KCM_USER,
    NOCAPTURE_IDENTITY,
    NODE_USER,
    RESPONDER_IDENTITY,
    SCHEDULER_USER,
    SEALED_ENV,
    cache_root,
    fmt_duration,
    log,
)
from cluster.credentials import Credentials, kubeconfig_text
from cluster.down import down
from cluster.layout import Layout, free_ports, load_state, write_private, write_state
from cluster.node_runtime import ctr, import_images, node_possible, start_netpol, switch_netpol, write_node_files
from cluster.processes import StartupError, check_health, https_get, log_tail, node_status, start_process, wait_until
from cluster.rbac import apply_guard, apply_rbac, kubectl


def node_line(state: dict[str, Any]) -> str:
    node = state.get("node")
    if state.get("mode") != "node" or not node:
        return "none (control plane only: pods stay Pending)"
    return (
        f"{node['node_name']} (containerd + kubelet + scheduler) in network namespace {node['netns']}; "
        f"pods tolerating {node['taint']} run; images {', '.join(node.get('images', []))}; "
        f"NetworkPolicy dataplane: {(node.get('netpol') or {}).get('mode', 'none')}"
    )


def print_summary(state: dict[str, Any], headline: str) -> None:
    kubeconfig = os.path.relpath(state["kubeconfig"]) if state["kubeconfig"].startswith(os.getcwd()) else None
    kubeconfig = kubeconfig or state["kubeconfig"]
    print(
        f"{headline}\n"
        f"  server:               {state['server']}  (Kubernetes v{state['version']})\n"
        f"  admin kubeconfig:     {state['kubeconfig']}\n"
        f"  responder kubeconfig: {state['responder_kubeconfig']}  (user {state['responder_identity']})\n"
        f"  without capture:      {state['responder_nocapture_kubeconfig']}  (no pods/exec)\n"
        f"  node:                 {node_line(state)}\n"
        f"  logs:                 {Path(state['dir']) / 'logs'}\n"
        f"  try:                  kubectl --kubeconfig {kubeconfig} get pods -A\n"
        f"  stop:                 python3 tools/kubeenv.py down --dir {state['dir']}"
    )


@dataclass
class Startup:
    """One `up` in progress: what it starts and what it has started so far (stopped again if a phase fails)."""

    layout: Layout
    ports: Ports
    creds: Credentials
    commands: dict[str, list[str]]
    release: str | None = None  # the release built with Go (1.35: the guard installed); None: RSR_KUBE=1.20
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    node_info: dict[str, Any] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def admin_token(self) -> str:
        return self.creds.tokens["admin"]

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        self.procs[name] = start_process(name, self.commands[name], self.layout, env)

    def kubeconfig(self, user: str, token_of: str) -> str:
        return kubeconfig_text(self.server, self.layout.ca_bundle, user, self.creds.tokens[token_of])


def _reuse(directory: Path, layout: Layout, with_node: bool, controller_manager: bool, version: str) -> bool:
    """True when a healthy cluster with the same options runs already (its RBAC and dataplane brought up to date);
    otherwise whatever an earlier or crashed `up` left is stopped and removed."""
    state = load_state(layout)
    if state is not None:
        problems = check_health(state)
        if "responder_nocapture_kubeconfig" not in state:
            problems.append("started by an older kubeenv (no no-capture identity)")
        same = (
            bool(state.get("pids", {}).get("kube-controller-manager")) == controller_manager
            and (state.get("mode") == "node") == with_node
            and state.get("version") == version
        )
        if not problems and same:
            apply_rbac(layout)  # the manifests may have changed since it started
            if version != KUBE_VERSION:
                apply_guard(layout)  # a 1.30+ apiserver (not RSR_KUBE=1.20's) runs the guard too
            if with_node and (state["node"].get("netpol") or {}).get("mode") != netpol.mode_from_env():
                switch_netpol(directory, netpol.mode_from_env())
                state = load_state(layout) or state
            print_summary(state, "kubeenv: cluster already running")
            return True
        log(f"replacing the cluster recorded in {layout.state}: {'; '.join(problems) or 'different options'}")
    if state is not None or layout.pids.exists() or layout.node.exists():
        down(directory)  # also what a crashed `up` left behind
    return False


def _fresh_directories(layout: Layout) -> None:
    # A fresh start every time: new data dir, tokens and certificates, so nothing stale (or half-written by a crashed
    # run) survives. Only paths this tool owns are removed.
    layout.dir.mkdir(parents=True, exist_ok=True)
    for path in (layout.etcd_data, layout.pki, layout.logs, layout.node):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.admin_kubeconfig, layout.responder_kubeconfig, layout.responder_nocapture_kubeconfig):
        path.unlink(missing_ok=True)
    layout.pki.mkdir(mode=0o700)
    layout.etcd_data.mkdir(mode=0o700)


def _enter_namespace(run: Startup, names: host.NodeNames) -> None:
    """The node's sealed network namespace and cgroups, and the bridge the host reaches the apiserver through."""
    host.record_host_paths(names)
    if host.create_netns(names):
        run.layout.host_route_marker.write_text(names.pod_subnet + "\n")
    host.create_cgroups(names)
    run.node_info.update(
        {
            "netns": names.netns,
            "netns_inode": names.netns_path.stat().st_ino,
            "pod_subnet": names.pod_subnet,
            "cgroup_parent": names.cgroup_parent,
            "containerd_socket": str(run.layout.containerd_socket),
            "taint": f"{host.TAINT_KEY}=true:NoSchedule",
            "node_name": host.NODE_NAME,
        }
    )
    log(f"network namespace {names.netns}: loopback only; pod subnet {names.pod_subnet} unreachable")
    run.start("bridge-inner")
    run.start("bridge-outer")


def _start_control_plane(run: Startup, names: host.NodeNames | None) -> None:
    """etcd and the apiserver, awaited until /readyz; then the kubeconfigs of the people and tools that use it."""
    layout = run.layout
    run.start("etcd")
    run.start("kube-apiserver")

    def apiserver_ready() -> bool:
        return https_get(f"{run.server}/readyz", layout.ca_bundle, run.admin_token)[0] == 200

    took = wait_until("kube-apiserver /readyz", apiserver_ready, 90, run.procs)
    where = f" in network namespace {names.netns}, reached from the host over {layout.bridge_socket}" if names else ""
    log(f"kube-apiserver ready on {run.server}{where} in {took:.1f}s")
    for path, user, token_of in (
        (layout.admin_kubeconfig, ADMIN_USER, "admin"),
        (layout.responder_kubeconfig, RESPONDER_IDENTITY, "responder"),
        (layout.responder_nocapture_kubeconfig, NOCAPTURE_IDENTITY, "nocapture"),
        (layout.kcm_kubeconfig, KCM_USER, "kcm"),
    ):
        write_private(path, run.kubeconfig(user, token_of))


def _start_controller_manager(run: Startup) -> None:
    run.start("kube-controller-manager")
    # The controllers first wait for their service-account tokens. The `default` ServiceAccount of `default`
    # appears once the token and service-account controllers run.
    sa_url = f"{run.server}/api/v1/namespaces/default/serviceaccounts/default"
    took = wait_until(
        "the controllers to start (default/default ServiceAccount)",
        lambda: https_get(sa_url, run.layout.ca_bundle, run.admin_token)[0] == 200,
        60,
        run.procs,
    )
    log(f"kube-controller-manager working in {took:.1f}s")


def _start_node(run: Startup, names: host.NodeNames, bins: Path, netpol_mode: str, netpol_bin: Path | None) -> None:
    """containerd with the offline images, the kubelet and the scheduler, awaited until the node is Ready; then the
    NetworkPolicy dataplane."""
    layout = run.layout
    node_started = time.monotonic()
    kubeconfigs = {
        "kubelet": run.kubeconfig(NODE_USER, "node"),
        "scheduler": run.kubeconfig(SCHEDULER_USER, "scheduler"),
        "netpol": run.kubeconfig(netpol.USER, "netpol"),
    }
    write_node_files(layout, names, {"kubelet": run.ports.kubelet}, kubeconfigs, legacy=run.release is None)
    kubectl(layout.admin_kubeconfig, ["apply", "-f", "-"], stdin=netpol.rbac_manifest())
    netpol.install_rules(names)
    run.start("containerd", SEALED_ENV)
    wait_until(
        "containerd",
        lambda: layout.containerd_socket.exists() and bool(ctr(layout, "version", check=False)),
        30,
        run.procs,
    )
    run.node_info["images"] = import_images(layout, bins / PAUSE_SOURCE)
    run.start("kubelet", SEALED_ENV)
    run.start("kube-scheduler", SEALED_ENV)
    _await_node(run)
    log(f"node {host.NODE_NAME} Ready {time.monotonic() - node_started:.1f}s after containerd started")
    run.node_info["netpol"] = {"mode": netpol_mode, "metrics_port": run.ports.netpol}
    if netpol_bin is not None:
        run.procs["netpol"] = start_netpol(layout, names, netpol_bin, run.ports.netpol, netpol_mode, run.procs)


def _await_node(run: Startup) -> None:
    """Until the node is Ready. The 1.35 kubelet can die of a race in its own startup ("concurrent map iteration and
    map write" between its first node status and the DRA plugin manager); a kubelet that dies before the node is
    Ready is started once more, and a second death fails as any other."""
    layout = run.layout
    for attempt in (1, 2):
        try:
            wait_until(
                f"node {host.NODE_NAME} Ready",
                lambda: node_status(run.server, layout.ca_bundle, run.admin_token)[0],
                120,
                run.procs,
            )
            return
        except StartupError as exc:
            if exc.process != "kubelet" or attempt == 2:
                raise
            log(f"the kubelet exited while starting ({exc}); starting it once more:\n{log_tail(layout, 'kubelet', 5)}")
            run.start("kubelet", SEALED_ENV)


def _state(run: Startup, with_node: bool) -> dict[str, Any]:
    layout = run.layout
    return {
        "server": run.server,
        "mode": "node" if with_node else "control-plane",
        "pids": {name: proc.pid for name, proc in run.procs.items()},
        "binaries": json.loads(layout.pids.read_text())["binaries"],
        "ports": run.ports.as_state(),
        "node": run.node_info or None,
        "kubeconfig": str(layout.admin_kubeconfig),
        "responder_kubeconfig": str(layout.responder_kubeconfig),
        "responder_identity": RESPONDER_IDENTITY,
        "responder_nocapture_kubeconfig": str(layout.responder_nocapture_kubeconfig),
        "responder_nocapture_identity": NOCAPTURE_IDENTITY,
        "version": gobuild.KUBE_VERSION if run.release else KUBE_VERSION,
        "ca_file": str(layout.ca_bundle),
        "admin_token": run.admin_token,  # for `status`; the same secret is in the kubeconfig next to this file
        "dir": str(layout.dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _start(
    run: Startup, names: host.NodeNames | None, controller_manager: bool, netpol_setup: tuple[Path, str, Path | None]
) -> None:
    """Every phase of the start, in order; ``names`` is None for the control plane alone."""
    bins, netpol_mode, netpol_bin = netpol_setup
    if names is not None:
        _enter_namespace(run, names)
    _start_control_plane(run, names)
    if controller_manager:
        _start_controller_manager(run)
    apply_rbac(run.layout)
    if run.release:
        apply_guard(run.layout)
    if names is not None:
        _start_node(run, names, bins, netpol_mode, netpol_bin)


def up(directory: Path, controller_manager: bool = True, node: bool = True) -> int:
    layout = Layout(directory.resolve())
    release = gobuild.requested()
    with_node = node_possible(node and controller_manager)
    if _reuse(directory, layout, with_node, controller_manager, gobuild.KUBE_VERSION if release else KUBE_VERSION):
        return 0
    bins = gobuild.build() if release else build()
    netpol_mode = netpol.mode_from_env() if with_node else "none"
    netpol_bin = None
    if with_node:
        ensure_node_packages()
        if netpol_mode != "none":
            netpol_bin = netpol.build(cache_root(), log)
    started = time.monotonic()
    _fresh_directories(layout)
    creds = credentials.issue(layout, with_node)
    names = host.NodeNames.for_dir(layout.dir) if with_node else None
    ports = Ports(*free_ports(7))
    commands = all_commands(bins, layout, ports, creds, names, controller_manager, legacy=release is None)
    run = Startup(layout, ports, creds, commands, release)
    try:
        _start(run, names, controller_manager, (bins, netpol_mode, netpol_bin))
    except (StartupError, OSError, subprocess.SubprocessError, RuntimeError) as exc:
        log(f"startup failed: {exc}")
        culprit = exc.process if isinstance(exc, StartupError) and exc.process else next(reversed(run.procs), None)
        if culprit:
            sys.stderr.write(f"--- last lines of {layout.logs / (culprit + '.log')}:\n{log_tail(layout, culprit)}\n")
        down(directory)
        return 1
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): no state.json will record these processes, so stop them now.
        down(directory)
        raise
    state = _state(run, with_node)
    write_state(layout, state)  # last: its presence means "a complete cluster was started"
    print_summary(state, f"kubeenv: cluster up in {fmt_duration(time.monotonic() - started)}")
    return 0
