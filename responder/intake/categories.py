"""A finding category is a profile: what a category of SCC finding means to the responder, in one place.

Everything that depends on *which* threat a finding reports asks its category's :class:`CategoryProfile` instead of
naming one: triage (the record code), intake (the ``sourceProperties`` that carry the connection, if any), the policy
(whether rules that do not name the category, and the built-in isolation, apply to it), the runner and the outcome
rule (whether an established connection that isolation cannot cut is the threat), and the report (its wording, the
ATT&CK techniques the runbook lists, the advice in its next steps).

Adding a category: one profile here and one line in :data:`PROFILES`; then list it in ``RESPONDER_CATEGORIES`` (or
the policy's ``defaults.categories``), which chooses among the profiles and refuses a category without one.

Pure data, no I/O; built at import time from literals only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


def normalise_category(category: str | None) -> str:
    """``"Reverse Shell"``, ``"REVERSE_SHELL"`` and ``"reverse-shell"`` compare equal."""
    return " ".join((category or "").replace("_", " ").replace("-", " ").casefold().split())


@dataclass(frozen=True, slots=True)
class ConnectionProperties:
    """The ``sourceProperties`` keys that carry the connection a finding reports: its remote (attacker) end and its
    local (the pod's) end. Only strings: the values are read and validated in ``intake.findings``."""

    remote_ip: str
    remote_port: str
    local_ip: str
    local_port: str


@dataclass(frozen=True, slots=True)
class CategoryProfile:
    """What one SCC finding category means to the responder.

    - ``category``: SCC's name for it (compared after :func:`normalise_category`, so SCC's ``REVERSE_SHELL``
      spelling matches too); ``code``: the decision record's code when the responder acts on it.
    - ``noun``: how the report names what ran (``"the {noun} in ns/pod"``); ``danger``: what a page about an
      uncontained finding says is at stake (the ``NOT CONTAINED`` reason); ``still``: what may still be true of it.
    - ``connection``: the ``sourceProperties`` that carry its connection, or None when the category reports none.
    - ``techniques``: the MITRE ATT&CK IDs its runbook lists, whatever the finding itself says.
    - ``live_session``: the threat is an established connection (a shell an attacker is typing into). Isolation
      then contains the pod only where it cuts established connections; where it cannot, the policy's
      ``live_session`` escalates (capture, then delete) or pages. False: the isolation's writes contain the pod,
      whatever happens to connections that were open before them, and nothing escalates for them.
    - ``contained_by_default``: policy rules that do not name a category (no ``match.categories``), and the built-in
      default (isolate) when no rule matches, apply to it. False: it is report-only unless a rule names it, so
      enabling a noisy category never puts it under catch-all rules written for another one, nor under
      ``RESPONDER_ACTION``.
    - ``left_alone_pages``: whether a finding SCC vouches for, that the configuration leaves alone (no containing
      step planned: report-only, a protected or exempt namespace, dry-run, ``RESPONDER_ACTION=none``), ends
      ``not_contained`` at ERROR and pages. A containment the policy *did* plan and that could not be carried out
      (a guard, the budget, a 403, an isolation the cluster cannot enforce) pages whatever this says: someone
      decided the pod must be contained, and it is not.
    - ``advice``: the category's own next steps for the person reading the report.
    """

    category: str
    code: str
    noun: str
    danger: str
    still: str
    connection: ConnectionProperties | None
    techniques: tuple[str, ...]
    live_session: bool
    contained_by_default: bool
    left_alone_pages: bool
    advice: tuple[str, ...] = ()


REVERSE_SHELL = CategoryProfile(
    category="Reverse Shell",
    code="reverse_shell",
    noun="reverse shell",
    danger="an attacker may still be connected",
    still="may still be connected",
    # SCC's Reverse Shell finding: the process's stdin is redirected to a socket, Dst the attacker's end.
    connection=ConnectionProperties(
        remote_ip="Reverse_Shell_Stdin_Redirection_Dst_Ip",
        remote_port="Reverse_Shell_Stdin_Redirection_Dst_Port",
        local_ip="Reverse_Shell_Stdin_Redirection_Src_Ip",
        local_port="Reverse_Shell_Stdin_Redirection_Src_Port",
    ),
    # The runbook's step 6: Command and Scripting Interpreter, Ingress Tool Transfer.
    techniques=("T1059", "T1105"),
    live_session=True,
    contained_by_default=True,
    # An attacker with a shell is the case the responder exists for: leaving one alone is never quiet.
    left_alone_pages=True,
)

ADDED_BINARY_EXECUTED = CategoryProfile(
    category="Added Binary Executed",
    code="added_binary_executed",
    noun="added binary",
    danger="an attacker may still be running code in the pod",
    still="may still be running",
    # Its sourceProperties name the pod, container, image and node only: there is no connection to match.
    connection=None,
    # The techniques SCC's docs list for the binary-execution findings: Ingress Tool Transfer, Native API.
    techniques=("T1105", "T1106"),
    live_session=False,
    # SCC rates it low severity: it fires for any binary the image did not ship (a package install, a debugging
    # tool), so it is reported, and contained only where a rule names it.
    contained_by_default=False,
    # Left alone on purpose, it is done, not a page: paging for every package install would teach people to ignore
    # the "attacker may still be connected" alert, which must stay rare enough to be believed. Its report still goes
    # to the owners' topic and its progress to SCC's marks.
    left_alone_pages=False,
    advice=(
        "Find out how the binary got into the running container (a package install, kubectl cp or exec, a writable "
        "volume, a download) and whether anyone expected it; containers should be immutable, so build what the "
        "workload needs into its image instead.",
        "Look for other findings on the same container around the event time (Added Malicious Binary Executed, "
        "Reverse Shell, Unexpected Child Shell): together they point to an attack rather than a habit.",
    ),
)

# Every category the responder knows how to handle, by normalised name. RESPONDER_CATEGORIES chooses among them.
PROFILES: Mapping[str, CategoryProfile] = MappingProxyType(
    {normalise_category(p.category): p for p in (REVERSE_SHELL, ADDED_BINARY_EXECUTED)}
)
DEFAULT_CATEGORIES = (REVERSE_SHELL.category,)

# Stands in for a category without a profile. Only a finding triage ignores can have one (triage acts only on
# handled categories, and a handled category must have a profile), so this is never what decides an action; it errs
# the cautious way (a live session matters, being left alone pages) in case that ever changes.
UNPROFILED = CategoryProfile(
    category="",
    code="unprofiled",
    noun="detected activity",
    danger="an attacker may still be active",
    still="may still be active",
    connection=None,
    techniques=(),
    live_session=True,
    contained_by_default=True,
    left_alone_pages=True,
)


def get(category: str | None) -> CategoryProfile | None:
    """The profile of ``category`` (any spelling), or None when the responder has none for it."""
    return PROFILES.get(normalise_category(category))


def of(category: str | None) -> CategoryProfile:
    """The profile of a finding that passed triage (so its category has one); :data:`UNPROFILED` otherwise."""
    return get(category) or UNPROFILED


def unknown(categories: Iterable[str]) -> list[str]:
    """The entries of ``categories`` without a profile (for the settings' and the policy file's validation)."""
    return [c for c in categories if get(c) is None]


def known() -> str:
    """The categories that have a profile, for an error message."""
    return ", ".join(repr(p.category) for p in PROFILES.values())
