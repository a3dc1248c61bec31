#!/usr/bin/env python3
"""A real, local Kubernetes cluster: etcd + kube-apiserver + kube-controller-manager and, as root, a node (containerd,
kubelet, kube-scheduler), all sealed in a network namespace with only loopback (tools/node/host.py); the host reaches
the apiserver through a bridge over a Unix socket (tools/node/bridge.py). Without root: the control plane alone, on
the host's loopback (and under CI=true that is an error: the node tests need the node).

Used by the integration/e2e tests and the demo. No registry ships a kube-apiserver binary that this project may use, so
`build` compiles one from Debian's `kubernetes` *source* package with Debian's Go 1.19 (see
docs "real-components.md"). Everything is fetched through apt with a private configuration: the system's apt sources
and state are never modified.

    python3 tools/kubeenv.py build                 # ~4 min the first time, then instant (cached)
    python3 tools/kubeenv.py up [--dir .testenv]   # the cluster + RBAC: ~10 s, ~30 s with the node
    python3 tools/kubeenv.py rbac [--dir .testenv] # (re)apply deploy/kubernetes RBAC to a running cluster
    python3 tools/kubeenv.py status [--dir .testenv]
    python3 tools/kubeenv.py down [--dir .testenv]  # stops it and removes everything it created

Standard library only: this runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node import host, images, netpol

# The upstream version inside Debian bookworm's `kubernetes` source package ("1.20.5+really1.20.2-..."). It keys the
# cache, so `build` can answer "already built" without touching the network. If Debian ever ships a different upstream
# version, `build` stops with a message asking to bump this constant (rather than silently caching a different version
# under the old name).
KUBE_VERSION = "1.20.2"
DEBIAN_SUITE = "bookworm"  # golang-1.19 and this kubernetes source only exist in bookworm
GO_PACKAGES = ("golang-1.19-go", "golang-1.19-src")
GOROOT_IN_DEB = "usr/lib/go-1.19"
ETCD_PACKAGE = "etcd-server"
# The control plane, plus the node's kubelet and scheduler (the same `make`: ~3.5 min cold for all four).
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
BINARIES = (*KUBE_COMMANDS, "etcd")
# build/pause/linux/pause.c from the same source tree: the node's sandbox ("pause") image is compiled from it.
PAUSE_SOURCE = "pause.c"

RESPONDER_IDENTITY = "responder@rsr-test.iam.gserviceaccount.com"
# A second responder identity bound to rbac.yaml's roles only (no rbac-capture.yaml): what a deployment without
# process capture holds, so tests can prove exec is refused without the capture role.
NOCAPTURE_IDENTITY = "responder-nocapture@rsr-test.iam.gserviceaccount.com"
ADMIN_USER = "rsr-admin"
KCM_USER = "system:kube-controller-manager"  # bootstrap RBAC already binds the controller-manager roles to this name
SERVICE_CIDR = "10.96.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc"

STATE_FILE = "state.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
BRIDGE = REPO_ROOT / "tools" / "node" / "bridge.py"
MANIFEST_DIR = REPO_ROOT / "deploy" / "kubernetes"
CORE_RBAC = "rbac.yaml"  # the responder's core rights
CAPTURE_RBAC = "rbac-capture.yaml"  # pods/exec, applied where process capture is enabled (here: always)
RBAC_NAMESPACE = "responder-system"  # the budget Lease's namespace; rbac.yaml creates it
KUBECTL = os.environ.get("RSR_KUBECTL", "/usr/bin/kubectl")
# Start order; stopped in reverse.
PROCESS_ORDER = (
    "bridge-inner",
    "bridge-outer",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "containerd",
    "kubelet",
    "kube-scheduler",
    "netpol",
)
NODE_USER = "system:node:127.0.0.1"  # the Node authorizer and NodeRestriction expect this of node 127.0.0.1
SCHEDULER_USER = "system:kube-scheduler"  # bootstrap RBAC binds the scheduler's roles to this name
# Debian packages the node needs, by a file each provides.
NODE_PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/ptp",
    "iptables": "/usr/sbin/iptables-nft",
    "nftables": "/usr/sbin/nft",
    "conntrack": "/usr/sbin/conntrack",
    "busybox-static": "/bin/busybox",
    "procps": "/usr/bin/ps",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/nsenter",
    "openssl": "/usr/bin/openssl",
    "binutils": "/usr/bin/strip",
}
# Nothing in the node may resolve or dial anything off this machine: a proxy that refuses, and no cloud metadata.
SEALED_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def log(msg: str) -> None:
    print(f"[kubeenv] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> NoReturn:
    log(f"ERROR: {msg}")
    raise SystemExit(1)


def fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


# --------------------------------------------------------------------------------------------------------------- build


def cache_root() -> Path:
    base = os.environ.get("RSR_CACHE_DIR") or str(Path.home() / ".cache" / "rsr")
    return Path(base).expanduser().resolve()


def bin_dir() -> Path:
    return cache_root() / f"kube-{KUBE_VERSION}" / "bin"


def binaries_present() -> bool:
    return all(os.access(bin_dir() / name, os.X_OK) for name in BINARIES) and (bin_dir() / PAUSE_SOURCE).is_file()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialises concurrent builds (two pytest sessions, `make -j`): the work directory has fixed paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build holds {path}; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _system_debian_mirror() -> tuple[str, str | None]:
    """The Debian archive URI (and its Signed-By keyring) the system already uses, read from its apt sources.

    Reusing the machine's configured mirror keeps any site-local mirror or proxy working and keeps host names out of
    this file. `RSR_DEBIAN_MIRROR` overrides it.
    """
    override = os.environ.get("RSR_DEBIAN_MIRROR")
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    default_keyring = keyring if Path(keyring).exists() else None
    if override:
        return override.rstrip("/"), default_keyring

    candidates: list[tuple[str, str | None]] = []
    sources_dir = Path("/etc/apt/sources.list.d")
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        # deb822 format: paragraphs of "Key: value" separated by blank lines.
        for paragraph in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in paragraph.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            suites = fields.get("suites", "").split()
            if DEBIAN_SUITE in suites and "main" in fields.get("components", "").split():
                signed_by = fields.get("signed-by")
                signed_by = signed_by if signed_by and signed_by.startswith("/") else default_keyring
                candidates.extend((uri, signed_by) for uri in fields.get("uris", "").split())
    list_files = [Path("/etc/apt/sources.list"), *sorted(sources_dir.glob("*.list"))] if sources_dir.is_dir() else []
    for path in list_files:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            # one-line format: deb [options] uri suite component...
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == DEBIAN_SUITE and "main" in words[3:]:
                candidates.append((words[1], default_keyring))
    if not candidates:
        die(
            f"no apt source for Debian '{DEBIAN_SUITE} main' found in /etc/apt; "
            "set RSR_DEBIAN_MIRROR to a Debian archive URI (the directory that holds dists/ and pool/)"
        )
    uri, signed_by = candidates[0]
    return uri.rstrip("/"), signed_by


class PrivateApt:
    """apt-get with its own source list, index and cache directories, so the system's apt state is left alone."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lists = root / "lists"
        self.cache = root / "cache"
        self.source_list = root / "sources.list"

    def options(self) -> list[str]:
        opts = [
            f"Dir::Etc::SourceList={self.source_list}",
            "Dir::Etc::SourceParts=/dev/null",
            f"Dir::State::Lists={self.lists}",
            f"Dir::Cache={self.cache}",
        ]
        if os.geteuid() == 0:
            # Downloads land in our root-owned directories, which apt's unprivileged `_apt` user cannot write;
            # without this apt falls back to root anyway but prints a warning per file.
            opts.append("APT::Sandbox::User=root")
        return [arg for opt in opts for arg in ("-o", opt)]

    def update(self) -> None:
        uri, signed_by = _system_debian_mirror()
        option = f" [signed-by={signed_by}]" if signed_by else ""
        self.source_list.parent.mkdir(parents=True, exist_ok=True)
        self.source_list.write_text(
            f"deb{option} {uri} {DEBIAN_SUITE} main\ndeb-src{option} {uri} {DEBIAN_SUITE} main\n"
        )
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        (self.cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        log(f"apt index for {DEBIAN_SUITE} main (private apt state in {self.root})")
        # --error-on=any: by default an unreachable archive is only a warning and `update` "succeeds".
        self.run(["update", "-q", "--error-on=any"], cwd=self.root)

    def run(self, args: list[str], cwd: Path) -> None:
        cmd = ["apt-get", *self.options(), *args]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            die(
                f"`apt-get {' '.join(args)}` failed (exit {proc.returncode}). The build needs the Debian archive; "
                "is the network to the package registry reachable?"
            )


def run_quietly(cmd: list[str]) -> str:
    """Runs a command, returning its stdout; on failure shows its output and stops."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        die(f"`{' '.join(cmd)}` failed (exit {proc.returncode})")
    return proc.stdout.strip()


def _ensure_rsync() -> None:
    # Kubernetes' hack/lib/golang.sh copies the finished binaries with `rsync -pc`; without it `make` fails at the very
    # end. It is a small, ordinary Debian package, so install it the normal way (allowed on these machines).
    if shutil.which("rsync"):
        return
    if os.geteuid() != 0:
        die("rsync is required by the Kubernetes build; install it (apt-get install rsync) and re-run")
    log("installing rsync (needed by the Kubernetes makefiles)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rsync"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0 or not shutil.which("rsync"):
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        die("could not install rsync")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_make(src: Path, goroot: Path, gocache: Path, log_path: Path) -> None:
    """Runs the upstream `make`, streaming its output, plus a heartbeat while the Go compiler is silent."""
    # hack/lib/golang.sh forces GOPATH/GOCACHE to _output/local/go{,/cache}; a symlink puts that cache in our
    # persistent work dir so a retry after an interrupted or failed build is much faster than a cold one.
    gocache.mkdir(parents=True, exist_ok=True)
    go_dir = src / "_output" / "local" / "go"
    go_dir.mkdir(parents=True, exist_ok=True)
    (go_dir / "cache").symlink_to(gocache, target_is_directory=True)

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GO", "KUBE_", "CGO_")) and key not in {"MAKEFLAGS", "MFLAGS"}
    }
    env.update(
        {
            "GOROOT": str(goroot),
            "PATH": f"{goroot / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            "CGO_ENABLED": "0",  # static binaries, and no C toolchain needed
            "GOPATH": str(src / ".go"),
            "GOFLAGS": "-mod=vendor",  # the tarball vendors everything; never reach for a module proxy
            "HOME": env.get("HOME", str(src)),
        }
    )
    cmd = ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in KUBE_COMMANDS)]
    log(f"make {cmd[1]!r} in {src} (full log: {log_path})")
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=60)
    last_output = [time.monotonic()]
    done = threading.Event()

    def heartbeat() -> None:
        # Compiling kube-apiserver prints nothing for minutes; tell the human we are alive.
        while not done.wait(20):
            if time.monotonic() - last_output[0] >= 20:
                log(f"  ... still compiling ({fmt_duration(time.monotonic() - started)} elapsed)")

    with log_path.open("w") as log_file:
        # Own process group, so that on interruption the whole tree (make, bash, go, compile) can be stopped at once.
        proc = subprocess.Popen(
            cmd,
            cwd=src,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                tail.append(line)
                last_output[0] = time.monotonic()
                sys.stderr.write(f"  make| {line}")
                sys.stderr.flush()
            returncode = proc.wait()
        except BaseException:
            # Ctrl-C or SIGTERM: stop the compilers before the caller deletes the tree they are writing to.
            _kill_group(proc)
            raise
        finally:
            done.set()
            thread.join()
    if returncode != 0:
        sys.stderr.write("".join(tail))
        die(f"make failed (exit {returncode}) after {fmt_duration(time.monotonic() - started)}; see {log_path}")
    log(f"make finished in {fmt_duration(time.monotonic() - started)}")


def build() -> Path:
    """Builds (once) and returns the directory holding kube-apiserver, kube-controller-manager and etcd."""
    final = bin_dir().parent
    if binaries_present():
        return bin_dir()
    root = cache_root()
    with exclusive_lock(root / f"kube-{KUBE_VERSION}.lock"):
        if binaries_present():  # another process finished it while we waited for the lock
            return bin_dir()
        started = time.monotonic()
        log(f"building Kubernetes v{KUBE_VERSION} from Debian's source package into {final} (~4-5 min on 2 cores)")
        # Fixed paths, not a fresh mkdtemp: Go's build cache keys include the package directory (the build does not
        # use `go build -trimpath`), so only a rebuild in the same place hits it (measured: ~1m45s instead of ~5 min).
        # The lock above makes fixed paths safe.
        work = root / f"kube-{KUBE_VERSION}.work"
        scratch = work / "scratch"  # downloads, extracted toolchain and source tree: deleted after every attempt
        staging = root / f"kube-{KUBE_VERSION}.tmp"  # becomes `final` with one rename
        for stale in (scratch, staging):
            shutil.rmtree(stale, ignore_errors=True)
        downloads, toolchain, src = scratch / "downloads", scratch / "root", scratch / "src"
        for directory in (downloads, toolchain, staging / "bin"):
            directory.mkdir(parents=True)
        log_path = work / "build.log"
        try:
            log("phase 1/5: apt index")
            apt = PrivateApt(work / "apt")
            apt.update()

            log(f"phase 2/5: download kubernetes (source), {', '.join(GO_PACKAGES)}, {ETCD_PACKAGE}")
            apt.run(["source", "--download-only", "-q", "kubernetes"], cwd=downloads)
            apt.run(["download", "-q", *GO_PACKAGES, ETCD_PACKAGE], cwd=downloads)
            dscs = sorted(downloads.glob("kubernetes_*.dsc"))
            if len(dscs) != 1:
                die(f"expected one kubernetes .dsc in {downloads}, found {[p.name for p in dscs]}")
            debian_version = dscs[0].name.removeprefix("kubernetes_").removesuffix(".dsc")
            upstream = debian_version.split("-", 1)[0].split("really")[-1]
            if upstream != KUBE_VERSION:
                die(
                    f"Debian now ships kubernetes {debian_version} (upstream {upstream}), "
                    f"not {KUBE_VERSION}: update KUBE_VERSION in {__file__}"
                )
            debs = sorted(downloads.glob("*.deb"))
            log(f"  kubernetes {debian_version}; {', '.join(p.name for p in debs)}")

            log("phase 3/5: extract Go toolchain, etcd and the source tree (Debian patches applied)")
            for deb in debs:
                run_quietly(["dpkg-deb", "-x", str(deb), str(toolchain)])
            if not shutil.which("dpkg-source"):
                die("dpkg-source not found (package dpkg-dev)")
            # dpkg-source checks the .dsc checksums and applies debian/patches (apt already verified the downloads
            # against the archive's signed index).
            run_quietly(["dpkg-source", "-x", str(dscs[0]), str(src)])

            log(f"phase 4/5: compile {', '.join(KUBE_COMMANDS)}")
            _ensure_rsync()
            _run_make(src, toolchain / GOROOT_IN_DEB, work / "gocache", log_path)

            log("phase 5/5: install")
            built = src / "_output" / "bin"
            for name in KUBE_COMMANDS:
                shutil.copy2(built / name, staging / "bin" / name)  # copy2 follows the _output/bin symlink chain
            shutil.copy2(src / "build" / "pause" / "linux" / "pause.c", staging / "bin" / PAUSE_SOURCE)
            shutil.copy2(toolchain / "usr" / "bin" / "etcd", staging / "bin" / "etcd")
            versions = {
                name: run_quietly([str(staging / "bin" / name), "--version"]).splitlines()[0] for name in BINARIES
            }
            info = {
                "kube_version": KUBE_VERSION,
                "debian_source_version": debian_version,
                "debs": [p.name for p in debs],
                "binaries": versions,
                "build_seconds": round(time.monotonic() - started),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staging / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
            if final.exists():
                # An older cache (the control plane only) or binaries deleted by hand: replace file by file. Each
                # rename is atomic, so a cluster running the old binaries keeps running (it holds the old inodes).
                (final / "bin").mkdir(exist_ok=True)
                for item in sorted((staging / "bin").iterdir()):
                    os.replace(item, final / "bin" / item.name)
                os.replace(staging / "build-info.json", final / "build-info.json")
            else:
                staging.rename(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)
        log(f"built in {fmt_duration(time.monotonic() - started)}: {', '.join(versions.values())}")
        log(f"cached in {bin_dir()} (Go build cache kept in {work / 'gocache'})")
    return bin_dir()


# ------------------------------------------------------------------------------------------------------------ cluster


@dataclass(frozen=True)
class Layout:
    """Every path `up` writes below DIR."""

    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"  # tokens and keys, mode 0700

    @property
    def apiserver_certs(self) -> Path:
        return self.dir / "pki" / "apiserver"

    @property
    def kcm_certs(self) -> Path:
        return self.dir / "pki" / "controller-manager"

    @property
    def ca_bundle(self) -> Path:
        # One local CA (openssl) signs the apiserver's serving certificate (IP 127.0.0.1: the same address on the host
        # side of the bridge and inside the node's namespace), the kubelet's serving certificate and the apiserver's
        # client certificate for the kubelet. Clients verify against it (no insecure-skip-tls-verify anywhere).
        return self.pki / "ca.crt"

    @property
    def node(self) -> Path:
        return self.dir / "node"  # containerd, kubelet, CNI and image files; removed by `down`

    @property
    def pids(self) -> Path:
        return self.dir / "pids.json"  # every process started so far, written as they start (for `down` after a crash)

    @property
    def containerd_socket(self) -> Path:
        return self.node / "containerd" / "containerd.sock"

    @property
    def bridge_socket(self) -> Path:
        return self.dir / "apiserver.sock"

    @property
    def host_route_marker(self) -> Path:
        return self.dir / "host-route"  # present when `up` added the pod subnet's unreachable route on the host

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def responder_kubeconfig(self) -> Path:
        return self.dir / "responder.kubeconfig"

    @property
    def responder_nocapture_kubeconfig(self) -> Path:
        return self.dir / "responder-nocapture.kubeconfig"

    @property
    def kcm_kubeconfig(self) -> Path:
        return self.pki / "controller-manager.kubeconfig"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets are held open until every port is chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def process_alive(pid: int, binary: str | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, runs `binary`: a recycled PID must never be signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # Field 3 is the state; it follows the parenthesised command name, which may itself contain spaces.
    if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        return False  # our detached children are reaped by init, which may be slow (or absent in a container)
    return binary is None or (bool(cmdline) and cmdline[0].decode(errors="replace") == binary)


def https_get(url: str, ca_file: Path, token: str | None = None, timeout: float = 3.0) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def kubeconfig_text(server: str, ca_file: Path, user: str, token: str) -> str:
    # JSON-quoted strings are valid YAML scalars, so nothing here needs a YAML library.
    q = json.dumps
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: rsr-local\n  cluster:\n    server: {q(server)}\n    certificate-authority: {q(str(ca_file))}\n"
        "users:\n"
        f"- name: {q(user)}\n  user:\n    token: {q(token)}\n"
        "contexts:\n"
        f"- name: rsr-local\n  context:\n    cluster: rsr-local\n    user: {q(user)}\n"
        "current-context: rsr-local\n"
    )


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def load_state(layout: Layout) -> dict[str, Any] | None:
    try:
        state = json.loads(layout.state.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def check_health(state: dict[str, Any]) -> list[str]:
    """Problems with a recorded cluster; empty means healthy."""
    problems = []
    for name, pid in state.get("pids", {}).items():
        if not process_alive(int(pid), state.get("binaries", {}).get(name)):
            problems.append(f"{name} (pid {pid}) is not running")
    if problems:
        return problems
    try:
        status, body = https_get(f"{state['server']}/readyz", Path(state["ca_file"]), state["admin_token"])
    except (OSError, KeyError, ssl.SSLError) as exc:
        return [f"apiserver /readyz unreachable: {exc}"]
    if status != 200:
        problems.append(f"apiserver /readyz answered {status}: {body[:200]}")
    elif state.get("mode") == "node":
        try:
            ready, reason = node_status(state["server"], Path(state["ca_file"]), state["admin_token"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            ready, reason = False, str(exc)
        if not ready:
            problems.append(f"node {host.NODE_NAME} not Ready: {reason[:200]}")
    return problems


def start_process(
    name: str, args: list[str], layout: Layout, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    layout.logs.mkdir(parents=True, exist_ok=True)
    with (layout.logs / f"{name}.log").open("ab") as log_file:
        # No shell; own session, so the processes outlive `up` and a Ctrl-C in the user's terminal does not reach them.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=layout.dir,
            env={**os.environ, **env} if env else None,
        )
    # Recorded at once, so `down` can stop it even if `up` dies before writing state.json.
    pids = json.loads(layout.pids.read_text()) if layout.pids.exists() else {"pids": {}, "binaries": {}}
    pids["pids"][name] = proc.pid
    # nsenter execs the program: once running, the process is the binary itself (the identity `down` checks).
    pids["binaries"][name] = args[args.index("--") + 1] if args[0] == "nsenter" else args[0]
    write_private(layout.pids, json.dumps(pids))
    return proc


def log_tail(layout: Layout, name: str, lines: int = 30) -> str:
    try:
        return "".join((layout.logs / f"{name}.log").read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, procs: dict[str, subprocess.Popen[bytes]]
) -> float:
    """Polls check() until it returns True; fails early (with the log tail) if a started process exits."""
    started = time.monotonic()
    last_error = ""
    while time.monotonic() - started < timeout:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise StartupError(f"{name} exited with {proc.returncode} while waiting for {what}", name)
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ssl.SSLError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what} {last_error}".rstrip(), None)


class StartupError(Exception):
    def __init__(self, message: str, process: str | None) -> None:
        super().__init__(message)
        self.process = process


def stop_pids(pids: dict[str, int], binaries: dict[str, str], timeout: float = 10.0) -> None:
    """SIGTERM in reverse start order, SIGKILL whatever is still alive after `timeout`."""
    ordered = sorted(pids, key=lambda n: PROCESS_ORDER.index(n) if n in PROCESS_ORDER else -1, reverse=True)
    for name in ordered:
        pid = int(pids[name])
        if not process_alive(pid, binaries.get(name)):
            continue
        log(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid, binaries.get(name)) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps it if it happens to be our own child
            time.sleep(0.1)
        if process_alive(pid, binaries.get(name)):
            log(f"{name} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------------------- rbac


def render_manifest(name: str, identity: str) -> str:
    """A deploy/kubernetes manifest with `${responder_identity}` filled in, as Terraform's templatefile() does."""
    path = MANIFEST_DIR / name
    text = path.read_text().replace("${responder_identity}", identity)
    if "${" in text:
        die(f"{path} has a template variable other than responder_identity")
    return text


def kubectl(
    kubeconfig: Path, args: list[str], stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs kubectl (argv, never a shell) against the cluster of `kubeconfig`."""
    if not os.access(KUBECTL, os.X_OK):
        die(f"{KUBECTL} not found; install kubectl or point RSR_KUBECTL at it")
    proc = subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "--request-timeout=30s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        die(f"`kubectl {' '.join(args)}` failed (exit {proc.returncode})")
    return proc


def nocapture_bindings(admin_kubeconfig: Path, core_rbac: str) -> str:
    """rbac.yaml's bindings, renamed and bound to NOCAPTURE_IDENTITY: the same roles, and nothing from rbac-capture."""
    # kubectl turns the YAML into JSON locally, so this file keeps to the standard library.
    rendered = kubectl(admin_kubeconfig, ["create", "--dry-run=client", "-o", "json", "-f", "-"], stdin=core_rbac)
    items: list[dict[str, Any]] = []
    decoder, text, at = json.JSONDecoder(), rendered.stdout, 0
    while text[at:].strip():  # one JSON object per document, one after the other
        at += len(text[at:]) - len(text[at:].lstrip())
        item, at = decoder.raw_decode(text, at)
        items.extend(item["items"] if item.get("kind") == "List" else [item])
    bindings = []
    for item in items:
        if item.get("kind") not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        item["metadata"]["name"] += "-nocapture"
        item["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NOCAPTURE_IDENTITY}]
        bindings.append(item)
    if not bindings:
        die(f"{MANIFEST_DIR / CORE_RBAC} has no bindings to copy for {NOCAPTURE_IDENTITY}")
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": bindings})


def can_i(admin_kubeconfig: Path, user: str, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    """The authorizer's answer for `user` (the admin is in system:masters, so it may impersonate)."""
    args = ["auth", "can-i", verb, resource, f"--namespace={namespace}", f"--as={user}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    return kubectl(admin_kubeconfig, args, check=False).stdout.strip() == "yes"


def apply_rbac(layout: Layout, timeout: float = 20.0) -> None:
    """Gives the local identities their real rights: rbac.yaml + rbac-capture.yaml for the responder, rbac.yaml's
    roles alone for the no-capture identity. Idempotent (server-side apply), so an edited manifest replaces what a
    long-lived cluster stored; waits until the authorizer answers with the new bindings."""
    admin = layout.admin_kubeconfig
    core = render_manifest(CORE_RBAC, RESPONDER_IDENTITY)
    capture = render_manifest(CAPTURE_RBAC, RESPONDER_IDENTITY)
    if f"name: {RBAC_NAMESPACE}" not in core:
        die(f"{MANIFEST_DIR / CORE_RBAC} no longer creates the {RBAC_NAMESPACE} namespace")
    apply = ["apply", "--server-side", "--field-manager=rsr-kubeenv", "--force-conflicts", "-f", "-"]
    # The Namespace is the first object of rbac.yaml, so its Role lands after it in the same apply.
    kubectl(admin, apply, stdin=f"{core}\n---\n{capture}")
    kubectl(admin, apply, stdin=nocapture_bindings(admin, core))

    # The RBAC authorizer reads bindings through informers: for a moment after the apply they are unseen.
    expected = [
        (RESPONDER_IDENTITY, "delete", "pods", "default", "", True),
        (RESPONDER_IDENTITY, "update", "leases", RBAC_NAMESPACE, "", True),
        (RESPONDER_IDENTITY, "create", "pods", "default", "exec", True),
        (NOCAPTURE_IDENTITY, "delete", "pods", "default", "", True),
        (NOCAPTURE_IDENTITY, "update", "leases", RBAC_NAMESPACE, "", True),
    ]
    deadline = time.monotonic() + timeout
    while expected and time.monotonic() < deadline:
        user, verb, resource, namespace, sub, want = expected[0]
        if can_i(admin, user, verb, resource, namespace, sub) == want:
            expected.pop(0)
        else:
            time.sleep(0.2)
    if expected:
        die(f"the RBAC bindings were not in effect within {timeout:.0f}s: {expected[0]}")
    if can_i(admin, NOCAPTURE_IDENTITY, "create", "pods", "default", "exec"):
        die(f"{NOCAPTURE_IDENTITY} may exec: something besides {CAPTURE_RBAC} grants pods/exec")
    log(f"RBAC applied: {RESPONDER_IDENTITY} ({CORE_RBAC} + {CAPTURE_RBAC}), {NOCAPTURE_IDENTITY} ({CORE_RBAC} only)")


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


def ensure_node_packages() -> None:
    """Installs the node's Debian packages when missing (the ordinary apt client, as `make test` does on CI)."""
    missing = [name for name, path in NODE_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    log(f"installing Debian packages for the node: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:  # a fresh machine may have no package index yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or any(not Path(NODE_PACKAGES[name]).exists() for name in missing):
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        die(f"could not install {' '.join(missing)}")


def node_status(server: str, ca_file: Path, token: str) -> tuple[bool, str]:
    """(Ready, a short reason) for the node named 127.0.0.1."""
    code, body = https_get(f"{server}/api/v1/nodes/{host.NODE_NAME}", ca_file, token)
    if code != 200:
        return False, f"node {host.NODE_NAME}: HTTP {code}"
    for condition in json.loads(body).get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status") == "True", condition.get("message", "")
    return False, "no Ready condition yet"


def ctr(layout: Layout, *args: str, check: bool = True) -> str:
    """containerd's own client, on the node's socket (a Unix socket: it works from the host's namespace)."""
    cmd = ["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise StartupError(f"`{' '.join(cmd[3:])}` failed: {proc.stderr.strip()[-500:]}", "containerd")
    return proc.stdout


def write_node_files(layout: Layout, names: host.NodeNames, ports: dict[str, int], kubeconfigs: dict[str, str]) -> None:
    node = layout.node
    for sub in ("containerd", "cni", "cni-ipam", "kubelet", "images", "scheduler-certs"):
        (node / sub).mkdir(parents=True, exist_ok=True)
    (node / "containerd" / "config.toml").write_text(host.containerd_config(node))
    (node / "cni" / "10-rsr.conflist").write_text(host.cni_conflist(node, names))
    (node / "kubelet-config.yaml").write_text(host.kubelet_config(layout.pki, names, ports["kubelet"]))
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
    with tempfile.NamedTemporaryFile("w", dir=layout.dir, prefix=".state.", delete=False) as tmp:
        json.dump(state, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o600)
    os.replace(tmp.name, layout.state)
    log(f"NetworkPolicy dataplane: {mode}")
    return 0


def up(directory: Path, controller_manager: bool = True, node: bool = True) -> int:
    layout = Layout(directory.resolve())
    state = load_state(layout)
    with_node = node_possible(node and controller_manager)
    if state is not None:
        problems = check_health(state)
        if "responder_nocapture_kubeconfig" not in state:
            problems.append("started by an older kubeenv (no no-capture identity)")
        same = (
            bool(state.get("pids", {}).get("kube-controller-manager")) == controller_manager
            and (state.get("mode") == "node") == with_node
        )
        if not problems and same:
            apply_rbac(layout)  # the manifests may have changed since it started
            if with_node and (state["node"].get("netpol") or {}).get("mode") != netpol.mode_from_env():
                switch_netpol(directory, netpol.mode_from_env())
                state = load_state(layout) or state
            print_summary(state, "kubeenv: cluster already running")
            return 0
        log(f"replacing the cluster recorded in {layout.state}: {'; '.join(problems) or 'different options'}")
    if state is not None or layout.pids.exists() or layout.node.exists():
        down(directory)  # also what a crashed `up` left behind

    bins = build()
    netpol_mode = netpol.mode_from_env() if with_node else "none"
    netpol_bin = None
    if with_node:
        ensure_node_packages()
        if netpol_mode != "none":
            netpol_bin = netpol.build(cache_root(), log)
    started = time.monotonic()
    # A fresh start every time: new data dir, tokens and certificates, so nothing stale (or half-written by a crashed
    # run) survives. Only paths this tool owns are removed.
    layout.dir.mkdir(parents=True, exist_ok=True)
    for path in (layout.etcd_data, layout.pki, layout.logs, layout.node):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.admin_kubeconfig, layout.responder_kubeconfig, layout.responder_nocapture_kubeconfig):
        path.unlink(missing_ok=True)
    layout.pki.mkdir(mode=0o700)
    layout.etcd_data.mkdir(mode=0o700)

    identities = ("admin", "responder", "nocapture", "kcm", "node", "scheduler", "netpol")
    tokens = {name: secrets.token_hex(24) for name in identities}
    # Static token file: token,user,uid,"groups". The responder identities get no group: system:authenticated is
    # implicit, so their rights come only from deploy/kubernetes (applied below by apply_rbac). Each component has its
    # own token, as on a real cluster; the kubelet's is in system:nodes, for the Node authorizer and NodeRestriction.
    write_private(
        layout.pki / "tokens.csv",
        f'{tokens["admin"]},{ADMIN_USER},rsr-admin,"system:masters"\n'
        f"{tokens['responder']},{RESPONDER_IDENTITY},rsr-responder\n"
        f"{tokens['nocapture']},{NOCAPTURE_IDENTITY},rsr-responder-nocapture\n"
        f"{tokens['kcm']},{KCM_USER},rsr-kube-controller-manager\n"
        f"{tokens['scheduler']},{SCHEDULER_USER},rsr-kube-scheduler\n"
        f'{tokens["node"]},{NODE_USER},rsr-node,"system:nodes"\n'
        f"{tokens['netpol']},{netpol.USER},rsr-netpol\n",
    )
    # Service-account signing key: the apiserver issues/verifies tokens with it and the controller-manager mints the
    # per-controller service-account tokens (--use-service-account-credentials). The stdlib has no RSA, so openssl.
    sa_key, sa_pub = layout.pki / "sa.key", layout.pki / "sa.pub"
    for cmd in (
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key)],
        ["openssl", "pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    sa_key.chmod(0o600)
    host.make_ca(layout.pki)
    api_key, api_crt = host.issue_cert(
        layout.pki,
        "apiserver",
        "/CN=kube-apiserver",
        "serverAuth",
        ["IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default.svc"],
    )
    # The apiserver proves itself to the kubelet with this (system:masters: exec, logs), and checks the kubelet's
    # serving certificate (IP 127.0.0.1) against the same CA: TLS verified both ways.
    client_key, client_crt = host.issue_cert(
        layout.pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth"
    )
    if with_node:
        host.issue_cert(layout.pki, "kubelet", f"/O=system:nodes/CN={NODE_USER}", "serverAuth", ["IP:127.0.0.1"])

    names = host.NodeNames.for_dir(layout.dir)

    def wrap(argv: list[str]) -> list[str]:
        return host.in_netns(names, argv) if with_node else argv

    etcd_client, etcd_peer, api_port, kcm_port, sched_port, kubelet_port, netpol_port = free_ports(7)
    server = f"https://127.0.0.1:{api_port}"
    commands: dict[str, list[str]] = {
        "bridge-inner": wrap([sys.executable, str(BRIDGE), "inner", str(layout.bridge_socket), str(api_port)]),
        "bridge-outer": [sys.executable, str(BRIDGE), "outer", str(api_port), str(layout.bridge_socket)],
        "etcd": wrap(
            [
                str(bins / "etcd"),
                "--name=rsr",
                f"--data-dir={layout.etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=rsr=http://127.0.0.1:{etcd_peer}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
            ]
        ),
        "kube-apiserver": wrap(
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",  # 1.20 still opens an unauthenticated :8080 unless told not to
                f"--tls-cert-file={api_crt}",
                f"--tls-private-key-file={api_key}",
                f"--token-auth-file={layout.pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                # No kubelet mounts tokens here, and pods must be creatable without a token controller race.
                "--disable-admission-plugins=ServiceAccount",
                f"--kubelet-certificate-authority={layout.ca_bundle}",
                f"--kubelet-client-certificate={client_crt}",
                f"--kubelet-client-key={client_key}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--api-audiences={SA_ISSUER}",
                # There is no real network endpoint for the `kubernetes` Service; don't let the apiserver manage one.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ]
        ),
        "kube-controller-manager": wrap(
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={layout.kcm_kubeconfig}",
                # No --authentication/authorization-kubeconfig: delegated authn would watch kube-system's
                # extension-apiserver-authentication ConfigMap, which this apiserver (no client CA) never creates,
                # and log an error every few seconds.
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                "--port=0",  # 1.20 also serves plain HTTP on :10252 by default
                f"--cert-dir={layout.kcm_certs}",
                "--leader-elect=false",
                # Each controller runs as its own kube-system service account with its bootstrap role, as on a real
                # cluster; the KCM identity itself only needs to mint those tokens.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={layout.ca_bundle}",
                "--controllers=*",
                "--v=1",
            ]
        ),
        "containerd": wrap(["/usr/bin/containerd", f"--config={layout.node / 'containerd' / 'config.toml'}"]),
        "kubelet": wrap(
            [
                str(bins / "kubelet"),
                f"--config={layout.node / 'kubelet-config.yaml'}",
                f"--kubeconfig={layout.node / 'kubelet.kubeconfig'}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{layout.containerd_socket}",
                f"--root-dir={layout.node / 'kubelet'}",
                # 1.20 refuses a loopback --node-ip and would then publish no address (no exec, no logs).
                f"--hostname-override={host.NODE_NAME}",
                f"--register-with-taints={host.TAINT_KEY}=true:NoSchedule",
                f"--pod-infra-container-image={images.PAUSE_IMAGE}",
                "--v=1",
            ]
        ),
        "kube-scheduler": wrap(
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={layout.node / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--port=0",
                f"--cert-dir={layout.node / 'scheduler-certs'}",
                "--v=1",
            ]
        ),
    }
    if not with_node:
        for name in ("bridge-inner", "bridge-outer", "containerd", "kubelet", "kube-scheduler"):
            del commands[name]
    if not controller_manager:
        del commands["kube-controller-manager"]

    procs: dict[str, subprocess.Popen[bytes]] = {}
    node_info: dict[str, Any] = {}
    try:
        if with_node:
            host.record_host_paths(names)
            if host.create_netns(names):
                layout.host_route_marker.write_text(names.pod_subnet + "\n")
            host.create_cgroups(names)
            node_info = {
                "netns": names.netns,
                "netns_inode": names.netns_path.stat().st_ino,
                "pod_subnet": names.pod_subnet,
                "cgroup_parent": names.cgroup_parent,
                "containerd_socket": str(layout.containerd_socket),
                "taint": f"{host.TAINT_KEY}=true:NoSchedule",
                "node_name": host.NODE_NAME,
            }
            log(f"network namespace {names.netns}: loopback only; pod subnet {names.pod_subnet} unreachable")
            procs["bridge-inner"] = start_process("bridge-inner", commands["bridge-inner"], layout)
            procs["bridge-outer"] = start_process("bridge-outer", commands["bridge-outer"], layout)
        procs["etcd"] = start_process("etcd", commands["etcd"], layout)
        procs["kube-apiserver"] = start_process("kube-apiserver", commands["kube-apiserver"], layout)

        def apiserver_ready() -> bool:
            return https_get(f"{server}/readyz", layout.ca_bundle, tokens["admin"])[0] == 200

        took = wait_until("kube-apiserver /readyz", apiserver_ready, 90, procs)
        where = f" in network namespace {names.netns}, reached from the host over {layout.bridge_socket}"
        log(f"kube-apiserver ready on {server}{where if with_node else ''} in {took:.1f}s")

        for path, user, token in (
            (layout.admin_kubeconfig, ADMIN_USER, tokens["admin"]),
            (layout.responder_kubeconfig, RESPONDER_IDENTITY, tokens["responder"]),
            (layout.responder_nocapture_kubeconfig, NOCAPTURE_IDENTITY, tokens["nocapture"]),
            (layout.kcm_kubeconfig, KCM_USER, tokens["kcm"]),
        ):
            write_private(path, kubeconfig_text(server, layout.ca_bundle, user, token))

        if controller_manager:
            procs["kube-controller-manager"] = start_process(
                "kube-controller-manager", commands["kube-controller-manager"], layout
            )
            # The controllers first wait for their service-account tokens. The `default` ServiceAccount of `default`
            # appears once the token and service-account controllers run.
            sa_url = f"{server}/api/v1/namespaces/default/serviceaccounts/default"
            took = wait_until(
                "the controllers to start (default/default ServiceAccount)",
                lambda: https_get(sa_url, layout.ca_bundle, tokens["admin"])[0] == 200,
                60,
                procs,
            )
            log(f"kube-controller-manager working in {took:.1f}s")
        apply_rbac(layout)

        if with_node:
            node_started = time.monotonic()
            write_node_files(
                layout,
                names,
                {"kubelet": kubelet_port},
                {
                    "kubelet": kubeconfig_text(server, layout.ca_bundle, NODE_USER, tokens["node"]),
                    "scheduler": kubeconfig_text(server, layout.ca_bundle, SCHEDULER_USER, tokens["scheduler"]),
                    "netpol": kubeconfig_text(server, layout.ca_bundle, netpol.USER, tokens["netpol"]),
                },
            )
            kubectl(layout.admin_kubeconfig, ["apply", "-f", "-"], stdin=netpol.rbac_manifest())
            netpol.install_rules(names)
            procs["containerd"] = start_process("containerd", commands["containerd"], layout, SEALED_ENV)
            wait_until(
                "containerd",
                lambda: layout.containerd_socket.exists() and bool(ctr(layout, "version", check=False)),
                30,
                procs,
            )
            node_info["images"] = import_images(layout, bins / PAUSE_SOURCE)
            procs["kubelet"] = start_process("kubelet", commands["kubelet"], layout, SEALED_ENV)
            procs["kube-scheduler"] = start_process("kube-scheduler", commands["kube-scheduler"], layout, SEALED_ENV)
            took = wait_until(
                f"node {host.NODE_NAME} Ready",
                lambda: node_status(server, layout.ca_bundle, tokens["admin"])[0],
                120,
                procs,
            )
            log(f"node {host.NODE_NAME} Ready {time.monotonic() - node_started:.1f}s after containerd started")
            node_info["netpol"] = {"mode": netpol_mode, "metrics_port": netpol_port}
            if netpol_bin is not None:
                procs["netpol"] = start_netpol(layout, names, netpol_bin, netpol_port, netpol_mode, procs)
    except (StartupError, OSError, subprocess.SubprocessError, RuntimeError) as exc:
        log(f"startup failed: {exc}")
        culprit = exc.process if isinstance(exc, StartupError) and exc.process else next(reversed(procs), None)
        if culprit:
            sys.stderr.write(f"--- last lines of {layout.logs / (culprit + '.log')}:\n{log_tail(layout, culprit)}\n")
        down(directory)
        return 1
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): no state.json will record these processes, so stop them now.
        down(directory)
        raise

    state = {
        "server": server,
        "mode": "node" if with_node else "control-plane",
        "pids": {name: proc.pid for name, proc in procs.items()},
        "binaries": json.loads(layout.pids.read_text())["binaries"],
        "ports": {
            "etcd": etcd_client,
            "etcd_peer": etcd_peer,
            "kube-apiserver": api_port,
            "kcm": kcm_port,
            "kube-scheduler": sched_port,
            "kubelet": kubelet_port,
            "netpol": netpol_port,
        },
        "node": node_info or None,
        "kubeconfig": str(layout.admin_kubeconfig),
        "responder_kubeconfig": str(layout.responder_kubeconfig),
        "responder_identity": RESPONDER_IDENTITY,
        "responder_nocapture_kubeconfig": str(layout.responder_nocapture_kubeconfig),
        "responder_nocapture_identity": NOCAPTURE_IDENTITY,
        "version": KUBE_VERSION,
        "ca_file": str(layout.ca_bundle),
        "admin_token": tokens["admin"],  # for `status`; the same secret is in the kubeconfig next to this file
        "dir": str(layout.dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written last and atomically: its presence means "a complete cluster was started".
    with tempfile.NamedTemporaryFile("w", dir=layout.dir, prefix=".state.", delete=False) as tmp:
        json.dump(state, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o600)
    os.replace(tmp.name, layout.state)
    print_summary(state, f"kubeenv: cluster up in {fmt_duration(time.monotonic() - started)}")
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


def kill_pids(pids: list[int], what: str) -> None:
    for pid in pids:
        log(f"stopping {what} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def cgroup_pids(names: host.NodeNames) -> list[int]:
    """Every process in the node's cgroup parent: the pods' processes, nothing else (the kubelet put them there)."""
    pids: set[int] = set()
    for top in host.cgroup_dirs(names):
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return sorted(pids)


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
            print(build())
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


if __name__ == "__main__":
    sys.exit(main())
