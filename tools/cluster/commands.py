"""The command line of each component: etcd, the apiserver and controller-manager, and the node's bridge, containerd,
kubelet and scheduler. With a node every command runs inside the node's network namespace (``host.in_netns``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from node import host, images

from cluster.common import BRIDGE, SA_ISSUER, SERVICE_CIDR
from cluster.credentials import Credentials
from cluster.layout import Layout


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    kcm: int
    scheduler: int
    kubelet: int
    netpol: int

    def as_state(self) -> dict[str, int]:
        return {
            "etcd": self.etcd,
            "etcd_peer": self.etcd_peer,
            "kube-apiserver": self.apiserver,
            "kcm": self.kcm,
            "kube-scheduler": self.scheduler,
            "kubelet": self.kubelet,
            "netpol": self.netpol,
        }


def etcd(bins: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bins / "etcd"),
        "--name=rsr",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{ports.etcd}",
        f"--advertise-client-urls=http://127.0.0.1:{ports.etcd}",
        f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
        f"--initial-cluster=rsr=http://127.0.0.1:{ports.etcd_peer}",
        "--initial-cluster-state=new",
        "--logger=zap",
        "--log-level=warn",
    ]


def apiserver(bins: Path, layout: Layout, ports: Ports, creds: Credentials) -> list[str]:
    return [
        str(bins / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        "--insecure-port=0",  # 1.20 still opens an unauthenticated :8080 unless told not to
        f"--tls-cert-file={creds.api_crt}",
        f"--tls-private-key-file={creds.api_key}",
        f"--token-auth-file={layout.pki / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # 1.20 only (dropped for a current release): its kubelet here mounts no tokens, and pods must be creatable
        # without racing the service-account controller.
        "--disable-admission-plugins=ServiceAccount",
        f"--kubelet-certificate-authority={layout.ca_bundle}",
        f"--kubelet-client-certificate={creds.kubelet_client_crt}",
        f"--kubelet-client-key={creds.kubelet_client_key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-key-file={creds.sa_pub}",
        f"--service-account-signing-key-file={creds.sa_key}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--api-audiences={SA_ISSUER}",
        # There is no real network endpoint for the `kubernetes` Service; don't let the apiserver manage one.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager(bins: Path, layout: Layout, ports: Ports, creds: Credentials) -> list[str]:
    return [
        str(bins / "kube-controller-manager"),
        f"--kubeconfig={layout.kcm_kubeconfig}",
        # No --authentication/authorization-kubeconfig: delegated authn would watch kube-system's
        # extension-apiserver-authentication ConfigMap, which this apiserver (no client CA) never creates,
        # and log an error every few seconds.
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.kcm}",
        "--port=0",  # 1.20 also serves plain HTTP on :10252 by default
        f"--cert-dir={layout.kcm_certs}",
        "--leader-elect=false",
        # Each controller runs as its own kube-system service account with its bootstrap role, as on a real
        # cluster; the KCM identity itself only needs to mint those tokens.
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={creds.sa_key}",
        f"--root-ca-file={layout.ca_bundle}",
        "--controllers=*",
        "--v=1",
    ]


def bridge(layout: Layout, ports: Ports) -> dict[str, list[str]]:
    """The two halves of the host's way to the apiserver: inside the namespace and on the host."""
    return {
        "bridge-inner": [sys.executable, str(BRIDGE), "inner", str(layout.bridge_socket), str(ports.apiserver)],
        "bridge-outer": [sys.executable, str(BRIDGE), "outer", str(ports.apiserver), str(layout.bridge_socket)],
    }


def node(bins: Path, layout: Layout, ports: Ports, legacy: bool = True) -> dict[str, list[str]]:
    """containerd, the kubelet and the scheduler (the scheduler only matters once there is a node). ``legacy`` for
    1.20's kubelet, which still needs to be told the runtime is remote and which sandbox image to use (a current one
    takes the sandbox image from containerd's config and refuses both flags)."""
    kubelet = [
        str(bins / "kubelet"),
        f"--config={layout.node / 'kubelet-config.yaml'}",
        f"--kubeconfig={layout.node / 'kubelet.kubeconfig'}",
        f"--container-runtime-endpoint=unix://{layout.containerd_socket}",
        f"--root-dir={layout.node / 'kubelet'}",
        # 1.20 refuses a loopback --node-ip and would then publish no address (no exec, no logs).
        f"--hostname-override={host.NODE_NAME}",
        f"--register-with-taints={host.TAINT_KEY}=true:NoSchedule",
        "--v=1",
    ]
    if legacy:
        kubelet[4:4] = ["--container-runtime=remote", f"--pod-infra-container-image={images.PAUSE_IMAGE}"]
    return {
        "containerd": ["/usr/bin/containerd", f"--config={layout.node / 'containerd' / 'config.toml'}"],
        "kubelet": kubelet,
        "kube-scheduler": [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={layout.node / 'scheduler.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            "--port=0",
            f"--cert-dir={layout.node / 'scheduler-certs'}",
            "--v=1",
        ],
    }


# Flags 1.20 needs to close its plain-HTTP ports, removed in 1.24 (a 1.35 binary refuses to start with them), and
# the admission plugin 1.20 runs without: with it, its pods would wait for service-account tokens no kubelet mounts.
# A current cluster runs the ServiceAccount plugin, so pods get projected tokens as on GKE.
LEGACY_ONLY_FLAGS = frozenset({"--insecure-port=0", "--port=0", "--disable-admission-plugins=ServiceAccount"})


def current(argv: list[str]) -> list[str]:
    """A 1.20 command line as a current release takes it."""
    return [arg for arg in argv if arg not in LEGACY_ONLY_FLAGS]


def all_commands(
    bins: Path,
    layout: Layout,
    ports: Ports,
    creds: Credentials,
    names: host.NodeNames | None,
    with_kcm: bool,
    legacy: bool = True,
) -> dict[str, list[str]]:
    """Every component to start, by name; ``names`` (the node's namespace) is None for the control plane alone;
    ``legacy`` False for a current release (RSR_KUBE=1.35), which has no plain-HTTP ports to close."""
    commands = {"etcd": etcd(bins, layout, ports), "kube-apiserver": apiserver(bins, layout, ports, creds)}
    if with_kcm:
        commands["kube-controller-manager"] = controller_manager(bins, layout, ports, creds)
    if not legacy:
        commands = {name: current(argv) for name, argv in commands.items()}
    if names is None:
        return commands
    commands = {name: host.in_netns(names, argv) for name, argv in commands.items()}
    bridges = bridge(layout, ports)
    commands["bridge-inner"] = host.in_netns(names, bridges["bridge-inner"])
    commands["bridge-outer"] = bridges["bridge-outer"]  # the host's half
    started = node(bins, layout, ports, legacy)
    commands.update({name: host.in_netns(names, argv if legacy else current(argv)) for name, argv in started.items()})
    return commands
