"""Bounds on the decision record's line, so that Cloud Logging always stores it as the structured entry it is.

Cloud Logging's entry limit is 256 KB, and a record line over it does not become the structured entry the alert
filters and metrics read (``severity``, ``jsonPayload.outcome``, ``verdict``, ``code``, ``contained_ms``): the
decision escapes them. What the responder writes grows with the cluster, not with the finding: isolating a pod in a
namespace of 1,500 allowing NetworkPolicies names 1,500 exclusions, in the action's ``changes`` and again in its
``reason``. So the line is bounded in two steps, both deterministic (the same record always gives the same line):

1. Always: at most :data:`MAX_ITEMS` named items per list and :data:`MAX_KEYS` keys per nested object (the first
   ones), :data:`MAX_TEXT` characters per string (elided in the middle: a reason's head says what was done, its tail
   what that means, e.g. isolate's "established connections: ..."), :data:`MAX_DEPTH` levels of nesting.
2. Only if the line still exceeds :data:`BUDGET`: detail is dropped in a fixed order until it fits (the actions'
   ``changes``, then their other detail, then the record's non-contract fields, largest first, then shorter strings,
   then fewer actions). The contract fields the alerts and operators rely on stay; a last resort keeps only their
   one-value fields, the pod's name and each action's action, status and reason.

Whatever was left out is counted in one field, ``truncated``: by path (``[]`` stands for every entry of a list) how
much was left out there, in the unit of what the path names: items of a list (``actions[].changes``: the changes
not named, summed over the actions), keys of an object, characters of a string (``actions[].reason``). A record that
needed no bound is written exactly as it was serialised, without that field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

# Cloud Logging's entry limit is 256 KiB for the whole entry; the rest is its own fields (resource, labels,
# timestamps, trace), hence a budget well below it. The line is ASCII, so characters are bytes.
BUDGET = 200_000
MAX_ITEMS = 50  # named items kept per list: the incident report shows an action's first 50 changes too
MAX_KEYS = 50  # keys kept per nested object (``details``, ``enrichment``); the record's own fields are never cut
MAX_TEXT = 2_000  # characters kept per string
MAX_DEPTH = 8  # an action's details sit 3 levels down; anything deeper than this is no decision anyone reads
SHORT_TEXT = 200  # characters per string once the record had to shed its detail and still does not fit
MAX_ACTIONS = 20  # actions (and write-backs) kept when even that does not fit: more than any plan has steps
TRUNCATED = "truncated"

# What the guard never drops: the decision record's contract, what the alerts, the metrics and an operator read.
CONTRACT = frozenset(
    {
        "severity",
        "message",
        "verdict",
        "code",
        "reason",
        "finding",
        "category",
        "cluster",
        "pod",
        "actions",
        "writebacks",
        "outcome",
        "duration_ms",
        "contained_ms",
        "record_error",
        TRUNCATED,
    }
)
RESULTS = ("actions", "writebacks")
RESULT_CONTRACT = frozenset({"action", "status", "reason", "dry_run"})
# The last resort: fields that are one value each, so the line they make is small by construction.
SCALARS = (
    "severity",
    "message",
    "verdict",
    "code",
    "reason",
    "finding",
    "category",
    "cluster",
    "outcome",
    "duration_ms",
    "contained_ms",
    "record_error",
)


class _Omitted:
    """How much was left out where: items of a list, keys of an object, characters of a string."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, path: str, count: int) -> None:
        if count > 0:
            key = path[:SHORT_TEXT]  # a path is made of keys, and a key can be anything
            self.counts[key] = self.counts.get(key, 0) + count

    def dropped(self, path: str, count: int) -> None:
        """``path`` left out whole: what was counted inside it is part of that, not something beside it."""
        for key in [k for k in self.counts if k.startswith((f"{path}.", f"{path}[]"))]:
            del self.counts[key]
        self.add(path, count)

    def as_field(self) -> dict[str, int]:
        """The ``truncated`` field: sorted, and itself bounded (the tail of it summed as ``other``)."""
        ordered = sorted(self.counts.items())
        if len(ordered) <= MAX_KEYS:
            return dict(ordered)
        kept, rest = ordered[: MAX_KEYS - 1], ordered[MAX_KEYS - 1 :]
        return {**dict(kept), "other": sum(n for _, n in rest)}


def fit(line: str) -> str:
    """The record ``line`` (one JSON object, as serialised) within the bounds: ``line`` itself when it needed none."""
    document = json.loads(line)
    if not isinstance(document, dict):
        raise TypeError(f"a decision record is a JSON object, not {type(document).__name__}")
    omitted = _Omitted()
    bounded = _bounded_record(document, omitted)
    if not omitted.counts and len(line) <= BUDGET:
        return line
    return _guarded(bounded, omitted)


def bounded_line(document: dict[str, Any]) -> str:
    """``document`` (a record built by hand, e.g. the fallback form) as one JSON line within the bounds."""
    omitted = _Omitted()
    return _guarded(_bounded_record(document, omitted), omitted)


def _size(value: object) -> int:
    """How much there is of ``value``: items, keys or characters; a lone value is one."""
    return len(value) if isinstance(value, str | list | dict) else 1


# ---------------------------------------------------------------------------------------- step 1: always


def _bounded_record(document: dict[str, Any], omitted: _Omitted) -> dict[str, Any]:
    # The record's own fields are all kept (the model fixes them); what they hold is bounded.
    return {key: _bounded(value, key, 1, omitted) for key, value in document.items()}


def _bounded(value: Any, path: str, depth: int, omitted: _Omitted) -> Any:
    if isinstance(value, str):
        return _clip(value, MAX_TEXT, path, omitted)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity: the line must parse
    if not isinstance(value, list | dict):
        return value
    if depth >= MAX_DEPTH:
        omitted.add(path, _size(value))
        return [] if isinstance(value, list) else {}
    if isinstance(value, list):
        omitted.add(path, len(value) - MAX_ITEMS)
        return [_bounded(item, f"{path}[]", depth + 1, omitted) for item in value[:MAX_ITEMS]]
    omitted.add(path, len(value) - MAX_KEYS)
    kept = list(value.items())[:MAX_KEYS]
    return {key: _bounded(item, f"{path}.{key}", depth + 1, omitted) for key, item in kept}


def _clip(text: str, limit: int, path: str, omitted: _Omitted) -> str:
    """``text`` with its middle left out (and the count said in its place) when it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    # The marker's room is reserved for the longest count it can hold, so the result never exceeds ``limit``.
    keep = max(limit - len(_marker(len(text))), 0)
    head, tail = keep - keep // 2, keep // 2
    omitted.add(path, len(text) - keep)
    return f"{text[:head]}{_marker(len(text) - keep)}{text[len(text) - tail :] if tail else ''}"


def _marker(left_out: int) -> str:
    return f"…[{left_out} chars left out]…"


# ------------------------------------------------------------------------------- step 2: only when too long


def _guarded(document: dict[str, Any], omitted: _Omitted) -> str:
    """Shed detail, step by step, until the line fits the budget; the last step always fits."""
    steps: list[Callable[[dict[str, Any], _Omitted], None]] = [
        _drop_changes,
        _drop_result_details,
        _drop_non_contract,
        _shorten_strings,
        _fewer_results,
    ]
    line = _line(document, omitted)
    for step in steps:
        if len(line) <= BUDGET:
            return line
        step(document, omitted)
        line = _line(document, omitted)
    if len(line) <= BUDGET:
        return line
    return _line(_last_resort(document, omitted, len(line)), omitted)


def _line(document: dict[str, Any], omitted: _Omitted) -> str:
    if omitted.counts:
        document = {**document, TRUNCATED: omitted.as_field()}
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _results(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each action and write-back entry, with the path it is counted under."""
    return [
        (key, entry)
        for key in RESULTS
        if isinstance(document.get(key), list)
        for entry in document[key]
        if isinstance(entry, dict)
    ]


def _drop_changes(document: dict[str, Any], omitted: _Omitted) -> None:
    # The named changes first: they are what grows with the namespace, and the reason still says what was done.
    for key, entry in _results(document):
        if "changes" in entry:
            omitted.dropped(f"{key}[].changes", _size(entry.pop("changes")))


def _drop_result_details(document: dict[str, Any], omitted: _Omitted) -> None:
    for key, entry in _results(document):
        for name in [n for n in entry if n not in RESULT_CONTRACT]:
            omitted.dropped(f"{key}[].{name}", _size(entry.pop(name)))


def _drop_non_contract(document: dict[str, Any], omitted: _Omitted) -> None:
    # One at a time, largest first (ties by name), so that no more is lost than the budget requires.
    extra = [key for key in document if key not in CONTRACT]
    extra.sort(key=lambda key: (-len(json.dumps(document[key], ensure_ascii=True)), key))
    for key in extra:
        omitted.dropped(key, _size(document.pop(key)))
        if len(_line(document, omitted)) <= BUDGET:
            return


def _shorten_strings(document: dict[str, Any], omitted: _Omitted) -> None:
    def shorten(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return _clip(value, SHORT_TEXT, path, omitted)
        if isinstance(value, list):
            return [shorten(item, f"{path}[]") for item in value]
        if isinstance(value, dict):
            return {key: shorten(item, f"{path}.{key}") for key, item in value.items()}
        return value

    for key in list(document):
        document[key] = shorten(document[key], key)


def _fewer_results(document: dict[str, Any], omitted: _Omitted) -> None:
    for key in RESULTS:
        if isinstance(document.get(key), list):
            omitted.add(key, len(document[key]) - MAX_ACTIONS)
            document[key] = document[key][:MAX_ACTIONS]


def _last_resort(document: dict[str, Any], omitted: _Omitted, length: int) -> dict[str, Any]:
    """The contract's one-value fields, the pod's name and each kept action's action, status and reason, every string
    short: small by construction (at most ~170 KB even if every character needs a 6-byte escape)."""

    def short(value: object) -> object:
        if isinstance(value, str):
            return value[:SHORT_TEXT]
        return value if _scalar(value) else None

    minimal: dict[str, Any] = {key: short(document[key]) for key in SCALARS if key in document}
    pod = document.get("pod")
    minimal["pod"] = (
        {key: short(pod[key]) for key in ("namespace", "name") if isinstance(pod.get(key), str)}
        if isinstance(pod, dict)
        else None
    )
    for key in RESULTS:
        entries = document.get(key)
        kept = [e for e in entries if isinstance(e, dict)][:MAX_ACTIONS] if isinstance(entries, list) else []
        minimal[key] = [{name: short(value) for name, value in e.items() if name in RESULT_CONTRACT} for e in kept]
    omitted.counts.clear()  # the per-path counts are part of what did not fit
    omitted.add("record", length)
    return minimal


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
