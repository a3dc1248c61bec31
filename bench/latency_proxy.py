"""A loopback TCP proxy that adds latency and connection faults in front of a TLS server (the local kube-apiserver).

It relays bytes and never terminates TLS, so the client still verifies the apiserver's own certificate (issued for
127.0.0.1: the proxy listens on 127.0.0.1 too, and only the port in the kubeconfig changes). The price of that honesty
is that the proxy cannot read or forge HTTP: it cannot answer a request with a 503. What it can do is what a lossy
network or an overloaded load balancer does, and the client sees those as connection errors, which the kube adapter
translates to ``TransientError`` (retried with backoff, then redelivered by Pub/Sub).

Latency (``latency_s``): every client→server chunk (one ``recv``) is forwarded ``latency_s`` after it arrived. Chunks
keep their order but do not wait for each other's delay (a pipe ``latency_s`` long, not a queue), and server→client
bytes are relayed at once. Over a keep-alive TLS connection one HTTP request is one chunk (``http.client`` sends
headers and a small body in one write), so each request costs one extra ``latency_s`` - per-request latency, as seen
by the client. A new connection pays it once more per client handshake flight (TLS 1.3: two).

Timers (``precise_timers``): asyncio's default loop waits in ``epoll``, whose timeout is rounded up to a whole
millisecond, so each delayed chunk leaves up to 1 ms late (0.5 ms on average: 1 % of L = 50 ms, on every request).
With ``precise_timers`` the loop waits in ``select``, whose timeout has microsecond resolution; ``select`` only takes
descriptors below 1024, which the benchmark's few dozen connections are, and the fault tests' hundreds may not be.

Faults (``fault_ratio``, decided per client→server chunk with a seeded RNG, among ``fault_modes``):

- ``reset``:      the chunk is dropped and both sides are reset (RST): the request never reached the server.
- ``lost_reply``: the chunk is forwarded, then the client connection is reset when the server answers: the request
                  was applied but its answer is lost - exactly the case that makes retries prove idempotency.
- ``stall``:      the chunk is held for ``stall_s``, then both sides are reset: a hung request. The kube adapter's read
                  timeout is 20 s; with a shorter ``stall_s`` (the tests use 1-2 s, to stay fast) the client sees the
                  reset before its timeout, so this is "hung, then dropped" rather than a client-side timeout.

Only chunks that carry a request are eligible, so the ratio is one of requests, not of TLS handshake flights. The
proxy tells them apart from the TLS record headers alone (nothing is decrypted): after the client's ChangeCipherSpec,
its first encrypted record is its Finished (TLS 1.3: an application-data record; TLS 1.2: a handshake record), and
every application-data record after that is request data (or, at the very end, the encrypted close_notify).
A connection that does not start with a TLS handshake record is treated as plain TCP: every chunk is eligible.
:attr:`ProxyStats.eligible` counts the chunks the ratio applied to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FAULT_MODES = ("reset", "lost_reply", "stall")
_CHUNK = 256 * 1024


@dataclass
class ProxyStats:
    """What went through the proxy (read them after the traffic; updated from the proxy's loop thread)."""

    connections: int = 0
    chunks_up: int = 0
    eligible: int = 0  # chunks carrying request data: what fault_ratio applies to
    bytes_up: int = 0
    bytes_down: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able figures."""
        return {
            "connections": self.connections,
            "chunks_up": self.chunks_up,
            "eligible": self.eligible,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "faults": dict(self.faults),
            "fault_total": sum(self.faults.values()),
        }


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset rather than a FIN (what a dropped connection looks like to the peer)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_CHANGE_CIPHER_SPEC, _HANDSHAKE, _APPLICATION_DATA = 0x14, 0x16, 0x17


class _ClientRecords:
    """Follows the client's TLS record headers across chunks to tell handshake flights from request data."""

    def __init__(self) -> None:
        self.tls: bool | None = None  # unknown until the first byte
        self._header = b""
        self._skip = 0
        self._after_ccs = False
        self._finished = False

    def carries_request(self, data: bytes) -> bool:
        """True when a request record starts in this chunk (always, for plain TCP)."""
        if self.tls is None:
            self.tls = data[:1] == bytes([_HANDSHAKE])
        if not self.tls:
            return True
        found = False
        i = 0
        while i < len(data):
            if self._skip:
                step = min(self._skip, len(data) - i)
                self._skip -= step
                i += step
                continue
            take = 5 - len(self._header)
            self._header += data[i : i + take]
            i += take
            if len(self._header) < 5:
                break
            kind, self._skip, self._header = self._header[0], int.from_bytes(self._header[3:5], "big"), b""
            if kind == _CHANGE_CIPHER_SPEC:
                self._after_ccs = True
            elif kind == _HANDSHAKE and self._after_ccs:
                self._finished = True  # TLS 1.2: the encrypted Finished
            elif kind == _APPLICATION_DATA:
                if self._after_ccs and not self._finished:
                    self._finished = True  # TLS 1.3: the Finished travels as application data
                else:
                    found = True
        return found


class _Connection:
    """One client connection and its upstream twin."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.lose_next_reply = False
        self.dead = asyncio.Event()
        self.records = _ClientRecords()

    def kill(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            _rst(self.client)
            _rst(self.upstream)


class LatencyProxy:
    """``127.0.0.1:port`` → ``upstream``, with latency and faults; runs its own asyncio loop in a daemon thread.

    ``latency_s``, ``fault_ratio``, ``fault_modes`` and ``stall_s`` may be changed while it runs; they are read per
    chunk.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency_s: float = 0.0,
        fault_ratio: float = 0.0,
        fault_modes: tuple[str, ...] = FAULT_MODES,
        stall_s: float = 2.0,
        seed: int = 0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        precise_timers: bool = False,
    ) -> None:
        unknown = set(fault_modes) - set(FAULT_MODES)
        if unknown:
            raise ValueError(f"unknown fault modes {sorted(unknown)}; valid: {FAULT_MODES}")
        self.upstream = (upstream_host, upstream_port)
        self.latency_s = latency_s
        self.fault_ratio = fault_ratio
        self.fault_modes = fault_modes
        self.stall_s = stall_s
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._listen = (listen_host, listen_port)
        self.precise_timers = precise_timers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[_Connection] = set()
        self.port = 0

    @classmethod
    def for_kubeconfig(cls, kubeconfig: Path, **options: Any) -> LatencyProxy:
        """A proxy in front of the (single) server that ``kubeconfig`` names."""
        server = urlsplit(_kubeconfig_server(kubeconfig))
        if server.hostname is None or server.port is None:
            raise ValueError(f"{kubeconfig}: server has no host:port")
        return cls(server.hostname, server.port, **options)

    # ---------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> LatencyProxy:
        """Listen (on a free port unless one was given) and serve in a background thread."""
        loop = (
            asyncio.SelectorEventLoop(selectors.SelectSelector()) if self.precise_timers else asyncio.new_event_loop()
        )
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, *self._listen, backlog=512))
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("latency proxy did not start")
        return self

    def stop(self) -> None:
        """Stop listening, reset open connections, end the loop thread."""
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                conn.kill()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``: the same host the apiserver's certificate names."""
        return f"https://{self._listen[0]}:{self.port}"

    def write_kubeconfig(self, source: Path, dest: Path) -> Path:
        """Copy ``source`` with every cluster's server pointed at this proxy (CA and credentials unchanged)."""
        import yaml

        config = yaml.safe_load(source.read_text())
        for cluster in config.get("clusters") or []:
            cluster["cluster"]["server"] = self.url
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it carries a bearer token
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(config, fh)
        return dest

    # -------------------------------------------------------------------------------------------------- relay
    def _fault(self) -> str | None:
        if self.fault_ratio <= 0 or self._rng.random() >= self.fault_ratio:
            return None
        return self._rng.choice(self.fault_modes)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(cwriter)
            return
        for writer in (cwriter, uwriter):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(cwriter, uwriter)
        self._connections.add(conn)
        queue: asyncio.Queue[tuple[float, bytes | None, str | None]] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._read_up(creader, queue, conn)),
            asyncio.create_task(self._send_up(queue, conn)),
            asyncio.create_task(self._relay_down(ureader, conn)),
        ]
        try:
            await conn.dead.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (cwriter, uwriter):
                with contextlib.suppress(Exception):
                    writer.close()
            self._connections.discard(conn)

    async def _read_up(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes | None, str | None]],
        conn: _Connection,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(_CHUNK)
                due = loop.time() + self.latency_s
                if not data:
                    await queue.put((due, None, None))
                    return
                self.stats.chunks_up += 1
                self.stats.bytes_up += len(data)
                fault = None
                if conn.records.carries_request(data):
                    self.stats.eligible += 1
                    fault = self._fault()
                if fault == "reset":
                    self.stats.faults[fault] += 1
                    conn.kill()
                    return
                await queue.put((due, data, fault))
        except (ConnectionError, OSError):
            conn.kill()

    async def _send_up(self, queue: asyncio.Queue[tuple[float, bytes | None, str | None]], conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data, fault = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:  # the client closed: pass the EOF on, let the server close its side
                    if conn.upstream.can_write_eof():
                        conn.upstream.write_eof()
                    return
                if fault == "stall":
                    self.stats.faults[fault] += 1
                    await asyncio.sleep(self.stall_s)
                    conn.kill()
                    return
                if fault == "lost_reply":
                    self.stats.faults[fault] += 1
                    conn.lose_next_reply = True
                conn.upstream.write(data)
                await conn.upstream.drain()
        except (ConnectionError, OSError):
            conn.kill()

    async def _relay_down(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if conn.lose_next_reply:
                    break  # the request was applied; its answer never reaches the client
                self.stats.bytes_down += len(data)
                conn.client.write(data)
                await conn.client.drain()
        except (ConnectionError, OSError):
            pass
        if conn.lose_next_reply:
            conn.kill()
        else:
            _close_gracefully(conn)


class ProxyProcess:
    """:class:`LatencyProxy` in a process of its own (``python -m bench.latency_proxy``), for measurements: relaying
    in the measuring process would share its interpreter lock with whatever else runs there (the Google fakes)."""

    def __init__(self, kubeconfig: Path, dest: Path, latency_s: float, precise_timers: bool = True) -> None:
        self.kubeconfig = dest  # the copy of ``kubeconfig`` that points at the proxy
        self._command = [
            sys.executable,
            "-m",
            "bench.latency_proxy",
            str(kubeconfig),
            str(dest),
            "--latency-ms",
            str(latency_s * 1000),
            *(["--precise-timers"] if precise_timers else []),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> ProxyProcess:
        """Start it and wait until it listens."""
        root = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(self._command, cwd=root, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(10)
            raise RuntimeError(f"latency proxy did not start (exit {self._proc.returncode})")
        port = urlsplit(json.loads(line)["url"]).port
        assert port is not None
        self.port = port
        return self

    def stop(self) -> dict[str, Any]:
        """Stop it; what went through it (:meth:`ProxyStats.as_dict`), or {} if it ended otherwise."""
        proc, self._proc = self._proc, None
        if proc is None:
            return {}
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = [line for line in (out or "").splitlines() if line.strip()]
        try:
            stats: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            stats = {}
        return stats


def _close_gracefully(conn: _Connection) -> None:
    """The server closed: close the client with a FIN (its buffered bytes are flushed first)."""
    if not conn.dead.is_set():
        conn.dead.set()
        conn.client.close()
        conn.upstream.close()


def _kubeconfig_server(path: Path) -> str:
    import yaml

    config = yaml.safe_load(path.read_text())
    servers = {c["cluster"]["server"] for c in config.get("clusters") or []}
    if len(servers) != 1:
        raise ValueError(f"{path}: expected exactly one cluster server, found {sorted(servers)}")
    return str(next(iter(servers)))


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.latency_proxy KUBECONFIG OUT [--latency-ms N] [--fault-ratio R]``: serve until ^C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kubeconfig", type=Path)
    parser.add_argument("out", type=Path, help="where to write the kubeconfig pointing at the proxy")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--fault-ratio", type=float, default=0.0)
    parser.add_argument("--stall-s", type=float, default=2.0)
    parser.add_argument("--precise-timers", action="store_true", help="microsecond timers (fewer than 1024 fds)")
    args = parser.parse_args(argv)
    proxy = LatencyProxy.for_kubeconfig(
        args.kubeconfig,
        latency_s=args.latency_ms / 1000,
        fault_ratio=args.fault_ratio,
        stall_s=args.stall_s,
        precise_timers=args.precise_timers,
    ).start()
    proxy.write_kubeconfig(args.kubeconfig, args.out)
    print(json.dumps({"url": proxy.url, "kubeconfig": str(args.out)}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(json.dumps(proxy.stats.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
