"""Blast-radius budget: at most N destructive actions per cluster per window, shared by every function instance.

The counter lives in the cluster itself, in a Lease updated with optimistic concurrency (resourceVersion): every
instance sees the same count without another datastore, and two instances racing for the last slot cannot both win.
A finding already counted is allowed again, so redeliveries of one incident never consume the budget twice.

The counter only ever grows: entries older than the window stop counting but stay in the Lease, every earlier entry
kept byte for byte. The admission guard (deploy/kubernetes/admission-guard.yaml) lets the responder's identity update
the Lease only by appending exactly one entry, so whoever holds that identity cannot reset the count. Kubernetes caps
an object's annotations at 256 KiB, so a counter near that size is refused (fail closed, about a thousand destructive
actions in its lifetime); an operator then deletes the Lease and the next action starts a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from responder.errors import BudgetUnavailable, Conflict, Forbidden, NotFound
from responder.ports import KubePort

LEASE_NAME = "rsr-destructive-budget"
ENTRIES_ANNOTATION = "responder.rsr.dev/entries"
_ATTEMPTS = 10
MAX_ENTRIES_CHARS = 200_000  # below Kubernetes' 256 KiB for all of an object's annotations together


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """Whether the action may run, and the count that decided it."""

    allowed: bool
    used: int
    limit: int
    window_s: int

    @property
    def reason(self) -> str:
        """Human summary."""
        verdict = "within" if self.allowed else "OVER"
        return f"blast-radius budget {verdict}: {self.used}/{self.limit} destructive actions in {self.window_s}s"


def _entries(raw: str | None, where: str) -> list[tuple[datetime, str]]:
    try:
        data = json.loads(raw or "[]")
        entries = [(datetime.fromisoformat(str(ts)), str(key)) for ts, key in data]
    except (ValueError, TypeError) as exc:
        # Resetting a damaged counter would let whoever can damage it lift the limit: refuse until someone looks.
        raise BudgetUnavailable(
            f"budget counter {where} is damaged ({type(exc).__name__}); destructive actions are refused until it is "
            "repaired or deleted"
        ) from exc
    if any(ts.tzinfo is None for ts, _ in entries):
        raise BudgetUnavailable(f"budget counter {where} holds times without a zone; refusing destructive actions")
    return entries


def _appended(raw: str | None, now: datetime, key: str, where: str) -> str:
    """The counter with one entry appended and every earlier one as it was (the guard compares the text)."""
    data = json.loads(raw) if raw else []
    out = json.dumps([*data, [now.isoformat(), key]])
    if len(out) > MAX_ENTRIES_CHARS:
        raise BudgetUnavailable(
            f"budget counter {where} is full ({len(data)} entries, kept because the counter may only grow); "
            "destructive actions are refused until an operator deletes the Lease, which starts a new count"
        )
    return out


def consume(kube: KubePort, namespace: str, key: str, limit: int, window_s: int, now: datetime) -> BudgetDecision:
    """Take one slot for ``key`` if the window has room; idempotent per key.

    Raises :class:`BudgetUnavailable` when the counter cannot be used (missing namespace, forbidden, damaged), so the
    caller refuses the destructive action with that reason; transient failures propagate for a redelivery.
    """
    try:
        return _consume(kube, namespace, key, limit, window_s, now)
    except Forbidden as exc:
        raise BudgetUnavailable(
            f"budget Lease {namespace}/{LEASE_NAME} is forbidden "
            f"(check RBAC: leases get/create/update in {namespace}; the admission guard lets the responder only "
            f"append one entry to it): {exc}"
        ) from exc


def _consume(kube: KubePort, namespace: str, key: str, limit: int, window_s: int, now: datetime) -> BudgetDecision:
    horizon = now - timedelta(seconds=window_s)
    where = f"{namespace}/{LEASE_NAME}"
    for _ in range(_ATTEMPTS):
        try:
            lease = kube.get_lease(namespace, LEASE_NAME)
            version: str | None = lease.resource_version
            raw = lease.annotations.get(ENTRIES_ANNOTATION)
            entries = _entries(raw, where)
        except NotFound:
            lease, version, raw, entries = None, None, None, []
        live = [(ts, k) for ts, k in entries if ts > horizon]
        if any(k == key for _, k in live):
            return BudgetDecision(True, len(live), limit, window_s)
        if len(live) >= limit:
            return BudgetDecision(False, len(live), limit, window_s)
        annotations = {ENTRIES_ANNOTATION: _appended(raw, now, key, where)}
        try:
            if lease is None:
                kube.create_lease(namespace, LEASE_NAME, annotations)
            else:
                kube.update_lease(namespace, LEASE_NAME, annotations, version)
            return BudgetDecision(True, len(live) + 1, limit, window_s)
        except Conflict:
            continue  # another instance wrote first: re-read and decide again
        except NotFound as exc:
            if lease is not None:
                continue  # the Lease was deleted under us: start again from nothing
            # Creating failed with 404: the namespace itself does not exist.
            raise BudgetUnavailable(
                f"budget namespace {namespace} does not exist (create it: deploy/kubernetes/rbac.yaml), so destructive "
                "actions are refused"
            ) from exc
    raise BudgetUnavailable(f"budget Lease {where} kept changing; gave up after {_ATTEMPTS} attempts")
