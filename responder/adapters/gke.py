"""``ClusterAPI`` over the GKE API (``container.googleapis.com`` v1, REST transport).

Needs ``container.clusters.get`` (``roles/container.clusterViewer``). The SDK is imported on the first call.
"""

from __future__ import annotations

from typing import Any

from responder.adapters.google_clients import LazyClient, client_kwargs, enum_name, retry_policy, sdk
from responder.adapters.google_errors import google_call
from responder.config import Settings
from responder.intake import identifiers
from responder.intake.identifiers import ClusterRef
from responder.ports import ClusterInfo


class GkeClusterAPI:
    """Reads cluster metadata: endpoints, CA, labels, and whether NetworkPolicy is enforced."""

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0, deadline_s: float = 20.0) -> None:
        """``timeout_s`` bounds one HTTP attempt; ``deadline_s`` bounds retries of transient failures (0: none)."""
        self._settings = settings
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        self._client: LazyClient[Any] = LazyClient(self._build, "GKE")
        self._retry: Any = None

    def _build(self) -> Any:
        self._retry = retry_policy(self._deadline_s)
        return sdk("google.cloud.container_v1").ClusterManagerClient(
            transport="rest", **client_kwargs(self._settings, self._settings.container_endpoint)
        )

    def get_cluster(self, ref: ClusterRef) -> ClusterInfo:
        """``GET /v1/projects/P/locations/L/clusters/C`` (L is a region or a zone)."""
        # A ClusterRef can be built by hand; the parts reach a URL path, so they are checked again here.
        identifiers.project(ref.project)
        identifiers.location(ref.location)
        identifiers.cluster_name(ref.name)
        with google_call(f"GKE get_cluster {ref.path}"):
            client = self._client.get()
            cluster = client.get_cluster(name=ref.path, retry=self._retry, timeout=self._timeout_s)
        return cluster_info(cluster)

    def close(self) -> None:
        """Release the HTTP session (no-op when the client was never built)."""
        if self._client.built:
            self._client.get().transport.close()


def cluster_info(cluster: Any) -> ClusterInfo:
    """Map a ``container_v1.Cluster`` to :class:`ClusterInfo` (empty strings and UNSPECIFIED enums become None)."""
    endpoints = cluster.control_plane_endpoints_config
    private_endpoint = endpoints.ip_endpoints_config.private_endpoint or cluster.private_cluster_config.private_endpoint
    return ClusterInfo(
        name=cluster.name,
        location=cluster.location,
        status=enum_name(cluster.status),
        version=cluster.current_master_version or None,
        endpoint=cluster.endpoint or None,
        private_endpoint=private_endpoint or None,
        dns_endpoint=endpoints.dns_endpoint_config.endpoint or None,
        dns_endpoint_external=bool(endpoints.dns_endpoint_config.allow_external_traffic),
        ca_certificate=cluster.master_auth.cluster_ca_certificate or None,
        labels=dict(cluster.resource_labels),
        network_policy_enabled=bool(cluster.network_policy.enabled),
        datapath_provider=enum_name(cluster.network_config.datapath_provider),
        autopilot=bool(cluster.autopilot.enabled),
        self_link=cluster.self_link or None,
    )
