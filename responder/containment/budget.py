"""Blast-radius budget: at most N destructive actions per cluster per window, shared by every function instance.

The counter lives in the cluster itself, in a Lease updated with optimistic concurrency (resourceVersion): every
instance sees the same count without another datastore, and two instances racing for the last slot cannot both win.
A finding already counted is allowed again, so redeliveries of one incident never consume the budget twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from responder.errors import Conflict, Forbidden, NotFound, ResponderError
from responder.ports import KubePort

LEASE_NAME = "rsr-destructive-budget"
ENTRIES_ANNOTATION = "responder.rsr.dev/entries"
_ATTEMPTS = 10


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


class BudgetUnavailable(ResponderError):
    """The counter cannot be read or written: destructive actions are refused (the budget fails closed)."""


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
            f"(check RBAC: leases get/create/update in {namespace}): {exc}"
        ) from exc


def _consume(kube: KubePort, namespace: str, key: str, limit: int, window_s: int, now: datetime) -> BudgetDecision:
    horizon = now - timedelta(seconds=window_s)
    where = f"{namespace}/{LEASE_NAME}"
    for _ in range(_ATTEMPTS):
        try:
            lease = kube.get_lease(namespace, LEASE_NAME)
            version: str | None = lease.resource_version
            entries = _entries(lease.annotations.get(ENTRIES_ANNOTATION), where)
        except NotFound:
            lease, version, entries = None, None, []
        live = [(ts, k) for ts, k in entries if ts > horizon]
        if any(k == key for _, k in live):
            return BudgetDecision(True, len(live), limit, window_s)
        if len(live) >= limit:
            return BudgetDecision(False, len(live), limit, window_s)
        live.append((now, key))
        annotations = {ENTRIES_ANNOTATION: json.dumps([(ts.isoformat(), k) for ts, k in live])}
        try:
            if lease is None:
                kube.create_lease(namespace, LEASE_NAME, annotations)
            else:
                kube.update_lease(namespace, LEASE_NAME, annotations, version)
            return BudgetDecision(True, len(live), limit, window_s)
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
