"""Cluster connections: one kubeconfig for every cluster (local, non-GKE), or GKE's endpoint, CA and a google-auth
token per cluster, with the control-plane endpoint chosen for reachability (DNS-based, public, private)."""

from __future__ import annotations

import base64
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from responder.adapters.google_token import REFRESH_MARGIN_S, AdcToken, TokenSource
from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_http import KubeHttp
from responder.errors import Unavailable
from responder.intake.identifiers import ClusterRef
from responder.intake.sanitize import clean
from responder.ports import (
    ClusterAPI,
    ClusterInfo,
    Connection,
)
from responder.startup import ImportGate, first_load


class KubeconfigConnector:
    """Every cluster reached through one kubeconfig (local clusters, tests, non-GKE)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def connect(self, ref: ClusterRef) -> Connection:
        """The same client for every cluster reference."""
        with self._lock:
            if self._connection is None:
                if not self.path.is_file():
                    raise Unavailable(f"kubeconfig {self.path} does not exist")
                try:
                    with first_load("kubernetes.config"):  # once per process, without the garbage collector
                        from kubernetes import config

                        api_client = config.new_client_from_config(config_file=str(self.path))
                except Exception as exc:
                    raise Unavailable(f"kubeconfig {self.path} is unusable: {clean(exc, 200)}") from exc
                self._connection = Connection(kube=KubeAdapter(api_client))
            return self._connection


EndpointChoice = Literal["auto", "dns", "private", "public"]


def choose_endpoint(info: ClusterInfo, preference: EndpointChoice) -> tuple[str, str] | None:
    """(kind, host) of the control-plane endpoint to dial, or None when the cluster has none of that kind.

    ``auto`` prefers GKE's DNS-based endpoint when it accepts traffic from outside the VPC: it is authorised by IAM
    and reachable from a Cloud Function without VPC plumbing, even for clusters whose IP endpoints are private or
    restricted by authorised networks. Otherwise the public IP endpoint, and the private one last (it needs VPC
    egress, which the operator states by choosing ``private``).
    """
    candidates = {
        "dns": info.dns_endpoint if (info.dns_endpoint_external or preference == "dns") else None,
        "public": info.public_endpoint,
        "private": info.private_endpoint,
    }
    order = ["dns", "public", "private"] if preference == "auto" else [preference]
    for kind in order:
        host = candidates.get(kind)
        if host:
            return kind, host
    return None


class GkeConnector:
    """GKE: endpoint and CA from the container API, an access token with the cloud-platform scope (``google_token``).

    Clients are cached per cluster and rebuilt when the token nears expiry (tokens live about an hour).
    """

    def __init__(
        self,
        cluster_api: ClusterAPI,
        credentials: Any = None,
        endpoint: EndpointChoice = "auto",
        gate: ImportGate | None = None,
        token: TokenSource | None = None,
    ) -> None:
        """``token``: where the bearer comes from (``google_token.token_source``); else ``credentials``, a google-auth
        Credentials object; else Application Default Credentials through google-auth.
        ``endpoint``: which control-plane endpoint to dial (:func:`choose_endpoint`). ``gate``: handed to the
        Kubernetes adapters, whose official client (exec) waits for it on a cold instance."""
        self.cluster_api = cluster_api
        self.endpoint = endpoint
        self.gate = gate
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Connection, float]] = {}
        self._token_source = token or AdcToken(credentials)
        self._ca_dir = tempfile.mkdtemp(prefix="rsr-ca-")

    def connect(self, ref: ClusterRef) -> Connection:
        """A client for this GKE cluster."""
        with self._lock:
            cached = self._cache.get(ref.path)
            if cached and cached[1] - time.time() > REFRESH_MARGIN_S:  # rebuilt when its token would be refreshed
                return cached[0]
            # The cluster lookup and the token are independent remote calls: one round, not two, before the pod read.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsr-token") as pool:
                token_future = pool.submit(self._token_source.token)
                info = self.cluster_api.get_cluster(ref)
                token, expiry = token_future.result()
            chosen = choose_endpoint(info, self.endpoint)
            if chosen is None or not info.ca_certificate:
                raise Unavailable(
                    f"cluster {ref.path} has no {'' if self.endpoint == 'auto' else self.endpoint + ' '}endpoint "
                    "(or no CA) in the container API"
                )
            kind, endpoint = chosen
            ca_path = Path(self._ca_dir) / f"{ref.project}_{ref.location}_{ref.name}.crt"
            ca = base64.b64decode(info.ca_certificate)  # the TLS libraries want a file path, not PEM text
            if kind == "dns":
                # The DNS-based endpoint presents a publicly trusted certificate, not one from the cluster CA.
                import certifi

                ca = Path(certifi.where()).read_bytes() + b"\n" + ca
            ca_path.write_bytes(ca)
            host = f"https://{endpoint}"
            bearer = f"Bearer {token}"
            http = KubeHttp(host, ca_file=str(ca_path), authorization=lambda: bearer)

            def official_client() -> Any:
                from kubernetes import client

                cfg = client.Configuration()
                cfg.host = host
                cfg.ssl_ca_cert = str(ca_path)
                cfg.api_key = {"authorization": bearer}
                return client.ApiClient(cfg)

            kube = KubeAdapter(http=http, api_client_factory=official_client, gate=self.gate)
            connection = Connection(kube=kube, info=info)
            self._cache[ref.path] = (connection, expiry)
            return connection
