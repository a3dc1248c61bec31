"""What isolation can do to a reverse shell that is already connected: the cluster's NetworkPolicy dataplane decides.

Kubernetes leaves it to the implementation whether a NetworkPolicy change affects connections that already exist.

- GKE Dataplane V2 (``networkConfig.datapathProvider: ADVANCED_DATAPATH``, Cilium) checks policy on every packet in a
  connection's original direction: an egress deny cuts an established shell (``established``).
- Calico, GKE's older enforcement (``networkPolicy.enabled``), checks policy when a connection is set up; packets of an
  established connection pass through conntrack: the shell survives the isolation (``new-only``).
- Without either, NetworkPolicies are stored and never enforced (``none``).

``RESPONDER_NETPOL_ENFORCEMENT`` states it (``established``, ``new-only``, ``none``) or, with ``auto`` (the default),
it is read from the GKE cluster; with a kubeconfig the dataplane is unknown and ``new-only`` is assumed, because
claiming a cut that does not happen would leave an attacker connected behind a record that says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from responder.ports import ClusterInfo

EnforcementSetting = Literal["auto", "established", "new-only", "none"]
EnforcementMode = Literal["established", "new-only", "none"]

# What the isolate step's record says happened to established connections (the reverse shell's among them).
CUT = "cut"
NOT_CUT = "not cut (new connections only)"
NO_ENFORCEMENT = "no enforcement"


@dataclass(frozen=True, slots=True)
class Enforcement:
    """The dataplane's behaviour, and the name it goes by in the record."""

    mode: EnforcementMode
    dataplane: str

    @property
    def cuts_established(self) -> bool:
        return self.mode == "established"


def resolve(setting: EnforcementSetting, info: ClusterInfo | None) -> Enforcement:
    """The enforcement in force for a cluster: the operator's statement, else what the GKE API says."""
    if setting != "auto":
        return Enforcement(setting, f"as configured (RESPONDER_NETPOL_ENFORCEMENT={setting})")
    if info is None:
        return Enforcement(
            "new-only",
            "unknown (kubeconfig, no GKE metadata): assumed to apply NetworkPolicy to new connections only",
        )
    if info.datapath_provider == "ADVANCED_DATAPATH":
        return Enforcement("established", "GKE Dataplane V2 (Cilium)")
    if info.network_policy_enabled:
        return Enforcement("new-only", "Calico (GKE NetworkPolicy enforcement)")
    return Enforcement("none", "none: neither Dataplane V2 nor the Calico NetworkPolicy add-on is enabled")


def established_connections(enforcement: Enforcement, host_network: bool) -> str:
    """What isolation does to the pod's established connections: :data:`CUT`, :data:`NOT_CUT` or
    :data:`NO_ENFORCEMENT` (a hostNetwork pod shares the node's network, which no NetworkPolicy applies to)."""
    if host_network or enforcement.mode == "none":
        return NO_ENFORCEMENT
    return CUT if enforcement.cuts_established else NOT_CUT
