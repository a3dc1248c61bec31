"""The node's footprint on the host: its network namespace, certificates, configuration files, and their removal.

Everything the node creates is named after its state directory (a short hash), so two clusters (say `make kube-up`'s
and a test session's) can run side by side and each `down` removes exactly its own: the network namespace
`rsr-HASH`, the cgroup parent `/rsr-HASH` in every hierarchy, the pod subnet's unreachable route, the CNI cache entries
of network `rsr-HASH`, and the files its kubelet wrote under /var/log for its own pods.
Standard library only (plus the `ip`, `nsenter`, `openssl`, `umount` commands).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_RESULTS = Path("/var/lib/cni/results")
# Paths the kubelet and containerd create outside their configured directories. The first node started on a machine
# records which of them already existed; the last one stopped removes the others (when empty).
HOST_PATHS = (
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/lib/kubelet"),
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)
SHARED_RECORD = Path("/run/rsr-node/host-paths.json")
TAINT_KEY = "rsr.dev/real-node"  # pods that do not tolerate it stay Pending, as on the control-plane-only cluster
NODE_NAME = "127.0.0.1"  # kubelet 1.20 refuses a loopback --node-ip; --hostname-override makes this the address


@dataclass(frozen=True)
class NodeNames:
    """Names derived from the state directory, unique per cluster on this machine."""

    key: str

    @classmethod
    def for_dir(cls, directory: Path) -> NodeNames:
        return cls(hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8])

    @property
    def netns(self) -> str:
        return f"rsr-{self.key}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def cgroup_parent(self) -> str:
        return f"/rsr-{self.key}"

    @property
    def cni_network(self) -> str:
        return f"rsr-{self.key}"

    @property
    def pod_subnet(self) -> str:
        # From 198.18.0.0/15 (reserved for benchmarking, RFC 2544): no real network uses it, so the unreachable route
        # added on the host can never shadow one of the host's own subnets.
        n = int(self.key[:3], 16) % 512
        return f"198.{18 + n // 256}.{n % 256}.0/24"


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    return proc


def in_netns(names: NodeNames, argv: list[str]) -> list[str]:
    """argv run inside the node's network namespace only (mounts, PIDs and cgroups stay the host's)."""
    return ["nsenter", f"--net={names.netns_path}", "--", *argv]


def netns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def other_node_namespaces(names: NodeNames) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith("rsr-") and p.name != names.netns)


# --------------------------------------------------------------------------------------------------------- network


def create_netns(names: NodeNames) -> bool:
    """The sealed namespace: loopback only, plus an unreachable route for the pod subnet. Returns whether the host
    route (the second wall, outside the namespace) was added by us."""
    run(["ip", "netns", "add", names.netns])
    run(["ip", "-n", names.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", names.netns, "route", "add", "unreachable", names.pod_subnet])
    return run(["ip", "route", "add", "unreachable", names.pod_subnet], check=False).returncode == 0


def delete_netns(names: NodeNames, host_route: bool) -> None:
    if names.netns_path.exists():
        run(["ip", "netns", "del", names.netns], check=False)
    if host_route:
        run(["ip", "route", "del", "unreachable", names.pod_subnet], check=False)


def record_host_paths(names: NodeNames) -> None:
    """The first node on the machine notes which shared host paths existed before any node ran."""
    if SHARED_RECORD.exists() and other_node_namespaces(names):
        return
    SHARED_RECORD.parent.mkdir(parents=True, exist_ok=True)
    SHARED_RECORD.write_text(json.dumps({str(p): p.exists() for p in HOST_PATHS}))


# ---------------------------------------------------------------------------------------------------------- cgroups


def cgroup_dirs(names: NodeNames) -> list[Path]:
    """The node's cgroup parent in every cgroup v1 hierarchy (or the unified one)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # cgroup v2
        return [CGROUP_ROOT / names.cgroup_parent.lstrip("/")]
    return [
        h / names.cgroup_parent.lstrip("/")
        for h in sorted(CGROUP_ROOT.iterdir())
        if h.is_dir() and not h.is_symlink() and (h / "cgroup.procs").exists()
    ]


def create_cgroups(names: NodeNames) -> None:
    """The kubelet's --cgroup-root must exist; a cpuset child starts empty and must inherit cpus and mems."""
    for path in cgroup_dirs(names):
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (path / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((path.parent / knob).read_text())


def remove_cgroups(names: NodeNames) -> list[str]:
    """rmdir deepest first (cgroup directories cannot be removed recursively); returns what could not go."""
    left = []
    for top in cgroup_dirs(names):
        if not top.exists():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda item: -item[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError as exc:
                left.append(f"{dirpath}: {exc.strerror}")
    return left


# ----------------------------------------------------------------------------------------------------------- mounts


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def unmount_all(directory: Path) -> list[str]:
    for _attempt in range(3):
        points = mounts_under(directory)
        if not points:
            return []
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)
    return mounts_under(directory)


# -------------------------------------------------------------------------------------------------------- processes


def processes_in_netns(names: NodeNames) -> list[int]:
    """PIDs whose network namespace is the node's: by construction, only what `up` started there."""
    try:
        inode = names.netns_path.stat().st_ino
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and netns_inode(entry.name) == inode:
            pids.append(int(entry.name))
    return pids


def shims_of(socket_path: Path) -> list[int]:
    """containerd shims serving our containerd (they outlive it); identified by the socket in their command line."""
    needle = str(socket_path).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and needle in cmdline:
            pids.append(int(entry.name))
    return pids


# ------------------------------------------------------------------------------------------------------------ files


def remove_pod_files(kubelet_root: Path, cni_network: str, container_ids: list[str]) -> None:
    """The kubelet's and CNI's files for this node's pods only (another node may be writing next to them)."""
    uids = [p.name for p in (kubelet_root / "pods").iterdir()] if (kubelet_root / "pods").is_dir() else []
    logs = Path("/var/log/pods")
    removed_dirs = []
    if logs.is_dir():
        for entry in logs.iterdir():
            if any(entry.name.endswith("_" + uid) for uid in uids):
                shutil.rmtree(entry, ignore_errors=True)
                removed_dirs.append(str(entry))
    links = Path("/var/log/containers")
    if links.is_dir():
        for link in links.iterdir():
            target = os.readlink(link) if link.is_symlink() else ""
            if any(target.startswith(d + "/") for d in removed_dirs) or any(c in link.name for c in container_ids):
                link.unlink(missing_ok=True)
    if CNI_RESULTS.is_dir():
        for entry in CNI_RESULTS.iterdir():
            ours = entry.name.startswith(cni_network + "-")
            if ours or any(f"-{cid}-" in entry.name for cid in container_ids):
                entry.unlink(missing_ok=True)


def remove_host_paths(names: NodeNames) -> list[str]:
    """When the last node stops: remove the shared paths that did not exist before the first one started."""
    if other_node_namespaces(names):
        return []
    try:
        existed = json.loads(SHARED_RECORD.read_text())
    except (OSError, ValueError):
        existed = {}
    left = []
    for path in HOST_PATHS:
        # It did not exist before the first node started, so all of it is the nodes' (kubelet logs of pods deleted
        # long ago included, which no per-node record still names).
        if existed.get(str(path), True) or not path.exists():
            continue
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            left.append(str(path))
    with contextlib.suppress(OSError):
        SHARED_RECORD.unlink()
        SHARED_RECORD.parent.rmdir()
    return left


# ------------------------------------------------------------------------------------------------------------- pki


def _openssl(*args: str) -> None:
    run(["openssl", *args])


def make_ca(pki: Path) -> tuple[Path, Path]:
    key, crt = pki / "ca.key", pki / "ca.crt"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/CN=rsr-local-ca",
        "-out",
        str(crt),
    )
    key.chmod(0o600)
    return key, crt


def issue_cert(pki: Path, name: str, subject: str, usage: str, sans: list[str] | None = None) -> tuple[Path, Path]:
    """A leaf certificate from the local CA: `usage` is serverAuth or clientAuth; `sans` like ["IP:127.0.0.1"]."""
    key, csr, crt, ext = (pki / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    key.chmod(0o600)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-sha256", "-days", "30", "-extfile", str(ext), "-out", str(crt),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return key, crt


# --------------------------------------------------------------------------------------------------------- configs


def containerd_config(node: Path) -> str:
    c = node / "containerd"
    return f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
[grpc]
  address = "{c / "containerd.sock"}"
[ttrpc]
  address = "{c / "containerd.sock.ttrpc"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "rsr.local/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails (runc cannot lower oom_score_adj).
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{node / "cni"}"
    max_conf_num = 1
"""


def cni_conflist(node: Path, names: NodeNames) -> str:
    """ptp without masquerade or routes: each pod has a veth into the node's namespace and a route to its subnet only.

    Pod-to-pod packets are routed through the node's namespace (not bridged), so they cross netfilter's FORWARD hook,
    where the NetworkPolicy dataplane (tools/node/netpol.py) judges them. The gateway address the plugin puts on the
    node side of each veth belongs to the node's namespace, where nothing listens but on 127.0.0.1."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": names.cni_network,
            "plugins": [
                {
                    "type": "ptp",
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(node / "cni-ipam"),
                        "ranges": [[{"subnet": names.pod_subnet}]],
                        "routes": [],
                    },
                }
            ],
        },
        indent=1,
    )


def kubelet_config(pki: Path, names: NodeNames, port: int, legacy: bool = True) -> str:
    """The kubelet's configuration; a current kubelet (not ``legacy`` 1.20) also needs ``failCgroupV1: false``:
    from 1.35 it refuses to start on a cgroup v1 host, as these machines are, unless told to go on."""
    q = json.dumps
    current = "" if legacy else "failCgroupV1: false\n"
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
cgroupDriver: cgroupfs
cgroupRoot: {q(names.cgroup_parent)}
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
evictionHard: {{memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: ""
clusterDNS: ["127.0.0.1"]
clusterDomain: cluster.local
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {q(str(pki / "ca.crt"))}}}
authorization: {{mode: Webhook}}
tlsCertFile: {q(str(pki / "kubelet.crt"))}
tlsPrivateKeyFile: {q(str(pki / "kubelet.key"))}
{current}"""
