"""The node's NetworkPolicy dataplane: `rsr-netpol` (tools/netpol, Go, test-time only), its rules and its identity.

`RSR_NETPOL` chooses what the dataplane does to a connection that is already established when a policy starts to
deny it, the one property a reverse shell's survival depends on:

    established  policy changes cut established connections (strict mode; Cilium / GKE Dataplane V2). The default.
    new-only     policy is checked when a connection is set up only (Calico, GKE's older enforcement)
    none         no dataplane: NetworkPolicies are stored and never enforced

The policy semantics are kube-network-policies' own (its policy engine, pinned in tools/netpol/go.mod): SIG Network's
ClusterNetworkPolicy Admin tier, then NetworkPolicy, then the Baseline tier (on an apiserver that serves
ClusterNetworkPolicy: `up` installs its CRD, from the network-policy-api version pinned beside it, on 1.35). Its
standard command cannot run on these machines' kernel, which lacks nft_queue; tools/netpol/main.go says what replaces
its packet path. Everything here runs inside the node's network namespace: the rules (iptables-nft: one nftables
table, `ip filter`), conntrack and the queue. Standard library only (plus the `go`, `iptables-nft`, `nft` and
`conntrack` commands).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from node import host

MODES = ("established", "new-only", "none")
DEFAULT_MODE = "established"
SOURCE = Path(__file__).resolve().parents[1] / "netpol"  # the Go module
USER = "rsr-netpol"  # the dataplane's own identity: reads namespaces, pods, nodes and policies, writes nothing
CHAIN = "RSR-NETPOL"
TABLE = "filter"  # iptables-nft's table (family ip): ours alone, since the namespace is ours
QUEUE = 100
ALLOW_MARK = 0x100
NPA_MODULE = "sigs.k8s.io/network-policy-api"  # ClusterNetworkPolicy's API module (pinned in tools/netpol/go.mod)
NPA_CRD = "config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml"
CNP_CRD_NAME = "clusternetworkpolicies.policy.networking.k8s.io"
RBAC = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "rsr-netpol"},
            "rules": [
                {"apiGroups": [""], "resources": ["namespaces", "pods", "nodes"], "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["networkpolicies"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["policy.networking.k8s.io"],
                    "resources": ["clusternetworkpolicies"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "rsr-netpol"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rsr-netpol"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ],
}


def mode_from_env() -> str:
    """`RSR_NETPOL`, validated (a typo must not silently start a cluster without the dataplane it asked for)."""
    mode = os.environ.get("RSR_NETPOL", "").strip() or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"RSR_NETPOL must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _source_key() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    return digest.hexdigest()[:12]


def binary_path(cache: Path) -> Path:
    return cache / f"rsr-netpol-{_source_key()}" / "rsr-netpol"


def _go(cache: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The `go` command in tools/netpol, on the module cache in `cache` (modules checked against go.sum)."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise RuntimeError("the `go` command is missing: the node's NetworkPolicy dataplane is built with Go 1.26")
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        "GOMODCACHE": str(cache / "gomod"),
        "GOTOOLCHAIN": "local",
    }
    return subprocess.run(
        [go, *args], cwd=SOURCE, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


def build(cache: Path, log: Callable[[str], None]) -> Path:
    """`go build` of tools/netpol, cached by its sources (modules from the Go module proxy, checked against go.sum)."""
    target = binary_path(cache)
    if target.exists():
        return target
    log(f"building the NetworkPolicy dataplane (tools/netpol) into {target.parent} (~1-3 min the first time)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    proc = _go(cache, ["build", "-trimpath", "-o", str(partial), "."], timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"building tools/netpol failed: {(proc.stderr or proc.stdout)[-2000:]}")
    partial.rename(target)
    return target


def cluster_network_policy_crd(cache: Path) -> Path:
    """The ClusterNetworkPolicy CRD of the network-policy-api version tools/netpol/go.mod pins (the one its
    kube-network-policies requires), read from that module as downloaded (`go mod download`: the module proxy the
    first time, then the module cache; checked against go.sum), never a copy of ours."""
    proc = _go(cache, ["mod", "download", "-json", NPA_MODULE], timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"downloading {NPA_MODULE} failed: {(proc.stderr or proc.stdout)[-2000:]}")
    module = json.loads(proc.stdout)
    if module.get("Error") or not module.get("Dir"):
        raise RuntimeError(f"downloading {NPA_MODULE} failed: {module.get('Error') or proc.stdout[-500:]}")
    crd = Path(module["Dir"]) / NPA_CRD
    if not crd.is_file():
        raise RuntimeError(f"{NPA_MODULE}@{module['Version']} has no {NPA_CRD}")
    return crd


def command(binary: Path, kubeconfig: Path, metrics_port: int, mode: str) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={host.NODE_NAME}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        f"--strict-mode={'true' if mode == 'established' else 'false'}",
        f"--nfqueue-id={QUEUE}",
        f"--allow-mark={ALLOW_MARK:#x}",
        "--v=1",
    ]


def _rules() -> list[list[str]]:
    mark = f"{ALLOW_MARK:#x}/{ALLOW_MARK:#x}"
    established = ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-m", "connmark", "--mark", mark]
    return [
        ["-N", CHAIN],
        # Pod traffic is routed through the node's namespace (ptp CNI), so FORWARD sees every pod-to-pod packet.
        ["-A", "FORWARD", "-j", CHAIN],
        # Back from the queue with the verdict "allowed": remember it on the connection, and let it through.
        ["-A", CHAIN, "-m", "mark", "--mark", mark, "-j", "CONNMARK", "--set-xmark", mark],
        ["-A", CHAIN, "-m", "mark", "--mark", mark, "-j", "ACCEPT"],
        # A connection allowed when it was set up. In strict mode the dataplane deletes the conntrack entries of those
        # no longer allowed, so their next packet is judged again (and dropped).
        ["-A", CHAIN, *established, "-j", "ACCEPT"],
        ["-A", CHAIN, "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass"],
    ]


def install_rules(names: host.NodeNames) -> None:
    for rule in _rules():
        host.run(host.in_netns(names, ["iptables-nft", "-w", *rule]))


def remove_rules(names: host.NodeNames) -> None:
    """The dataplane's table and every conntrack entry of the node's namespace (idempotent)."""
    if not names.netns_path.exists():
        return
    host.run(host.in_netns(names, ["nft", "delete", "table", "ip", TABLE]), check=False)
    host.run(host.in_netns(names, ["conntrack", "-F"]), check=False)


def leftovers(names: host.NodeNames) -> list[str]:
    """nftables tables and conntrack entries still in the node's namespace (for `down` and its tests)."""
    if not names.netns_path.exists():
        return []
    found = []
    tables = host.run(host.in_netns(names, ["nft", "list", "tables"]), check=False).stdout.split("\n")
    found += [f"nftables {line.strip()} in {names.netns}" for line in tables if line.strip()]
    entries = host.run(host.in_netns(names, ["conntrack", "-L"]), check=False).stdout.strip().splitlines()
    found += [f"{len(entries)} conntrack entries in {names.netns}"] if entries else []
    return found


def rbac_manifest() -> str:
    return json.dumps(RBAC)


def metrics(names: host.NodeNames, port: int, path: str = "/metrics") -> str:
    """GET on the dataplane's loopback endpoint, which lives in the node's namespace (so fetched from inside it)."""
    probe = (
        "import sys, urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2).read().decode())"
    )
    return host.run(host.in_netns(names, [sys.executable, "-c", probe])).stdout
