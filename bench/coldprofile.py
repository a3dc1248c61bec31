"""What a cold process does between ``import main`` and its first isolating write: the profile ``make bench`` keeps.

Standard library only (it runs inside bench/probe.py, before ``main`` is imported). Two views, both cut at the
first write to the cluster (the first ``POST``/``PATCH``/``PUT``/``DELETE`` on a namespaced path, seen by an audit
hook: the transport's own ``rsr.http.send`` event, or ``http.client.send`` for a tree from before it):

- **modules**: every module imported before that write, with its own import time, from ``python -X importtime``
  (the probe's stderr, cut at the marker the audit hook writes there): the count, the slowest modules by self time,
  and the self time summed by top-level package;
- **functions**: a sampling profiler (one thread, :data:`INTERVAL_S`, every other thread's stack; threads parked in a
  wait are not counted), the switch interval lowered so that a busy thread lets the sampler in: the functions seen
  most often innermost (self) and anywhere on a stack (cumulative), in milliseconds of samples.

A profiled process is slower than an unprofiled one (importtime, the sampler): its figures say where the time goes,
not how long the cold path takes (``cold_to_isolated_s`` is measured in processes that are not profiled).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

INTERVAL_S = 0.001
START = "rsr-probe: import main"
MARKER = "rsr-probe: first isolating write"
_WRITE = re.compile(rb"^(POST|PATCH|PUT|DELETE) \S*/namespaces/")
# The request leaving, as the transport announces it: http_wire's event (its args: the bytes), or http.client's
# (self, the bytes) in a tree measured side by side that still sent through http.client.
_SEND_EVENTS = ("rsr.http.send", "http.client.send")
# Where an idle thread sits (a pool worker waiting for work, a thread joining a future, a socket read).
_IDLE = {
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("thread.py", "_worker"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
    ("socket.py", "readinto"),
    ("ssl.py", "read"),
    ("ssl.py", "recv_into"),
    ("_base.py", "result"),
    ("socketserver.py", "serve_forever"),
}


class ColdProfile:
    """Installed before ``import main``; :meth:`result` once the event is handled."""

    def __init__(self, top: int = 15) -> None:
        self.top = top
        self.started = time.perf_counter()
        self.first_write_s: float | None = None
        self.first_write: str | None = None
        self.self_samples: Counter[str] = Counter()
        self.cumulative: Counter[str] = Counter()
        self.samples = 0
        self.busy_samples = 0
        self._stop = threading.Event()
        os.write(2, f"\n{START}\n".encode())
        self._root = str(Path(__file__).resolve().parents[1]) + os.sep
        sys.setswitchinterval(INTERVAL_S)
        sys.addaudithook(self._audit)
        self._thread = threading.Thread(target=self._sample, name="rsr-cold-profile", daemon=True)
        self._thread.start()

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in _SEND_EVENTS or self.first_write_s is not None:
            return
        data = args[-1]
        if isinstance(data, bytes | bytearray) and _WRITE.match(bytes(data[:200])):
            self.first_write_s = time.perf_counter() - self.started
            self.first_write = bytes(data[: data.find(b" HTTP/")]).decode(errors="replace")[:160]
            self._stop.set()
            os.write(2, f"\n{MARKER}\n".encode())

    def _name(self, frame: FrameType) -> str:
        code = frame.f_code
        path = code.co_filename  # string operations only: the sampler must stay cheap
        if path.startswith(self._root):
            path = path[len(self._root) :]
        elif "site-packages/" in path:
            path = path.rsplit("site-packages/", 1)[1]
        else:
            path = "/".join(path.rsplit("/", 2)[-2:])
        return f"{path}:{code.co_qualname}"

    def _sample(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(INTERVAL_S):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                code = frame.f_code
                if (code.co_filename.rsplit("/", 1)[-1], code.co_name) in _IDLE:
                    continue
                self.busy_samples += 1
                self.self_samples[self._name(frame)] += 1
                seen: set[str] = set()
                walk: FrameType | None = frame
                while walk is not None:
                    seen.add(self._name(walk))
                    walk = walk.f_back
                self.cumulative.update(seen)

    def result(self) -> dict[str, Any]:
        """The sampled half of the profile (the parent adds :func:`modules_before` from the probe's stderr)."""
        self._stop.set()
        self._thread.join(timeout=1)
        sys.setswitchinterval(0.005)
        ms = 1000 * (self.first_write_s or 0) / max(self.samples, 1)  # one sample interval, as it really went

        def top(counter: Counter[str]) -> list[list[Any]]:
            return [[name, round(n * ms, 1)] for name, n in counter.most_common(self.top)]

        return {
            "first_write_s": None if self.first_write_s is None else round(self.first_write_s, 3),
            "first_write": self.first_write,
            "sample_interval_ms": round(ms, 2),
            "busy_ms": round(self.busy_samples * ms, 1),
            "functions_self_ms": top(self.self_samples),
            "functions_cumulative_ms": top(self.cumulative),
        }


def modules_before(stderr: str, top: int = 15) -> dict[str, Any]:
    """``-X importtime`` lines written between :data:`START` and :data:`MARKER`: the modules imported from
    ``import main`` to the first write."""
    before = stderr.split(MARKER, 1)[0].split(START, 1)[-1]
    rows: list[tuple[str, int]] = []
    for line in before.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _cumulative, name = line[len("import time:") :].split("|", 2)
        if not own.strip().isdigit():
            continue  # the header line
        rows.append((name.strip(), int(own)))
    by_package: Counter[str] = Counter()
    for name, us in rows:
        by_package[name.split(".", 1)[0]] += us
    return {
        "modules_before_first_write": len(rows),
        "import_self_ms": round(sum(us for _, us in rows) / 1000, 1),
        "modules_self_ms": [[n, round(us / 1000, 1)] for n, us in sorted(rows, key=lambda r: -r[1])[:top]],
        "packages_self_ms": [[n, round(us / 1000, 1)] for n, us in by_package.most_common(top)],
        "responder_modules": sorted(n for n, _ in rows if n == "main" or n.startswith("responder")),
    }
