"""Identifiers that reach API paths, log filters and commands, validated before they get there.

Names from a finding are checked against the naming rules of the system they name. A value outside those rules cannot
name a real object, so it is rejected (never escaped): escaping would let a crafted value change the meaning of a
Logging filter, a URL path or a kubectl command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from responder.errors import InvalidIdentifier

# Kubernetes: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Google Cloud: project IDs (6-30), project numbers, locations (region or zone), GKE cluster names (<= 40), VM names.
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PROJECT_NUMBER = re.compile(r"[1-9][0-9]{0,19}")
_LOCATION = re.compile(r"[a-z]+(-[a-z]+)+[0-9]+(-[a-z])?")
_CLUSTER = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
_INSTANCE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_LABEL_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)

# SCC finding names (v1 ``<scope>/sources/S/findings/F``, v2 with ``/locations/L`` before ``/findings``). Only these
# characters ever reach a URL path or a ListFindings filter string, so no quoting is needed there.
FINDING_NAME = re.compile(
    r"(?P<scope>(?:organizations|folders|projects)/[A-Za-z0-9_-]{1,128})"
    r"/sources/(?P<source>[A-Za-z0-9_-]{1,128})"
    r"(?:/locations/(?P<location>[A-Za-z0-9_-]{1,64}))?"
    r"/findings/(?P<finding>[A-Za-z0-9_-]{1,128})"
)
MAX_FINDING_NAME = 512

# As an operator names them in settings: a cluster in its canonical API form, and an SCC source (the canary's).
_CLUSTER_PATH = re.compile(r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/clusters/(?P<cluster>[^/]+)")
_SOURCE_NAME = re.compile(r"(?P<kind>organizations|projects)/(?P<id>[^/]+)/sources/(?P<source>[A-Za-z0-9_-]{1,128})")
_ORGANIZATION = re.compile(r"[1-9][0-9]{0,19}")

_K8S_SUFFIX = re.compile(r"(/k8s(/[a-z0-9]([-a-z0-9.]*[a-z0-9])?)+)")
_CLUSTER_RESOURCE = re.compile(
    r"//container\.googleapis\.com/projects/(?P<project>[^/]+)/(?P<kind>locations|zones)/(?P<location>[^/]+)"
    r"/clusters/(?P<cluster>[^/]+)"
)


def _check(pattern: re.Pattern[str], value: str, what: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise InvalidIdentifier(f"{what} {shown!r} is not a valid {what}")
    return value


def finding_name(value: str) -> str:
    """An SCC finding name, as the SCC adapter can look it up (anything else could never be vouched for)."""
    return _check(FINDING_NAME, value, "finding name", MAX_FINDING_NAME)


def namespace(value: str) -> str:
    """A Kubernetes namespace: DNS-1123 label (<= 63)."""
    return _check(_DNS1123_LABEL, value, "namespace", 63)


def container_name(value: str) -> str:
    """A container name: DNS-1123 label (<= 63)."""
    return _check(_DNS1123_LABEL, value, "container name", 63)


def pod_name(value: str) -> str:
    """A pod name: DNS-1123 subdomain (<= 253)."""
    return _check(_DNS1123_SUBDOMAIN, value, "pod name", 253)


def service_account(value: str) -> str:
    """A service account name, as a pod's spec names it: DNS-1123 subdomain (<= 253)."""
    return _check(_DNS1123_SUBDOMAIN, value, "service account", 253)


def node_name(value: str) -> str:
    """A GKE node / Compute Engine instance name (RFC 1035 label, <= 63)."""
    return _check(_INSTANCE, value, "node name", 63)


def project(value: str) -> str:
    """A project ID or project number."""
    if _PROJECT_NUMBER.fullmatch(value or ""):
        return value
    return _check(_PROJECT_ID, value, "project", 30)


def location(value: str) -> str:
    """A region (``us-central1``) or zone (``us-central1-a``)."""
    return _check(_LOCATION, value, "location", 40)


def cluster_name(value: str) -> str:
    """A GKE cluster name."""
    return _check(_CLUSTER, value, "cluster name", 40)


def sha256(value: str) -> str:
    """A hex SHA-256 digest, normalised to lower case."""
    return _check(_SHA256, value, "sha256", 64).lower()


def label_key(value: str) -> str:
    """A Kubernetes label key (optional DNS prefix, name <= 63)."""
    return _check(_LABEL_NAME, value, "label key", 316)


def is_zone(location_value: str) -> bool:
    """Zones end in ``-<letter>`` (``us-central1-a``); regions do not."""
    return bool(re.fullmatch(r".*[0-9]-[a-z]", location_value))


@dataclass(frozen=True, slots=True)
class ClusterRef:
    """A GKE cluster named by a finding: ``projects/P/locations/L/clusters/C``."""

    project: str
    location: str
    name: str

    @property
    def path(self) -> str:
        """The canonical API path, always in the ``locations`` form."""
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.name}"

    @property
    def zonal(self) -> bool:
        """True for a zonal cluster (location is a zone), which decides ``--zone`` versus ``--region``."""
        return is_zone(self.location)

    def __str__(self) -> str:
        return self.path


def parse_cluster_resource(resource_name: str) -> ClusterRef:
    """Parse ``//container.googleapis.com/projects/P/(locations|zones)/L/clusters/C[/...]`` and validate each part."""
    match = _CLUSTER_RESOURCE.match(resource_name or "")
    if not match:
        raise InvalidIdentifier(f"resource {resource_name[:120]!r} is not a GKE cluster resource name")
    rest = resource_name[match.end() :]
    # Only Kubernetes sub-paths may follow the cluster (ETD uses .../clusters/C/k8s/namespaces/NS/pods/P).
    if rest and not _K8S_SUFFIX.fullmatch(rest):
        raise InvalidIdentifier(f"resource {resource_name[:120]!r} is not a GKE cluster resource name")
    return ClusterRef(
        project=project(match["project"]),
        location=location(match["location"]),
        name=cluster_name(match["cluster"]),
    )


def cluster_path(value: str) -> ClusterRef:
    """``projects/P/locations/L/clusters/C`` (the form a finding's cluster is compared in), each part validated."""
    match = _CLUSTER_PATH.fullmatch(value) if isinstance(value, str) else None
    if not match:
        shown = str(value)[:120]
        raise InvalidIdentifier(f"cluster {shown!r} is not projects/PROJECT/locations/LOCATION/clusters/NAME")
    return ClusterRef(
        project=project(match["project"]), location=location(match["location"]), name=cluster_name(match["cluster"])
    )


def source_name(value: str) -> str:
    """An SCC source, ``organizations/O/sources/S`` or ``projects/P/sources/S``, as its findings' names begin."""
    match = _SOURCE_NAME.fullmatch(value) if isinstance(value, str) else None
    if not match:
        shown = str(value)[:120]
        raise InvalidIdentifier(f"source {shown!r} is not organizations/ORG/sources/ID or projects/PROJECT/sources/ID")
    if match["kind"] == "organizations":
        _check(_ORGANIZATION, match["id"], "organization ID", 20)
    else:
        project(match["id"])
    return value


def is_gke_resource(resource_name: str | None, resource_type: str | None) -> bool:
    """Container Threat Detection findings name a GKE cluster; Cloud Run and Agent Engine ones do not."""
    if resource_type == "google.container.Cluster":
        return True
    return bool(resource_name and resource_name.startswith("//container.googleapis.com/"))
