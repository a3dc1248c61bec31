"""The local cluster's Kubernetes (the default; `RSR_KUBE=1.20` asks for the old Debian build instead): compiled with
`go build` from the Go module proxy, cached in ~/.cache/rsr/kube-1.35.4 beside the 1.20.2 build, which it never
touches.

`k8s.io/kubernetes`'s go.mod points its 31 staging modules at folders of its own repository that its module zip
leaves out, so a small wrapper module requires `k8s.io/kubernetes` and replaces each staging module with its published
v0.35.x (the replace lines are read from the release's own go.mod). etcd is the 3.6.6 Kubernetes 1.35 pins
(build/dependencies.yaml; hack/lib/etcd.sh refuses anything older for its own tests), built the same way: Debian 12's
3.4.23 is two minors behind, and a 1.35 apiserver on it loses consistent reads from its watch cache.
The control plane and the node: kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cluster.build import KUBE_VERSION as LEGACY_VERSION
from cluster.build import PAUSE_SOURCE, exclusive_lock
from cluster.common import cache_root, die, fmt_duration, log

DEFAULT_RELEASE = "1.35"
RELEASES = (DEFAULT_RELEASE,)  # built here; RSR_KUBE=1.20 asks for cluster.build's Debian 1.20.2 instead
KUBE_VERSION = "1.35.4"  # the one 1.35 patch release the module proxy serves here
STAGING_VERSION = "v0.35.4"
ETCD_VERSION = "3.6.6"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
BINARIES = (*KUBE_COMMANDS, "etcd")
ETCD_MAIN = "go.etcd.io/etcd/server/v3"  # its main.go is the etcd server command


def requested() -> str | None:
    """The release RSR_KUBE asks for (unset: 1.35, built here), or None for the legacy Debian 1.20.2 build."""
    wanted = os.environ.get("RSR_KUBE", "").strip() or DEFAULT_RELEASE
    if wanted in {"1.20", "1.20.2"}:
        return None
    if wanted not in RELEASES:
        die(f"RSR_KUBE={wanted!r}: this tree builds {', '.join(RELEASES)} (the default) or 1.20")
    return wanted


def wanted_version() -> str:
    """The Kubernetes version RSR_KUBE asks for, as `up` records it in state.json (a reused cluster must match)."""
    return KUBE_VERSION if requested() else LEGACY_VERSION


def work_dir() -> Path:
    return cache_root() / f"kube-{KUBE_VERSION}.work"  # module cache, build cache, wrapper modules: kept


def bin_dir() -> Path:
    return cache_root() / f"kube-{KUBE_VERSION}" / "bin"


def binaries_present() -> bool:
    return all(os.access(bin_dir() / name, os.X_OK) for name in BINARIES) and (bin_dir() / PAUSE_SOURCE).is_file()


def _go_env(work: Path) -> dict[str, str]:
    """The module proxy only (no `direct` fetch from a VCS), static binaries, caches under the work directory."""
    proxy = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True, check=False).stdout.strip()
    proxies = [p for p in proxy.replace("|", ",").split(",") if p and p not in {"direct", "off"}]
    if not proxies:
        die(f"GOPROXY is {proxy!r}: this build fetches from a Go module proxy only")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_"))},
        "GOPROXY": ",".join(proxies),
        "GOMODCACHE": str(work / "gomod"),
        "GOCACHE": str(work / "gocache"),
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


def _go(args: list[str], cwd: Path, env: dict[str, str], label: str) -> str:
    """Runs `go ARGS`, with a heartbeat while it is silent; returns stdout, or stops with its output on failure."""
    started, done = time.monotonic(), threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            log(f"  ... still {label} ({fmt_duration(time.monotonic() - started)} elapsed)")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    finally:
        done.set()
        thread.join()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        die(f"`go {' '.join(args[:2])} ...` failed (exit {proc.returncode}) while {label}")
    return proc.stdout


def _wrappers(work: Path, env: dict[str, str]) -> tuple[Path, Path, Path]:
    """Phase 1: the wrapper modules, the staging replaces read from k8s.io/kubernetes' own go.mod; also returns
    the release's pause.c (build/pause/linux), which the node's sandbox image is compiled from."""
    log(f"phase 1/4: wrapper modules for k8s.io/kubernetes v{KUBE_VERSION} and {ETCD_MAIN} v{ETCD_VERSION}")
    out = _go(["mod", "download", "-json", f"k8s.io/kubernetes@v{KUBE_VERSION}"], work, env, "fetching go.mod")
    module = json.loads(out)
    gomod = Path(module["GoMod"]).read_text()
    pause = Path(module["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    if not pause.is_file():
        die(f"k8s.io/kubernetes v{KUBE_VERSION}'s module has no {pause.relative_to(module['Dir'])}")
    staging = sorted(
        line.split()[0] for line in gomod.splitlines() if "=> ./staging/" in line and line.startswith("\t")
    )
    if len(staging) < 20:
        die(f"k8s.io/kubernetes v{KUBE_VERSION}'s go.mod lists {len(staging)} staging modules; expected ~31")
    kube, etcd = work / "kube", work / "etcd"
    for path in (kube, etcd):
        path.mkdir(parents=True, exist_ok=True)
    replaces = "".join(f"\t{mod} => {mod} {STAGING_VERSION}\n" for mod in staging)
    (kube / "go.mod").write_text(
        f"module rsr.local/kube\n\ngo 1.25\n\nrequire k8s.io/kubernetes v{KUBE_VERSION}\n\nreplace (\n{replaces})\n"
    )
    (etcd / "go.mod").write_text(f"module rsr.local/etcd\n\ngo 1.25\n\nrequire {ETCD_MAIN} v{ETCD_VERSION}\n")
    log(f"  {len(staging)} staging modules replaced by their published {STAGING_VERSION}")
    return kube, etcd, pause


def _download(kube: Path, etcd: Path, env: dict[str, str]) -> None:
    """Phase 2: every module the commands import (only those: not kubectl's or kube-proxy's)."""
    log("phase 2/4: download the modules the commands import (Go module proxy, checked against the checksum db)")
    started = time.monotonic()
    _go(["list", "-deps", *(f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_COMMANDS)], kube, env, "downloading")
    _go(["list", "-deps", ETCD_MAIN], etcd, env, "downloading")
    size = sum(f.stat().st_size for f in (Path(env["GOMODCACHE"]) / "cache" / "download").rglob("*.zip"))
    log(f"  modules ready in {fmt_duration(time.monotonic() - started)} ({size / 1e6:.0f} MB of module zips cached)")


def _ldflags(version: str) -> str:
    """What Kubernetes' own build stamps in (hack/lib/version.sh): the binaries report v1.35.4, not v0.0.0."""
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        major, minor = version.split(".")[:2]
        flags += [f"-X {pkg}.gitVersion=v{version}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}"]
        flags += [f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(flags)


def _compile(kube: Path, etcd: Path, out: Path, env: dict[str, str]) -> dict[str, float]:
    """Phase 3: one `go build` per command (the build cache shares what they have in common); seconds each."""
    log(f"phase 3/4: compile {', '.join(BINARIES)} (~5 min on 2 cores from an empty Go build cache)")
    took: dict[str, float] = {}
    for name in BINARIES:
        started = time.monotonic()
        cwd, pkg = (etcd, ETCD_MAIN) if name == "etcd" else (kube, f"k8s.io/kubernetes/cmd/{name}")
        args = ["build", "-trimpath", "-ldflags", _ldflags(KUBE_VERSION), "-o", str(out / name), pkg]
        _go(args, cwd, env, f"compiling {name}")
        took[name] = round(time.monotonic() - started, 1)
        log(f"  {name} built in {fmt_duration(took[name])}")
    return took


def _install(out: Path, final: Path, info: dict[str, object]) -> dict[str, str]:
    """Phase 4: the binaries and pause.c into the cache, with build-info.json; returns each binary's version line."""
    log("phase 4/4: install")
    versions = {
        name: subprocess.run([str(out / name), "--version"], capture_output=True, text=True, check=False)
        .stdout.strip()
        .splitlines()[0]
        for name in BINARIES
    }
    (out / "build-info.json").write_text(json.dumps({**info, "binaries": versions}, indent=2) + "\n")
    staging = final.with_name(final.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for name in (*BINARIES, PAUSE_SOURCE):
        os.replace(out / name, staging / "bin" / name)
    os.replace(out / "build-info.json", staging / "build-info.json")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return versions


def build() -> Path:
    """Builds (once) and returns the directory holding the 1.35 binaries, etcd and pause.c."""
    if binaries_present():
        return bin_dir()
    if not shutil.which("go"):
        die(f"the `go` command is missing: Kubernetes {KUBE_VERSION} is built with Go (1.25+) from the Go module proxy")
    with exclusive_lock(cache_root() / f"kube-{KUBE_VERSION}.lock"):
        if binaries_present():
            return bin_dir()
        started, work = time.monotonic(), work_dir()
        log(f"building Kubernetes v{KUBE_VERSION} + etcd {ETCD_VERSION} from the Go module proxy into {bin_dir()}")
        work.mkdir(parents=True, exist_ok=True)
        env = _go_env(work)
        out = work / "out"
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(out)
        out.mkdir()
        kube, etcd, pause = _wrappers(work, env)
        shutil.copyfile(pause, out / PAUSE_SOURCE)
        _download(kube, etcd, env)
        took = _compile(kube, etcd, out, env)
        info = {
            "kube_version": KUBE_VERSION,
            "etcd_version": ETCD_VERSION,
            "staging_version": STAGING_VERSION,
            "compile_seconds": took,
            "build_seconds": round(time.monotonic() - started),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        versions = _install(out, bin_dir().parent, info)
        log(f"built in {fmt_duration(time.monotonic() - started)}: {', '.join(versions.values())}")
        log(f"cached in {bin_dir()} (module and Go build caches kept in {work})")
    return bin_dir()
