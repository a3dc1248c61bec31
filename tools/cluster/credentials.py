"""Who is who on the local cluster: a static token per identity, the service-account key pair, the certificates
(a private CA, the apiserver's serving and kubelet-client certificates, the kubelet's) and kubeconfigs without YAML."""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from node import host, netpol

from cluster.common import ADMIN_USER, KCM_USER, NOCAPTURE_IDENTITY, NODE_USER, RESPONDER_IDENTITY, SCHEDULER_USER
from cluster.layout import Layout, write_private


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


IDENTITIES = ("admin", "responder", "nocapture", "kcm", "node", "scheduler", "netpol")


@dataclass(frozen=True)
class Credentials:
    """Everything `up` issues afresh for one cluster: a token per identity, the service-account key pair and the
    apiserver's serving and kubelet-client certificates (the CA bundle is at ``layout.ca_bundle``)."""

    tokens: dict[str, str]
    sa_key: Path
    sa_pub: Path
    api_key: Path
    api_crt: Path
    kubelet_client_key: Path
    kubelet_client_crt: Path


def write_token_file(layout: Layout, tokens: dict[str, str]) -> None:
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


def issue(layout: Layout, with_node: bool) -> Credentials:
    """New tokens, keys and certificates in ``layout.pki`` (which `up` has just emptied)."""
    tokens = {name: secrets.token_hex(24) for name in IDENTITIES}
    write_token_file(layout, tokens)
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
    return Credentials(tokens, sa_key, sa_pub, api_key, api_crt, client_key, client_crt)
