"""Container images for the local node, built offline from Debian packages: no registry is ever contacted.

- pause (the pod sandbox): build/pause/linux/pause.c from the Kubernetes source, compiled statically with gcc.
- tools (what the demo and tests run): busybox-static with one link per applet, plus procps' `ps` (the runbook's
  `ps axjf`) and the shared libraries `ldd` lists for it, at their real paths.

Each image is written as an OCI image layout in a tar archive (one uncompressed layer, so its diff_id is its digest)
using the standard library only, then imported with `ctr images import`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

PAUSE_IMAGE = "rsr.local/pause:1"
TOOLS_IMAGE = "rsr.local/tools:1"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")
PS = Path("/usr/bin/ps")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Layer:
    """A filesystem layer being assembled: regular files, symlinks and directories, written deterministically."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path -> (content, mode)
    links: dict[str, str] = field(default_factory=dict)  # path -> target
    dirs: set[str] = field(default_factory=set)

    def add_file(self, path: str, content: bytes, mode: int = 0o755) -> None:
        self.files[path.lstrip("/")] = (content, mode)

    def add_link(self, path: str, target: str) -> None:
        self.links[path.lstrip("/")] = target

    def add_dir(self, path: str) -> None:
        self.dirs.add(path.strip("/"))

    def tar(self) -> bytes:
        """The layer as an uncompressed tar: parents first, fixed owner and times (equal inputs, equal digests)."""
        names = set(self.dirs)
        for path in (*self.files, *self.links):
            parts = path.split("/")[:-1]
            names.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(n for n in names if n):
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
            for name in sorted(self.links):
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, self.links[name], 0o777
                tar.addfile(info)
            for name in sorted(self.files):
                content, mode = self.files[name]
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
        return buf.getvalue()


def _blob(data: bytes) -> tuple[str, dict[str, object]]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, {"digest": digest, "size": len(data)}


def write_oci_archive(path: Path, name: str, layer: Layer, config: dict[str, object]) -> str:
    """Writes an OCI image layout tar for image `name`; returns the manifest digest."""
    layer_tar = layer.tar()
    layer_digest, layer_desc = _blob(layer_tar)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "tools/node/images.py (offline, from Debian packages)"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest, config_desc = _blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config_desc},
        "layers": [{"mediaType": OCI_LAYER, **layer_desc}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest, manifest_desc = _blob(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd names the imported image after this annotation.
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }
        ],
    }
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        f"blobs/sha256/{layer_digest.split(':')[1]}": layer_tar,
        f"blobs/sha256/{config_digest.split(':')[1]}": config_bytes,
        f"blobs/sha256/{manifest_digest.split(':')[1]}": manifest_bytes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for entry, data in entries.items():
            info = tarfile.TarInfo(entry)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return manifest_digest


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def build_pause(pause_c: Path, workdir: Path) -> Path:
    """rsr.local/pause:1 from pause.c, compiled statically (as upstream's build/pause/Makefile does, minus docker)."""
    binary = workdir / "pause"
    workdir.mkdir(parents=True, exist_ok=True)
    _run(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=rsr-local", "-o", str(binary), str(pause_c)])
    _run(["strip", str(binary)])
    layer = Layer()
    layer.add_file("pause", binary.read_bytes())
    archive = workdir / "pause.oci.tar"
    write_oci_archive(archive, PAUSE_IMAGE, layer, {"Entrypoint": ["/pause"], "Env": [PATH_ENV]})
    return archive


def shared_libraries(binary: Path) -> list[str]:
    """Paths of the shared libraries (and the loader) `ldd` resolves for `binary`."""
    paths = []
    for line in _run(["ldd", str(binary)]).splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            paths.append(match.group(1))
    return paths


def build_tools(workdir: Path) -> Path:
    """rsr.local/tools:1: busybox-static (sh, nc, sleep, ...) and procps' ps with its libraries."""
    layer = Layer()
    layer.add_file("bin/busybox", BUSYBOX.read_bytes())
    for applet in _run([str(BUSYBOX), "--list-full"]).split():
        if applet.rsplit("/", 1)[-1] == "ps" or applet == "bin/busybox":
            continue  # procps' ps below: the runbook's `ps axjf` (busybox's ps has no j/f)
        layer.add_link(applet, "/bin/busybox")
    layer.add_file("usr/bin/ps", PS.read_bytes())
    for library in shared_libraries(PS):
        layer.add_file(library, Path(library).resolve().read_bytes())
    layer.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644)
    layer.add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
    for directory in ("tmp", "root", "proc", "sys", "dev", "etc"):
        layer.add_dir(directory)
    archive = workdir / "tools.oci.tar"
    write_oci_archive(archive, TOOLS_IMAGE, layer, {"Env": [PATH_ENV], "Cmd": ["/bin/sh"], "WorkingDir": "/"})
    return archive
