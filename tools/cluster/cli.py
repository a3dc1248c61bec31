"""A real, local Kubernetes cluster: etcd + kube-apiserver + kube-controller-manager and, as root, a node (containerd,
kubelet, kube-scheduler), all sealed in a network namespace with only loopback (tools/node/host.py); the host reaches
the apiserver through a bridge over a Unix socket (tools/node/bridge.py). Without root: the control plane alone, on
the host's loopback (and under CI=true that is an error: the node tests need the node).

Used by the integration/e2e tests and the demo. No registry ships a kube-apiserver binary that this project may use, so
`build` compiles Kubernetes 1.35 with Go from the Go module proxy (tools/cluster/gobuild.py); `RSR_KUBE=1.20` asks
for the old 1.20.2 instead, compiled from Debian's `kubernetes` *source* package with Debian's Go 1.19, fetched
through apt with a private configuration (the system's apt sources and state are never modified). See
docs/local-cluster.md.

    python3 tools/kubeenv.py build                 # ~5-8 min the first time, then instant (cached)
    python3 tools/kubeenv.py up [--dir .testenv]   # the cluster + RBAC: ~10 s, ~30 s with the node
    python3 tools/kubeenv.py rbac [--dir .testenv] # (re)apply deploy/kubernetes RBAC to a running cluster
    python3 tools/kubeenv.py status [--dir .testenv]
    python3 tools/kubeenv.py down [--dir .testenv]  # stops it and removes everything it created

Standard library only: this runs before any virtualenv exists. The code is in tools/cluster/ (see its __init__).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from node import netpol

from cluster import gobuild
from cluster.build import KUBE_VERSION, build, ensure_node_packages
from cluster.common import die, log
from cluster.down import down
from cluster.layout import Layout, load_state
from cluster.node_runtime import switch_netpol
from cluster.processes import check_health
from cluster.rbac import apply_guard, apply_rbac
from cluster.up import print_summary, up


def status(directory: Path) -> int:
    layout = Layout(directory.resolve())
    state = load_state(layout)
    if state is None:
        print(f"kubeenv: no cluster recorded in {layout.state}")
        return 1
    problems = check_health(state)
    if problems:
        print("kubeenv: unhealthy: " + "; ".join(problems))
        return 1
    print_summary(state, "kubeenv: healthy")
    return 0


def rbac(directory: Path) -> int:
    layout = Layout(directory.resolve())
    state = load_state(layout)
    problems = check_health(state) if state is not None else [f"no cluster recorded in {layout.state}"]
    if problems:
        print("kubeenv: cannot apply RBAC: " + "; ".join(problems))
        return 1
    apply_rbac(layout)
    if state is not None and state.get("version") != KUBE_VERSION:
        apply_guard(layout)  # a 1.30+ apiserver (not RSR_KUBE=1.20's): the guard as the manifest says today
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build and cache the binaries (no-op when cached)")
    for name, help_text in (
        ("up", "start etcd, kube-apiserver and kube-controller-manager; apply the responder's RBAC"),
        ("down", "stop the processes started by `up` and remove everything it created"),
        ("status", "exit 0 if the recorded cluster is healthy, 1 otherwise"),
        ("rbac", "apply deploy/kubernetes/rbac.yaml + rbac-capture.yaml to the running cluster (idempotent)"),
        ("netpol", "switch the running node's NetworkPolicy dataplane: --mode established|new-only|none"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--dir", type=Path, default=Path(".testenv"), help="state directory (default: .testenv)")
        if name == "up":
            cmd.add_argument("--no-controller-manager", action="store_true", help="only etcd and kube-apiserver")
            cmd.add_argument(
                "--no-node", action="store_true", help="control plane only on the host's loopback (no root needed)"
            )
        if name == "netpol":
            cmd.add_argument("--mode", required=True, choices=netpol.MODES)
    args = parser.parse_args(argv)

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # run the same cleanup as Ctrl-C (stop the compiler / half-started processes)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if args.command == "build":
            # 1.35 from the Go module proxy (the default), or RSR_KUBE=1.20 from Debian's source package
            print(gobuild.build() if gobuild.requested() else build())
            if os.geteuid() == 0:
                ensure_node_packages()  # so that `make kube-build` (and so `make test` on CI) prepares the node too
            return 0
        if args.command == "up":
            try:
                netpol.mode_from_env()
            except ValueError as exc:
                die(str(exc))
            return up(args.dir, controller_manager=not args.no_controller_manager, node=not args.no_node)
        if args.command == "down":
            return down(args.dir)
        if args.command == "rbac":
            return rbac(args.dir)
        if args.command == "netpol":
            return switch_netpol(args.dir, args.mode)
        return status(args.dir)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
