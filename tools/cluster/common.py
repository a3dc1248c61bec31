"""What every part of the local cluster shares: logging, the cache directory, the identities and the
repository's paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

RESPONDER_IDENTITY = "responder@rsr-test.iam.gserviceaccount.com"
# A second responder identity bound to rbac.yaml's roles only (no rbac-capture.yaml): what a deployment without
# process capture holds, so tests can prove exec is refused without the capture role.
NOCAPTURE_IDENTITY = "responder-nocapture@rsr-test.iam.gserviceaccount.com"
ADMIN_USER = "rsr-admin"
KCM_USER = "system:kube-controller-manager"  # bootstrap RBAC already binds the controller-manager roles to this name
SERVICE_CIDR = "10.96.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc"
REPO_ROOT = Path(__file__).resolve().parents[2]
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


def cache_root() -> Path:
    base = os.environ.get("RSR_CACHE_DIR") or str(Path.home() / ".cache" / "rsr")
    return Path(base).expanduser().resolve()
