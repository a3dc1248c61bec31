"""``python -m responder status | release``: the operator's side, wired to the operator's own credentials.

Reads and writes go through ``RESPONDER_KUBECONFIG`` when it is set, else through GKE with Application Default
Credentials for ``--cluster`` (the operator's identity, not the function's). SCC marks are written when Google APIs
are on (``RESPONDER_GOOGLE_APIS=on``, or in Cloud Run / an endpoint override).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from typing import Any, cast

from responder.config import Settings, load_settings
from responder.errors import ConfigError, InvalidIdentifier
from responder.intake import identifiers
from responder.intake.identifiers import ClusterRef
from responder.intake.sanitize import clean
from responder.ports import FindingsAPI, KubePort

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
# A kubeconfig names its cluster itself; the reference only matters to the GKE connector.
_KUBECONFIG_CLUSTER = ClusterRef(project="kubeconfig", location="local", name="kubeconfig")


def _cluster_arg(value: str) -> ClusterRef:
    """``--cluster projects/P/locations/L/clusters/C``, each part validated before it reaches a URL."""
    try:
        return identifiers.parse_cluster_resource(f"//container.googleapis.com/{value}")
    except InvalidIdentifier as exc:
        raise argparse.ArgumentTypeError(clean(exc)) from exc


def _namespace_arg(value: str) -> str:
    try:
        return identifiers.namespace(value)
    except InvalidIdentifier as exc:
        raise argparse.ArgumentTypeError(clean(exc)) from exc


def connect(settings: Settings, cluster: ClusterRef | None) -> KubePort:
    """The operator's client: the kubeconfig when set, else GKE with Application Default Credentials."""
    if settings.kubeconfig is not None:
        from responder.adapters.kube_connect import KubeconfigConnector

        kube: KubePort = KubeconfigConnector(settings.kubeconfig).connect(cluster or _KUBECONFIG_CLUSTER).kube
        return kube
    if cluster is None:
        raise ConfigError("set RESPONDER_KUBECONFIG, or pass --cluster projects/P/locations/L/clusters/C")
    from responder.adapters.gke import GkeClusterAPI
    from responder.adapters.kube_connect import GkeConnector

    gke: KubePort = GkeConnector(GkeClusterAPI(settings), endpoint=settings.gke_endpoint).connect(cluster).kube
    return gke


class _ConnectOnFirstUse:
    """A KubePort that connects when first used, so that what needs no cluster (an invalid name, a protected
    namespace) is refused before a missing kubeconfig or credential could be reported instead."""

    def __init__(self, settings: Settings, cluster: ClusterRef | None) -> None:
        self._settings, self._cluster = settings, cluster
        self._kube: KubePort | None = None

    def __getattr__(self, name: str) -> Any:
        if self._kube is None:
            self._kube = connect(self._settings, self._cluster)
        return getattr(self._kube, name)


def _findings(settings: Settings) -> FindingsAPI | None:
    from responder.bootstrap import google_enabled

    if not google_enabled(settings):
        return None
    from responder.adapters.scc import SccFindings

    return SccFindings(settings)


def _operator(settings: Settings) -> str | None:
    """Who releases, for the SCC mark: the shell's login name, else the account's (``--by`` overrides)."""
    if settings.login_name:
        return settings.login_name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (some containers)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    """List quarantined pods and whether their isolation still holds."""
    from responder.aftercare.status import collect_status, render_table

    settings = load_settings()
    entries = collect_status(connect(settings, args.cluster), args.namespace, settings.budget_namespace)
    if args.json:
        print(json.dumps([e.model_dump() for e in entries], indent=2))  # ASCII: non-ASCII is escaped
    else:
        print(render_table(entries))
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    """Plan (default) or carry out (``--yes``) the release of one pod; one decision record."""
    from responder.aftercare.release import Releaser, ReleaseRequest
    from responder.policy.rules import PolicyEngine, load_policy
    from responder.report.record import emit

    settings = load_settings()
    engine = PolicyEngine(load_policy(settings.policy_file), settings)
    releaser = Releaser(
        cast(KubePort, _ConnectOnFirstUse(settings, args.cluster)),
        protected=engine.protected,
        findings=_findings(settings),
        cluster=args.cluster.path if args.cluster else None,
        own_namespace=settings.budget_namespace,
    )
    request = ReleaseRequest(
        target=args.target,
        reason=args.reason,
        delete=args.delete,
        apply=args.yes,
        by=args.by or _operator(settings),
        without_marks=args.without_marks,
    )
    outcome = releaser.release(request)
    if args.json:
        emit(outcome.record)
    else:
        _print_human(outcome.record.model_dump(mode="json"))
        emit(outcome.record, sys.stderr)
    if outcome.refused:
        return EXIT_REFUSED
    return EXIT_ERROR if outcome.failed else EXIT_OK


def _print_human(record: dict[str, Any]) -> None:
    # Reasons quote what the pod and SCC hold (annotations, marks): cleaned like every other terminal line.
    print(clean(f"{record['verdict']}: {record['reason']}", 2000))
    for action in [*record["actions"], *record["writebacks"]]:
        print(clean(f"  {action['action']:<10} {action['status']:<9} {action['reason']}", 2000))


def add_commands(sub: Any) -> None:
    """Register ``status`` and ``release`` on the CLI's subparsers."""
    p = sub.add_parser("status", help="list quarantined pods and whether their isolation holds (operator's rights)")
    p.add_argument(
        "--cluster", type=_cluster_arg, help="projects/P/locations/L/clusters/C (without RESPONDER_KUBECONFIG)"
    )
    p.add_argument("--namespace", type=_namespace_arg, help="only this namespace")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("release", help="release a quarantined pod (plan only, unless --yes)")
    p.add_argument("target", metavar="NAMESPACE/POD")
    p.add_argument(
        "--cluster", type=_cluster_arg, help="projects/P/locations/L/clusters/C (without RESPONDER_KUBECONFIG)"
    )
    p.add_argument("--reason", help="why (recorded as the rsr_release_reason security mark)")
    p.add_argument("--by", help="who releases (rsr_released_by mark; default: your login name)")
    p.add_argument("--delete", action="store_true", help="delete the pod (UID precondition) instead of releasing it")
    p.add_argument("--yes", action="store_true", help="carry it out; without it nothing is written")
    p.add_argument("--json", action="store_true", help="only the decision record, on stdout")
    p.add_argument(
        "--without-marks",
        action="store_true",
        help="release without recording it in SCC (a local cluster without Google APIs): a redelivery of the "
        "finding would contain the pod again",
    )
    p.set_defaults(func=cmd_release)
