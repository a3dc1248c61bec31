"""The transport of every call before the writes (http_pool: the apiserver's, the GKE lookup's, the token's):
keep-alive connections that are reused, one the server closed is never reused, a request with a body leaves in one
write, and a proxy it cannot use is refused with the kubeconfig."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from responder.adapters.http_pool import TRANSPORT_ERRORS, Pool
from responder.adapters.http_wire import Connection
from responder.adapters.kube_http import KubeHttp
from responder.errors import ConfigError, KubeHttpError


class Loopback:
    """A loopback HTTP/1.1 server: each request gets the bytes ``answer()`` gives (none left: the connection ends),
    and a connection is shut down after ``per_connection`` answers, without "Connection: close" (the client learns of
    it while idle). ``requests``: what came, in order; ``accepted``: connections; ``closed``: set at each shutdown."""

    def __init__(self, answer: Callable[[], bytes | None], per_connection: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.per_connection = answer, per_connection
        self.accepted = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                for _ in range(self.per_connection):
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                        data += chunk
                    answer = self.answer() if data else None
                    if answer is None:
                        break
                    self.requests.append(data)
                    conn.sendall(answer)
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.closed.set()

    def close(self) -> None:
        self.sock.close()


def OneShotServer(status: int = 200, body: bytes = b'{"kind": "Pod"}') -> Loopback:
    """Answers each connection's first request, keep-alive, then closes it: what an apiserver (or a load balancer)
    does to a connection it considers idle."""
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return Loopback(lambda: head.encode() + body, 1)


@pytest.fixture
def server() -> Iterator[Loopback]:
    s = OneShotServer()
    yield s
    s.close()


def test_a_connection_the_server_closed_is_not_reused(server: Loopback) -> None:
    http = KubeHttp(f"http://127.0.0.1:{server.port}", ca_file=None)
    assert http.request("GET", "/api/v1/namespaces/a/pods/b") == {"kind": "Pod"}
    assert server.closed.wait(5)
    assert http.request("GET", "/api/v1/namespaces/a/pods/b") == {"kind": "Pod"}  # no reset: a new connection
    assert server.accepted == 2
    assert all(r.startswith(b"GET /api/v1/namespaces/a/pods/b HTTP/1.1\r\n") for r in server.requests)
    http.close()


def test_an_error_status_is_raised_with_its_body() -> None:
    s = OneShotServer(status=403, body=b'{"message": "pods is forbidden"}')
    try:
        with pytest.raises(KubeHttpError) as raised:
            KubeHttp(f"http://127.0.0.1:{s.port}", ca_file=None).request("GET", "/api/v1/pods")
        assert raised.value.status == 403 and "forbidden" in raised.value.body
    finally:
        s.close()


class Recording:
    """Stands in for a connected socket: what was written, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        pass


def test_a_request_with_a_body_leaves_in_one_write() -> None:
    conn = Connection(Pool("http://127.0.0.1:1"))
    conn.sock = Recording()  # type: ignore[assignment]
    conn.put("PATCH", "/api/v1/namespaces/a/pods/b", b'{"metadata": {}}', {"X": "1"})
    writes = conn.sock.writes  # type: ignore[attr-defined]
    assert len(writes) == 1 and writes[0].startswith(b"PATCH /api/v1/namespaces/a/pods/b HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:1\r\n" in writes[0] and b"\r\nContent-Length: 16\r\n" in writes[0]
    assert writes[0].endswith(b'\r\n\r\n{"metadata": {}}')


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/api/v1/pods\r\nX-Injected: 1", {}),
        ("GET", "/api/v1/pods HTTP/1.1", {}),
        ("GET", "/api/v1/pods", {"Authorization": "Bearer a\r\nX-Injected: 1"}),
        ("GET", "/api/v1/pods", {"X-Bad\nName": "1"}),
        ("GET\r\n", "/", {}),
    ],
)
def test_a_request_that_would_split_is_refused_before_anything_is_sent(
    method: str, target: str, headers: dict[str, str]
) -> None:
    conn = Connection(Pool("http://127.0.0.1:1"))
    conn.sock = Recording()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="refusing"):
        conn.put(method, target, None, headers)
    assert conn.sock.writes == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "https://proxy.internal:3128", "http://"])
def test_a_proxy_that_cannot_be_used_is_refused_with_the_kubeconfig(proxy: str) -> None:
    with pytest.raises(ConfigError, match="proxy-url"):
        KubeHttp("https://127.0.0.1:6443", ca_file=None, proxy=proxy)


def test_an_origin_with_a_path_keeps_it(server: Loopback) -> None:
    """An apiserver behind a path (a proxy's /k8s/clusters/c-1) is reached under it."""
    http = KubeHttp(f"http://127.0.0.1:{server.port}/k8s/clusters/c-1/", ca_file=None)
    assert http.request("GET", "/api/v1/namespaces/a/pods/b", query={"limit": 1}) == {"kind": "Pod"}
    assert server.requests[0].startswith(b"GET /k8s/clusters/c-1/api/v1/namespaces/a/pods/b?limit=1 HTTP/1.1\r\n")


def _relay(a: socket.socket, b: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := a.recv(65536):
            b.sendall(data)
    with contextlib.suppress(OSError):
        b.shutdown(socket.SHUT_WR)


def test_requests_tunnel_through_an_http_proxy(server: Loopback) -> None:
    """A kubeconfig's http:// proxy-url: CONNECT to the apiserver, then the request (with its body) through it."""
    proxy = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        client, _ = proxy.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        seen.append(head)
        upstream = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()
        _relay(client, upstream)

    threading.Thread(target=serve, daemon=True).start()
    try:
        http = KubeHttp(
            f"http://127.0.0.1:{server.port}", ca_file=None, proxy=f"http://127.0.0.1:{proxy.getsockname()[1]}"
        )
        assert http.request("PATCH", "/api/v1/namespaces/a/pods/b", body={"metadata": {}}) == {"kind": "Pod"}
        assert seen[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.".encode())
        assert server.requests[0].startswith(b"PATCH /api/v1/namespaces/a/pods/b HTTP/1.1\r\n")
    finally:
        proxy.close()


def Scripted(*answers: bytes, close_after: int = 99) -> Loopback:
    """Answers each request with the next of ``answers``, byte for byte; a connection ends after ``close_after``."""
    left = list(answers)
    return Loopback(lambda: left.pop(0) if left else None, close_after)


def _pool(server: Loopback) -> Pool:
    return Pool(f"http://127.0.0.1:{server.port}", timeout=(2.0, 2.0))


def _get(pool: Pool) -> Any:
    return pool.send("GET", "/api/v1/namespaces/a/pods/b")


def test_a_chunked_answer_an_informational_one_and_one_that_ends_at_close_are_read_whole() -> None:
    server = Scripted(
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"b": 2}',
        close_after=2,
    )
    pool = _pool(server)
    first = _get(pool)
    assert (first.status, first.reason, first.body) == (200, "OK", b'{"a": 1}')
    second = _get(pool)  # the same connection: the first answer left it open
    assert (second.status, second.body) == (200, b'{"b": 2}') and server.accepted == 1


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a"',  # cut short
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a"',  # a chunk cut short
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # headers cut short
        b"NOT HTTP AT ALL\r\n\r\n",  # not an answer
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",  # two lengths: smuggling
    ],
)
def test_an_answer_cut_short_or_malformed_is_a_transport_error(answer: bytes) -> None:
    with pytest.raises(TRANSPORT_ERRORS):
        _get(_pool(Scripted(answer, close_after=1)))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",  # unasked
    ],
)
def test_a_connection_the_answer_closes_or_taints_is_not_reused(answer: bytes) -> None:
    server = Scripted(answer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", close_after=1)
    pool = _pool(server)
    assert _get(pool).body == b"{}"
    assert _get(pool).status == 200 and server.accepted == 2
