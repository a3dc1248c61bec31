"""What runs inside the fresh processes ``bench.run`` measures: import ``main``, hand it events, report peak RSS.

Only the standard library is imported before ``main``, so the figures are the function's own. The responder is
configured by the parent purely through ``RESPONDER_*`` variables, as in production. Decision records go to stdout
as usual; the measurement goes to ``--out`` as one JSON object.

    python -m bench.probe first-event --events EVENTS.jsonl --out OUT.json
    python -m bench.probe concurrent  --events EVENTS.jsonl --out OUT.json
    python -X importtime -m bench.probe first-event --profile --events EVENTS.jsonl --out OUT.json  # the profile

``EVENTS.jsonl`` holds one Pub/Sub ``MessagePublishedData`` object per line (the CloudEvent ``data``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def _rss_mib() -> float:
    """Peak RSS of this process since it started: ``VmHWM``, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` is preserved across ``execve``: a process forked from a big parent (the bench, ~100 MiB)
    reports the parent's resident size at fork until it outgrows it. ``VmHWM`` is the high-water mark of this
    process's own address space, so it is the figure we want; ``ru_maxrss`` is reported next to it.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _ru_maxrss_mib()


def _ru_maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _event(data: dict[str, Any], event_id: str) -> Any:
    from cloudevents.http import CloudEvent  # what functions-framework hands the function

    attributes = {
        "type": PUBSUB_TYPE,
        "source": "//pubsub.googleapis.com/projects/bench/topics/scc-findings",
        "id": event_id,
        "specversion": "1.0",
    }
    return CloudEvent(attributes, data)


def _call(handler: Any, event: Any) -> str:
    try:
        handler(event)
    except Exception as exc:  # TransientError: functions-framework would answer 500 and Pub/Sub redeliver
        return type(exc).__name__
    return "ok"


def first_event(events: list[dict[str, Any]], profile: bool = False) -> dict[str, Any]:
    """Import main, handle one event: the cold start and the memory of an instance that has done real work.
    ``profile``: what runs before the first isolating write (bench/coldprofile.py; not a timed sample)."""
    profiler = None
    if profile:
        from bench.coldprofile import ColdProfile  # standard library only

        profiler = ColdProfile()
    t0_monotonic = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the parent compares it with its watch
    started = time.perf_counter()
    import main

    imported = time.perf_counter()
    rss_import = _rss_mib()
    event = _event(events[0], "bench-1")
    status = _call(main.handle_finding, event)
    done = time.perf_counter()
    return {
        "t0_monotonic": t0_monotonic,
        "cpu_s": time.process_time(),
        "modules": sorted(m for m in sys.modules if "." not in m),
        "import_s": imported - started,
        "first_event_s": done - imported,
        "status": status,
        "rss_after_import_mib": rss_import,
        "rss_mib": _rss_mib(),
        "ru_maxrss_mib": _ru_maxrss_mib(),
        **({"profile": profiler.result()} if profiler is not None else {}),
    }


def concurrent(events: list[dict[str, Any]]) -> dict[str, Any]:
    """All events in flight at once, one thread each (functions-framework's threaded server, unbounded)."""
    import main

    prepared = [_event(data, f"bench-{i}") for i, data in enumerate(events)]
    barrier = threading.Barrier(len(prepared))
    lock = threading.Lock()
    state = {"in_flight": 0, "max_in_flight": 0}
    statuses: list[str] = []

    def one(event: Any) -> None:
        barrier.wait()
        with lock:
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        status = _call(main.handle_finding, event)
        with lock:
            state["in_flight"] -= 1
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(e,)) for e in prepared]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "events": len(prepared),
        "max_in_flight": state["max_in_flight"],
        "wall_s": time.perf_counter() - started,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "rss_mib": _rss_mib(),
        "ru_maxrss_mib": _ru_maxrss_mib(),
    }


def main_(argv: list[str] | None = None) -> int:
    """Entry point (``main`` is the function module's name, so this one is ``main_``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=("first-event", "concurrent"))
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", action="store_true", help="first-event: profile it up to the first write")
    args = parser.parse_args(argv)
    events = [json.loads(line) for line in args.events.read_text().splitlines() if line.strip()]
    result = first_event(events, args.profile) if args.mode == "first-event" else concurrent(events)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `main` lives at the repository root
    raise SystemExit(main_())
