"""The worker process's clock: every KubePort call timestamped (:class:`TimedKube`), when a pod counts as isolated
(:meth:`Timeline.isolated_at`), and the sequential rounds on the way there (:func:`critical_rounds`)."""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    """One KubePort call as the responder made it."""

    method: str
    start: float
    end: float
    outcome: str  # "ok" or the exception class name
    kind: str | None = None  # deny_all | exclude | label, for the writes that make up isolation
    namespace: str | None = None
    name: str | None = None  # pod or policy name
    thread: str = ""


class Timeline:
    """Every KubePort call, with monotonic start/end (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.start >= start and c.end <= end]

    def started_between(self, start: float, end: float) -> list[Call]:
        """The calls that started in [start, end] and have ended (a call is recorded when it ends)."""
        with self._lock:
            return [c for c in self.calls if start <= c.start <= end]

    def isolated_at(
        self, since: float, namespace: str, pod: str, policies: list[str], policies_ready: bool = False
    ) -> float | None:
        """When the last write that isolates ``pod`` was acknowledged (None: it is not isolated).

        ``policies_ready``: the namespace already had the deny-all policy and the exclusions before ``since`` (a
        second incident there), so only the label remains to be written.
        """
        with self._lock:
            calls = [c for c in self.calls if c.start >= since and c.namespace == namespace]

        def first(kind: str, name: str | None, outcomes: tuple[str, ...] = ("ok",)) -> float | None:
            times = [
                c.end for c in calls if c.kind == kind and c.outcome in outcomes and (name is None or c.name == name)
            ]
            return min(times) if times else None

        parts = [first("label", pod)]
        if policies_ready:
            parts.append(since)
        else:
            parts.append(first("deny_all", None, ("ok", "Conflict")))
            parts += [first("exclude", p) for p in policies]
        if any(p is None for p in parts):
            return None
        return max(p for p in parts if p is not None)


class TimedKube:
    """A KubePort that forwards to the real adapter and timestamps every call (reads pass through untouched)."""

    # One signature per adapter method, not one per call: inspect.signature costs about as much CPU as a kube read's
    # parse, and it would be counted in the responder's CPU figures (the measurement's own overhead).
    _signatures: dict[tuple[type, str], inspect.Signature] = {}

    def __init__(self, inner: Any, timeline: Timeline) -> None:
        self._inner = inner
        self._timeline = timeline

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        if name == "read_together":
            return self._together(attr)
        signature = self._signature(name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            outcome = "ok"
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                outcome = type(exc).__name__
                raise
            finally:
                self._record(name, signature.bind(*args, **kwargs).arguments, start, outcome)

        return timed

    def _signature(self, name: str) -> inspect.Signature:
        key = (type(self._inner), name)
        signature = TimedKube._signatures.get(key)
        if signature is None:
            signature = TimedKube._signatures.setdefault(key, inspect.signature(getattr(self._inner, name)))
        return signature

    def _record(self, name: str, arguments: dict[str, Any], start: float, outcome: str) -> None:
        end = time.monotonic()
        kind, namespace, obj = _classify(name, arguments)
        self._timeline.add(Call(name, start, end, outcome, kind, namespace, obj, threading.current_thread().name))

    def _together(self, attr: Any) -> Any:
        """``read_together``: each read recorded as a call of its own (one round: they share start and end)."""

        def timed(reads: Any) -> Any:
            start = time.monotonic()
            answers = attr(reads)
            for read, answer in zip(reads, answers, strict=True):
                failed = answer.exception()
                arguments = self._signature(read.method).bind(*read.args).arguments
                self._record(read.method, arguments, start, "ok" if failed is None else type(failed).__name__)
            return answers

        return timed


@functools.cache
def _keys() -> tuple[str, str]:
    """The deny-all's name and the quarantine label, from whichever module the measured tree keeps them in: a
    side-by-side run's earlier tree (``--before``) may predate their own module."""
    try:
        from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
    except ImportError:  # an earlier tree kept them with the action context
        from responder.containment.base import DENY_ALL_POLICY, QUARANTINE_LABEL  # type: ignore[import-not-found,no-redef]
    return DENY_ALL_POLICY, QUARANTINE_LABEL


def _classify(method: str, arguments: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    DENY_ALL_POLICY, QUARANTINE_LABEL = _keys()

    namespace = arguments.get("namespace")
    if method == "create_network_policy":
        body = arguments.get("body") or {}
        name = (body.get("metadata") or {}).get("name")
        return ("deny_all" if name == DENY_ALL_POLICY else None), namespace, name
    if method == "set_network_policy_selector":
        selector = arguments.get("selector")
        excludes = any(
            e.key == QUARANTINE_LABEL and e.operator == "NotIn" for e in getattr(selector, "match_expressions", ())
        )
        return ("exclude" if excludes else None), namespace, arguments.get("name")
    if method == "patch_pod_metadata":
        labels = arguments.get("labels") or {}
        return ("label" if labels.get(QUARANTINE_LABEL) == "true" else None), namespace, arguments.get("name")
    return None, namespace, arguments.get("name")


class TimedConnector:
    """Wraps a ClusterConnector so that every Connection's KubePort is a :class:`TimedKube`."""

    def __init__(self, inner: Any, timeline: Timeline) -> None:
        self._inner = inner
        self._timeline = timeline
        self._cache: dict[int, Any] = {}
        self._lock = threading.Lock()

    def connect(self, ref: Any) -> Any:
        connection = self._inner.connect(ref)
        with self._lock:
            wrapped = self._cache.get(id(connection))
            if wrapped is None:
                wrapped = connection.model_copy(update={"kube": TimedKube(connection.kube, self._timeline)})
                self._cache[id(connection)] = wrapped
        return wrapped


def _deps(spec: dict[str, Any]) -> Any:
    """The production composition root (bootstrap.build_dependencies) from the spec's settings and policy file."""
    from responder.bootstrap import build_dependencies
    from responder.config import Settings

    return build_dependencies(Settings(**spec["settings"]))


def _payload(doc: dict[str, Any]) -> Any:
    from responder.intake.envelope import Delivery

    return Delivery(payload=json.dumps(doc).encode(), shape="bench")


def critical_rounds(rows: list[list[Any]], until_l: float | None) -> int | None:
    """Sequential remote calls on the path to ``until_l``: the call that ended then, the latest one that ended
    before it started, and so on back to the start. Independent of how long one round takes on this machine."""
    if until_l is None:
        return None
    ending = [r for r in rows if abs(r[1] - until_l) < 0.011]
    if not ending:
        return None
    rounds, start = 1, ending[0][0]
    while True:
        before = [r for r in rows if r[1] <= start + 0.011]
        if not before:
            return rounds
        latest = max(before, key=lambda r: r[1])
        rounds, start = rounds + 1, latest[0]


def _timeline_rows(calls: list[Call], t0: float, latency: float) -> list[list[Any]]:
    rows = sorted(calls, key=lambda c: c.start)
    return [
        [round((c.start - t0) / latency, 2), round((c.end - t0) / latency, 2), c.method, c.kind or "", c.outcome]
        for c in rows
    ]
