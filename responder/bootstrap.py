"""Composition root: Settings → adapters → :class:`Responder`. Tests build ``Dependencies`` with fakes instead.

Nothing here runs at import time; adapters import their SDKs lazily, so building the responder is cheap and the first
event that needs a Google API pays for that API alone.
"""

from __future__ import annotations

from responder.config import Settings, load_settings
from responder.policy.rules import PolicyEngine, load_policy
from responder.service import Dependencies, Responder
from responder.startup import ImportGate


def google_enabled(settings: Settings) -> bool:
    """Whether to wire the Google adapters: on in Cloud Functions / Cloud Run, or when an endpoint is overridden."""
    if settings.google_apis != "auto":
        return settings.google_apis == "on"
    overridden = settings.scc_endpoint or settings.logging_endpoint or settings.container_endpoint
    return bool(settings.k_service or overridden)


def build_dependencies(settings: Settings | None = None) -> Dependencies:
    """Read settings and the policy, and wire the adapters that this environment can use."""
    settings = settings or load_settings()
    engine = PolicyEngine(load_policy(settings.policy_file), settings)
    # Closed until the first containment's writes are done: see ImportGate. Every adapter that loads an SDK waits on it.
    gate = ImportGate(closed=True)
    deps = Dependencies(settings=settings, policy=engine, gate=gate)
    google = google_enabled(settings)
    if settings.kubeconfig is not None:
        from responder.adapters.kube_connect import KubeconfigConnector

        deps.connector = KubeconfigConnector(settings.kubeconfig)
    if google:
        from responder.adapters.gke import GkeClusterAPI
        from responder.adapters.logs import CloudLogs
        from responder.adapters.scc import SccFindings

        if deps.connector is None:
            from responder.adapters.google_token import token_source
            from responder.adapters.kube_connect import GkeConnector

            # Two sources, not one: the GKE lookup and the bearer are fetched at once (one round, not two).
            bearer = token_source(settings.k_service)
            deps.connector = GkeConnector(
                GkeClusterAPI(settings), endpoint=settings.gke_endpoint, gate=gate, token=bearer
            )
        deps.logs = CloudLogs(settings, gate=gate)
        deps.findings_api = SccFindings(settings, gate=gate)
    if engine.defaults.report_topic and (google or settings.pubsub_emulator_host):
        from responder.adapters.pubsub import PubSubPublisher

        deps.publisher = PubSubPublisher(settings)
    return deps


def build_responder(settings: Settings | None = None) -> Responder:
    """The responder for this process."""
    return Responder(build_dependencies(settings))
