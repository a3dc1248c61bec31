"""Every path the cluster writes below its state directory, free ports, private files and state.json."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


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


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    """state.json, atomically (a temporary file renamed over it): its presence means "a complete cluster was started",
    so no reader ever sees half of it."""
    with tempfile.NamedTemporaryFile("w", dir=layout.dir, prefix=".state.", delete=False) as tmp:
        json.dump(state, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o600)
    os.replace(tmp.name, layout.state)
