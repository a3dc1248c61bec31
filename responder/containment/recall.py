"""What an instance remembers of the findings it finished: their names, and SCC's record of each as it last knew it.

The names: a redelivery of a finding this instance contained is checked before any write (``Responder._preflight``),
whatever its delivery attempt says.

The record: a redelivery ends as a duplicate only on SCC's word that an earlier delivery of the occurrence ended
``done`` (``containment.progress``), and reading that word again costs a converged redelivery over half of its CPU
(the SCC client's request and parse; docs/performance.md). The instance that finished the event already holds it:
SCC vouched for the message, and then accepted the marks that instance wrote. So that record, with those marks, is
kept for ``RECALL_TTL_S`` and stands in for the read when the same instance gets the redelivery:

- it is compared with the message exactly as a fresh read is (``verification.judge``), and used only when it vouches;
- the cluster is read as on every redelivery (the pod, its policies, the identity entry, the tier above the
  namespace): only SCC's half is remembered, and only what this instance itself was told or wrote;
- when the remembered record does not settle the delivery (the isolation decayed, the pod was released or replaced,
  the marks say something else), SCC is asked at once and its answer decides, as without this module.

What it cannot see within that window is a change made in SCC alone: a finding muted or set inactive by someone else
after the first delivery. A fresh read would refute such a redelivery and roll the isolation back; a remembered one
acknowledges it with the pod still contained, the conservative side. A release is seen: it takes the quarantine off
the pod, so the cluster check fails and SCC is asked.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from responder.containment.results import ActionResult, Status
from responder.containment.verification import Verification, Vouch, judge
from responder.intake.findings import Finding
from responder.intake.triage import Target
from responder.ports import SccFinding

HANDLED_MEMORY = 4096  # findings remembered per instance (each a name and one SCC record: a few MiB at most)
RECALL_TTL_S = 600.0  # Pub/Sub's longest retry backoff: a redelivery later than this asks SCC again
MARKS_DETAIL = "marks"  # where the write-back's "mark" result carries the marks it wrote


@dataclass(frozen=True, slots=True)
class _Known:
    record: SccFinding | None  # None: the name alone (SCC's record not known, or not to be reused)
    at: float


class Recall:
    """Bounded, thread-safe, newest last."""

    def __init__(
        self, size: int = HANDLED_MEMORY, ttl_s: float = RECALL_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._lock = threading.Lock()
        self._size, self._ttl_s, self._clock = size, ttl_s, clock

    def seen(self, name: str | None) -> bool:
        """This instance contained the finding (or saw a delivery of it converge)."""
        with self._lock:
            return bool(name) and name in self._known

    def remember(
        self, name: str | None, verification: Verification | None = None, written: Mapping[str, str] | None = None
    ) -> None:
        """Remember the finding; with SCC's fresh answer, its record too, with the marks this instance then wrote
        there. A remembered answer is not remembered again: its age counts from SCC's word, not from its reuse."""
        if not name:
            return
        record = None
        if verification is not None and not verification.recalled and verification.vouch is Vouch.VERIFIED:
            record = verification.record
        with self._lock:
            known = self._known.get(name)
            if record is not None:
                known = _Known(record.model_copy(update={"marks": {**record.marks, **(written or {})}}), self._clock())
            self._known[name] = known or _Known(None, self._clock())
            self._known.move_to_end(name)
            while len(self._known) > self._size:
                self._known.popitem(last=False)

    def answer(self, finding: Finding, target: Target) -> Verification | None:
        """SCC's answer about this message from the record this instance holds, when it has one young enough and it
        vouches; None: ask SCC."""
        with self._lock:
            known = self._known.get(finding.name or "")
        if known is None or known.record is None or self._clock() - known.at > self._ttl_s:
            return None
        answer = judge(known.record, finding, target)
        if answer.vouch is not Vouch.VERIFIED:
            return None  # a refutation is only ever SCC's word now, never a memory
        why = f"{answer.reason} (as SCC told this instance; the cluster read now)"
        return replace(answer, reason=why, recalled=True)


def written_marks(results: list[ActionResult]) -> dict[str, str]:
    """The marks a write-back wrote (empty when it wrote none)."""
    for r in results:
        if r.action == "mark" and r.status is Status.SUCCEEDED:
            marks = r.details.get(MARKS_DETAIL)
            if isinstance(marks, dict):
                return {str(k): str(v) for k, v in marks.items()}
    return {}
