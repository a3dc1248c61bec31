"""`build`: Kubernetes compiled from Debian's `kubernetes` source package with Debian's Go 1.19, through a private
apt state (the system's apt sources and state are never modified), cached in ~/.cache/rsr; and, as root, the
Debian packages the node needs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cluster.common import cache_root, die, fmt_duration, log

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


def _make_env(src: Path, goroot: Path) -> dict[str, str]:
    """The environment of the upstream `make`: Debian's Go, static binaries, vendored modules only."""
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
    return env


def _stream(proc: subprocess.Popen[str], log_file: IO[str], tail: deque[str], started: float) -> int:
    """Copies the build's output to its log and the terminal, with a heartbeat while the Go compiler is silent."""
    last_output = [time.monotonic()]
    done = threading.Event()

    def heartbeat() -> None:
        # Compiling kube-apiserver prints nothing for minutes; tell the human we are alive.
        while not done.wait(20):
            if time.monotonic() - last_output[0] >= 20:
                log(f"  ... still compiling ({fmt_duration(time.monotonic() - started)} elapsed)")

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
        return proc.wait()
    except BaseException:
        # Ctrl-C or SIGTERM: stop the compilers before the caller deletes the tree they are writing to.
        _kill_group(proc)
        raise
    finally:
        done.set()
        thread.join()


def _run_make(src: Path, goroot: Path, gocache: Path, log_path: Path) -> None:
    """Runs the upstream `make`, streaming its output, plus a heartbeat while the Go compiler is silent."""
    # hack/lib/golang.sh forces GOPATH/GOCACHE to _output/local/go{,/cache}; a symlink puts that cache in our
    # persistent work dir so a retry after an interrupted or failed build is much faster than a cold one.
    gocache.mkdir(parents=True, exist_ok=True)
    go_dir = src / "_output" / "local" / "go"
    go_dir.mkdir(parents=True, exist_ok=True)
    (go_dir / "cache").symlink_to(gocache, target_is_directory=True)

    cmd = ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in KUBE_COMMANDS)]
    log(f"make {cmd[1]!r} in {src} (full log: {log_path})")
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=60)
    with log_path.open("w") as log_file:
        # Own process group, so that on interruption the whole tree (make, bash, go, compile) can be stopped at once.
        proc = subprocess.Popen(
            cmd,
            cwd=src,
            env=_make_env(src, goroot),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        returncode = _stream(proc, log_file, tail, started)
    if returncode != 0:
        sys.stderr.write("".join(tail))
        die(f"make failed (exit {returncode}) after {fmt_duration(time.monotonic() - started)}; see {log_path}")
    log(f"make finished in {fmt_duration(time.monotonic() - started)}")


@dataclass(frozen=True)
class BuildDirs:
    """Where one build attempt works. Fixed paths, not a fresh mkdtemp: Go's build cache keys include the package
    directory (the build does not use `go build -trimpath`), so only a rebuild in the same place hits it (measured:
    ~1m45s instead of ~5 min). The build lock makes fixed paths safe."""

    work: Path
    scratch: Path  # downloads, extracted toolchain and source tree: deleted after every attempt
    staging: Path  # becomes the final directory with one rename

    @property
    def downloads(self) -> Path:
        return self.scratch / "downloads"

    @property
    def toolchain(self) -> Path:
        return self.scratch / "root"

    @property
    def src(self) -> Path:
        return self.scratch / "src"

    @classmethod
    def fresh(cls, root: Path) -> BuildDirs:
        work = root / f"kube-{KUBE_VERSION}.work"
        dirs = cls(work=work, scratch=work / "scratch", staging=root / f"kube-{KUBE_VERSION}.tmp")
        for stale in (dirs.scratch, dirs.staging):
            shutil.rmtree(stale, ignore_errors=True)
        for directory in (dirs.downloads, dirs.toolchain, dirs.staging / "bin"):
            directory.mkdir(parents=True)
        return dirs


def _download(apt: PrivateApt, dirs: BuildDirs) -> tuple[Path, str, list[Path]]:
    """Phase 2: the kubernetes source package, Debian's Go and etcd; returns the .dsc, its version and the debs."""
    log(f"phase 2/5: download kubernetes (source), {', '.join(GO_PACKAGES)}, {ETCD_PACKAGE}")
    downloads = dirs.downloads
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
    return dscs[0], debian_version, debs


def _extract(dsc: Path, debs: list[Path], dirs: BuildDirs) -> None:
    """Phase 3: the Go toolchain and etcd out of their debs, the source tree with Debian's patches applied."""
    log("phase 3/5: extract Go toolchain, etcd and the source tree (Debian patches applied)")
    for deb in debs:
        run_quietly(["dpkg-deb", "-x", str(deb), str(dirs.toolchain)])
    if not shutil.which("dpkg-source"):
        die("dpkg-source not found (package dpkg-dev)")
    # dpkg-source checks the .dsc checksums and applies debian/patches (apt already verified the downloads
    # against the archive's signed index).
    run_quietly(["dpkg-source", "-x", str(dsc), str(dirs.src)])


def _install(dirs: BuildDirs, final: Path, info: dict[str, Any]) -> dict[str, str]:
    """Phase 5: the binaries and pause.c into the cache, atomically; returns each binary's version line."""
    log("phase 5/5: install")
    staging, built = dirs.staging, dirs.src / "_output" / "bin"
    for name in KUBE_COMMANDS:
        shutil.copy2(built / name, staging / "bin" / name)  # copy2 follows the _output/bin symlink chain
    shutil.copy2(dirs.src / "build" / "pause" / "linux" / "pause.c", staging / "bin" / PAUSE_SOURCE)
    shutil.copy2(dirs.toolchain / "usr" / "bin" / "etcd", staging / "bin" / "etcd")
    versions = {name: run_quietly([str(staging / "bin" / name), "--version"]).splitlines()[0] for name in BINARIES}
    info = {**info, "binaries": versions, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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
    return versions


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
        dirs = BuildDirs.fresh(root)
        try:
            log("phase 1/5: apt index")
            apt = PrivateApt(dirs.work / "apt")
            apt.update()
            dsc, debian_version, debs = _download(apt, dirs)
            _extract(dsc, debs, dirs)
            log(f"phase 4/5: compile {', '.join(KUBE_COMMANDS)}")
            _ensure_rsync()
            _run_make(dirs.src, dirs.toolchain / GOROOT_IN_DEB, dirs.work / "gocache", dirs.work / "build.log")
            info = {
                "kube_version": KUBE_VERSION,
                "debian_source_version": debian_version,
                "debs": [p.name for p in debs],
                "build_seconds": round(time.monotonic() - started),
            }
            versions = _install(dirs, final, info)
        finally:
            shutil.rmtree(dirs.scratch, ignore_errors=True)
            shutil.rmtree(dirs.staging, ignore_errors=True)
        log(f"built in {fmt_duration(time.monotonic() - started)}: {', '.join(versions.values())}")
        log(f"cached in {bin_dir()} (Go build cache kept in {dirs.work / 'gocache'})")
    return bin_dir()


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
