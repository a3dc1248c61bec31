#!/usr/bin/env python3
"""A byte pipe from the host to the apiserver sealed in the node's network namespace, over a Unix socket.

The sealed namespace has only loopback, so the host cannot dial its 127.0.0.1; a Unix socket is a file, and files are
shared across network namespaces. Two halves, each a small process:

    bridge.py inner SOCKET PORT   # runs inside the namespace: SOCKET -> 127.0.0.1:PORT there
    bridge.py outer PORT SOCKET   # runs on the host: 127.0.0.1:PORT here -> SOCKET

Both sides use the same port number, so `https://127.0.0.1:PORT` means the apiserver on either side and its serving
certificate (IP 127.0.0.1) verifies from both. TLS is not terminated: the bytes pass through untouched.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

CHUNK = 64 * 1024


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies src to dst until EOF, then half-closes dst so the peer sees the end of this direction."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _no_delay(sock: socket.socket) -> None:
    """A relay forwards what it reads at once: Nagle's algorithm would hold a request's second piece for the peer's
    delayed acknowledgement (~40 ms per round). Unix sockets have no such option."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def serve(listener: socket.socket, dial: Callable[[], socket.socket]) -> None:
    """Accepts forever; for each client, dials the other side and pumps both directions on two threads."""
    while True:
        client, _ = listener.accept()
        _no_delay(client)

        def handle(client: socket.socket = client) -> None:
            try:
                upstream = dial()
            except OSError:
                client.close()  # the apiserver is not up yet: the client sees a reset and retries
                return
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()
            client.close()
            upstream.close()

        threading.Thread(target=handle, daemon=True).start()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if len(argv) == 3 and argv[0] == "inner":
        path, port = argv[1], int(argv[2])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)  # only root (who owns the cluster) may reach the apiserver through it
        listener.listen(128)

        def dial_tcp() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.settimeout(None)  # watches stay idle for minutes
            _no_delay(sock)
            return sock

        serve(listener, dial_tcp)
        return 0
    if len(argv) == 3 and argv[0] == "outer":
        port, path = int(argv[1]), argv[2]
        listener = socket.create_server(("127.0.0.1", port), backlog=128)

        def dial() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            return sock

        serve(listener, dial)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
