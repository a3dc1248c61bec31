"""KubePort.read_together over the real transport: the reads are on the wire at once from one thread (the server
answers none until it has them all), each answer or error lands in its own slot, a transient failure is made again
alone with its retries, and a connection lost under one read costs that read alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from responder.adapters.http_pool import TRANSPORT_ERRORS, Answer
from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_http import KubeHttp
from responder.errors import Forbidden, NotFound
from responder.ports import ConfigMapView, KubeRead, NetworkPolicyView, PodView

POD = "/api/v1/namespaces/shop/pods/web-0"
POLICIES = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"
IDENTITIES = "/api/v1/namespaces/responder-system/configmaps/ids"
POD_JSON = {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}}, "spec": {}}


class Apiserver(ThreadingHTTPServer):
    """Answers by path; ``together``: how many requests must have arrived before any is answered (a client that
    sent them one after the other would wait out the barrier and fail)."""

    daemon_threads = True

    def __init__(self, answers: dict[str, list[tuple[int, Any]]], together: int = 1) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.barrier = threading.Barrier(together, timeout=5)
        self.seen: list[tuple[str, int]] = []  # (path, client port): which connection carried it
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Apiserver

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.client_address[1]))
            queue = self.server.answers[self.path]
            status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        self.server.barrier.wait()
        if status == 0:
            self.close_connection = True  # drop the connection without an answer
            return
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def apiserver(request: pytest.FixtureRequest) -> Iterator[Apiserver]:
    answers, together = request.param
    server = Apiserver(answers, together)
    yield server
    server.shutdown()
    server.server_close()


def _reads() -> list[KubeRead]:
    return [
        KubeRead("get_pod", ("shop", "web-0")),
        KubeRead("list_network_policies", ("shop",)),
        KubeRead("get_config_map", ("responder-system", "ids")),
    ]


def _outcome(answer: Any) -> object:
    failed = answer.exception()
    return failed if failed is not None else answer.result()


ALL_AT_ONCE = (
    {
        POD: [(200, POD_JSON)],
        POLICIES: [(200, {"items": [{"metadata": {"name": "allow-all"}, "spec": {"podSelector": {}}}]})],
        IDENTITIES: [(404, {"message": 'configmaps "ids" not found'})],
    },
    3,
)


@pytest.mark.parametrize("apiserver", [ALL_AT_ONCE], indirect=True)
def test_the_reads_are_on_the_wire_at_once_and_each_answer_lands_in_its_slot(apiserver: Apiserver) -> None:
    kube = KubeAdapter(http=KubeHttp(apiserver.origin, ca_file=None))
    pod, policies, identities = (_outcome(a) for a in kube.read_together(_reads()))
    assert isinstance(pod, PodView) and pod.uid == "u-1" and pod.labels == {"app": "web"}
    assert isinstance(policies, list) and [p.name for p in policies] == ["allow-all"]
    assert isinstance(policies[0], NetworkPolicyView) and policies[0].namespace == "shop"  # list items omit it
    assert isinstance(identities, NotFound) and "get configmap responder-system/ids" in str(identities)
    assert len({port for _, port in apiserver.seen}) == 3  # a connection each
    # The connections that were answered are kept: the next round opens none for them.
    apiserver.barrier = threading.Barrier(1)
    ports = {port for _, port in apiserver.seen}
    assert isinstance(_outcome(kube.read_together(_reads()[:1])[0]), PodView)
    assert apiserver.seen[-1][1] in ports


FLAKY = ({POD: [(503, {"message": "etcd leader changed"}), (200, POD_JSON)], IDENTITIES: [(403, {})]}, 1)


@pytest.mark.parametrize("apiserver", [FLAKY], indirect=True)
def test_a_transient_failure_is_made_again_alone_and_a_refusal_is_not(apiserver: Apiserver) -> None:
    kube = KubeAdapter(http=KubeHttp(apiserver.origin, ca_file=None))
    pod, identities = (_outcome(a) for a in kube.read_together([_reads()[0], _reads()[2]]))
    assert isinstance(pod, PodView) and pod.name == "web-0"  # the 503, then the retry alone
    assert isinstance(identities, Forbidden)  # never "not there", never retried
    assert [p for p, _ in apiserver.seen].count(POD) == 2 and [p for p, _ in apiserver.seen].count(IDENTITIES) == 1


DROPPED = (
    {
        POD: [(0, None), (200, POD_JSON)],
        IDENTITIES: [(200, {"metadata": {"name": "ids", "namespace": "responder-system"}})],
    },
    1,
)


@pytest.mark.parametrize("apiserver", [DROPPED], indirect=True)
def test_a_connection_lost_under_one_read_costs_that_read_alone(apiserver: Apiserver) -> None:
    http = KubeHttp(apiserver.origin, ca_file=None)
    lost, answered = http._connections().send_together([("GET", POD, None, {}), ("GET", IDENTITIES, None, {})])
    assert isinstance(lost, TRANSPORT_ERRORS)  # handed back in its slot, not raised
    assert isinstance(answered, Answer) and answered.status == 200
    kube = KubeAdapter(http=http)
    pod, identities = (_outcome(a) for a in kube.read_together([_reads()[0], _reads()[2]]))
    assert isinstance(pod, PodView) and isinstance(identities, ConfigMapView) and identities.name == "ids"


@pytest.mark.parametrize(
    "apiserver", [({"/api/v1/nodes/n-1": [(200, {"metadata": {"name": "n-1"}})]}, 1)], indirect=True
)
def test_a_read_that_cannot_go_together_is_made_alone(apiserver: Apiserver) -> None:
    kube = KubeAdapter(http=KubeHttp(apiserver.origin, ca_file=None))
    (node,) = kube.read_together([KubeRead("get_node", ("n-1",))])
    assert node.result().name == "n-1"


@pytest.mark.parametrize("apiserver", [({POD: [(200, POD_JSON)]}, 1)], indirect=True)
def test_a_read_that_would_split_its_request_is_refused_and_its_connection_closed(apiserver: Apiserver) -> None:
    http = KubeHttp(apiserver.origin, ca_file=None)
    http.request("GET", POD)
    (warm,) = http._connections()._idle  # kept open: the next read takes it
    with pytest.raises(ValueError, match="refusing"):
        http.get_together([("/api/v1/namespaces/shop/pods/x\r\nX-Injected: 1", None)])
    assert warm.sock is None and http._connections()._idle == []  # closed, never handed to another request
