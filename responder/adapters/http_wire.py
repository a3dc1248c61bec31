"""One keep-alive HTTP/1.1 connection: a request written whole, its answer parsed by httptools (llhttp, Node.js's
parser). :mod:`responder.adapters.http_pool` keeps these per origin.

Why not ``http.client``, which this transport used until issue 33's fourth pass: on an apiserver read it spent about
110 us of CPU of 170 (the bench machine, JSON decoding aside) on a file object made for each answer, a line read at a
time through it, and the ``email`` package's header parser; the same read through this connection costs about 60 us.
A converged redelivery is four such reads and little else, so that was a fifth of its CPU.

What is kept from ``http.client``: a request line, header name or value with a control character in it is refused
before anything is sent (:class:`ValueError`: never a transient failure), ``Host`` names the origin, a body goes with
its ``Content-Length``, informational (1xx) answers are skipped, and an answer without a length ends when the server
closes. Each request leaves in one write: a header block sent apart from its body is held by anything on the path
that still runs Nagle's algorithm until the first segment is acknowledged, and a delayed ACK makes that ~40 ms.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from httptools import HttpParserError, HttpResponseParser

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (OSError, HttpParserError)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")  # CR and LF above all: a header or a request of the caller's making
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_RECV = 65536
_MAX_PROXY_ANSWER = 16384


class AnswerCutShort(ConnectionError):
    """The server closed the connection before its answer was whole."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    body: bytes


class Origin(Protocol):
    """What a connection needs of its pool: where to connect, how, and for how long."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    server_name: str | None
    proxy: tuple[str, int] | None
    timeout: tuple[float, float]

    @property
    def authority(self) -> str: ...


class Connection:
    """One keep-alive connection to ``origin``: TCP_NODELAY, TLS when asked, a CONNECT tunnel through an ``http://``
    proxy, a connect and a read timeout. Used by one thread at a time."""

    __slots__ = ("closing", "origin", "sock")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.sock: socket.socket | None = None
        self.closing = False  # the last answer said the server closes the connection after it

    def exchange(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        self.put(method, target, body, headers)
        return self.answer()

    def put(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """Send one request (``target``: the path and query), in one write; connects first when not connected."""
        if _UNSAFE_TARGET.search(method) or _UNSAFE_TARGET.search(target):
            raise ValueError(f"refusing to send a request line with a control character or space: {method} {target!r}")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.origin.authority}"]
        for name, value in headers.items():
            if _UNSAFE.search(name) or _UNSAFE.search(value) or ":" in name:
                raise ValueError(f"refusing to send the header {name!r}: a control character or colon in it")
            lines.append(f"{name}: {value}")
        if body is not None or method in _WITH_BODY:
            lines.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        sys.audit("rsr.http.send", data)  # what leaves, for an audit hook (bench/coldprofile.py); ~free without one
        self.sock.sendall(data)

    def answer(self) -> Answer:
        """Read the answer to the request just sent (the first final one: 1xx answers are skipped)."""
        assert self.sock is not None
        reading = _Reading()
        self.closing = False
        while not reading.complete:
            data = self.sock.recv(_RECV)
            if not data:
                if not reading.ends_at_close():
                    raise AnswerCutShort("the server closed the connection before its answer was whole")
                self.closing = True
                break
            reading.parser.feed_data(data)
        # Kept open only when the server keeps it and sent nothing beyond this answer.
        self.closing = self.closing or reading.extra or not reading.keep_alive
        return Answer(reading.status, b"".join(reading.reason).decode("latin-1").strip(), b"".join(reading.body))

    def connect(self) -> None:
        origin = self.origin
        sock = socket.create_connection(origin.proxy or (origin.host, origin.port), timeout=origin.timeout[0])
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.proxy is not None:
                _tunnel(sock, origin.authority)
            if origin.tls is not None:
                sock = origin.tls.wrap_socket(sock, server_hostname=origin.server_name or origin.host)
            sock.settimeout(origin.timeout[1])
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def dropped(self) -> bool:
        """The server closed it (or sent what nobody asked for) while it sat idle: not to be used again."""
        sock = self.sock
        if sock is None or self.closing:
            return True
        try:
            poller = select.poll()  # not select(): it cannot watch a descriptor past 1024
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


class _Reading:
    """httptools' callbacks for one answer: its status, reason and body; whether its length is known; and whether
    the server sent more than it."""

    __slots__ = (
        "body",
        "complete",
        "extra",
        "headers_done",
        "informational",
        "keep_alive",
        "length_known",
        "parser",
        "reason",
    )

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.reason: list[bytes] = []
        self.body: list[bytes] = []
        self.complete = False  # the final answer is whole
        self.headers_done = False
        self.informational = False  # a 1xx answer is being read: the final one follows it
        self.length_known = False  # Content-Length or chunked: else the answer ends when the server closes
        self.extra = False
        self.keep_alive = False  # as the final answer's headers say (llhttp forgets it once the answer is whole)

    @property
    def status(self) -> int:
        return self.parser.get_status_code() if self.headers_done else 0

    def ends_at_close(self) -> bool:
        return self.headers_done and not self.informational and not self.length_known

    def on_message_begin(self) -> None:
        self.extra = self.extra or self.complete

    def on_status(self, reason: bytes) -> None:
        if not self.complete:
            self.reason.append(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete and name.lower() in (b"content-length", b"transfer-encoding"):
            self.length_known = True

    def on_headers_complete(self) -> None:
        if not self.complete:
            self.headers_done = True
            self.informational = 100 <= self.parser.get_status_code() < 200
            self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.complete and not self.informational:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.informational:  # skipped: the final answer follows
            self.informational, self.headers_done, self.length_known, self.reason = False, False, False, []
            return
        self.complete = True

    def on_chunk_header(self) -> None:
        pass

    def on_chunk_complete(self) -> None:
        pass


def _tunnel(sock: socket.socket, authority: str) -> None:
    """CONNECT through the proxy ``sock`` is connected to; any answer but 2xx is a refusal (an OSError)."""
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("latin-1"))
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data or len(head) > _MAX_PROXY_ANSWER:
            raise AnswerCutShort(f"the proxy did not answer the CONNECT to {authority}")
        head += data
    status_line = head.partition(b"\r\n")[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].startswith(b"2"):
        raise ConnectionRefusedError(f"the proxy refused the tunnel to {authority}: {status_line[:200]!r}")
    if not head.endswith(b"\r\n\r\n") or head.count(b"\r\n\r\n") > 1:
        raise ConnectionError(f"the proxy sent more than its answer to the CONNECT to {authority}")
