"""The exec adapter: how a command ended comes from the status channel, and a read is bound to the pod's UID.

The websocket and the official client's stream are replaced by frame scripts (the real ones run in tests/contract on
the real node); the apiserver's pod read by a stub, so each branch of the binding rule is pinned here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import websocket

from responder.adapters import kube_exec
from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_http import KubeHttp
from responder.errors import NotFound, PodReplaced, TransientError, Unavailable
from responder.ports import ExecOutput, PodView

BINARY, CLOSE = websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_CLOSE
SUCCESS = {"metadata": {}, "status": "Success"}
EXIT_1 = {
    "metadata": {},
    "status": "Failure",
    "message": "command terminated with non-zero exit code: error executing command [cat /proc/net/tcp6], exit code 1",
    "reason": "NonZeroExitCode",
    "details": {"causes": [{"reason": "ExitCode", "message": "1"}]},
}
NO_START = {
    "metadata": {},
    "status": "Failure",
    "message": 'OCI runtime exec failed: exec: "ps": executable file not found in $PATH: unknown',
    "reason": "InternalError",
}


def frame(channel: int, data: bytes | dict[str, Any]) -> tuple[int, bytes]:
    body = json.dumps(data).encode() if isinstance(data, dict) else data
    return BINARY, bytes([channel]) + body


class _Socket:
    """A websocket that hands out the frames of a script, then the server's close."""

    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self.frames: Iterator[tuple[int, bytes]] = iter(frames)

    def settimeout(self, timeout: float) -> None:
        pass

    def recv_data(self) -> tuple[int, bytes]:
        return next(self.frames, (CLOSE, b""))


def read(frames: list[tuple[int, bytes]], limit_bytes: int = 1024) -> ExecOutput:
    return kube_exec._read(_Socket(frames), time.monotonic() + 5, 5.0, limit_bytes)


# ------------------------------------------------------------------------------------------ the status channel


def test_a_clean_exit_is_exit_code_zero() -> None:
    out = read([frame(1, b"sl local_address\n"), frame(3, SUCCESS)])
    assert out == ExecOutput(text="sl local_address\n", exit_code=0)


def test_a_non_zero_exit_keeps_the_output_and_gives_the_code_and_message() -> None:
    out = read([frame(1, b"  sl  local_address\n"), frame(2, b"cat: /proc/net/tcp6: No such file\n"), frame(3, EXIT_1)])
    assert out.text == "  sl  local_address\ncat: /proc/net/tcp6: No such file\n"
    assert (out.exit_code, out.failure) == (1, EXIT_1["message"])


def test_a_command_that_could_not_start_has_a_failure_and_no_exit_code() -> None:
    out = read([frame(3, NO_START)])
    assert (out.text, out.exit_code, out.failure) == ("", None, NO_START["message"])


def test_a_stream_that_ends_without_a_status_says_nothing_about_success() -> None:
    out = read([frame(1, b"partial")])
    assert (out.text, out.exit_code, out.failure) == ("partial", None, None)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_status_frame_that_is_not_a_status_is_a_failure_to_say_what_happened(raw: bytes) -> None:
    exit_code, failure = kube_exec.status(raw)
    assert exit_code is None and failure is not None and failure.startswith("unreadable exec status")


def test_output_over_the_cap_is_cut_and_its_end_is_unknown() -> None:
    out = read([frame(1, b"x" * 30), frame(1, b"y" * 30), frame(3, SUCCESS)], limit_bytes=40)
    assert out == ExecOutput(text="x" * 30 + "y" * 10, truncated_at=40)


def test_the_container_cannot_forge_its_status_on_stdout() -> None:
    out = read([frame(1, json.dumps(SUCCESS).encode()), frame(3, EXIT_1)])
    assert out.exit_code == 1


class _Stream:
    """The official client's WSClient, as ``run_via_client`` drives it (behind an HTTP proxy)."""

    def __init__(self, stdout: list[str], status: str) -> None:
        self.stdout, self.status, self.open = list(stdout), status, True

    def is_open(self) -> bool:
        return self.open

    def update(self, timeout: float) -> None:
        self.open = bool(self.stdout)

    def peek_stdout(self) -> bool:
        return bool(self.stdout)

    def read_stdout(self) -> str:
        return self.stdout.pop(0)

    def peek_stderr(self) -> bool:
        return False

    def read_stderr(self) -> str:
        return ""

    def read_channel(self, channel: int) -> str:
        assert channel == 3
        return self.status

    def close(self) -> None:
        self.open = False


def test_the_client_stream_reads_the_same_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes.stream

    resp = _Stream(["  sl  local_address\n"], json.dumps(EXIT_1))
    monkeypatch.setattr(kubernetes.stream, "stream", lambda *args, **kwargs: resp)
    core = SimpleNamespace(connect_get_namespaced_pod_exec=None)
    out = kube_exec.run_via_client(core, "shop", "web-1", "api", ["cat", "/proc/net/tcp"], 5.0, 1024)
    assert (out.text, out.exit_code, out.failure) == ("  sl  local_address\n", 1, EXIT_1["message"])


# ------------------------------------------------------------------------------------- bound to the pod's UID


class _Adapter(KubeAdapter):
    """The real adapter, its exec transport and pod read scripted: ``pods`` is what each pod read answers."""

    def __init__(self, *pods: str | Exception) -> None:
        super().__init__(http=KubeHttp("https://127.0.0.1:1", ca_file=None))
        self.pods = list(pods)
        self.reads = 0

    def get_pod(self, namespace: str, name: str) -> PodView:
        self.reads += 1
        answer = self.pods.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return PodView(namespace=namespace, name=name, uid=answer)


def ps(adapter: KubeAdapter, expected_uid: str | None = "uid-1") -> ExecOutput:
    return adapter.exec("shop", "web-0", "api", ["ps", "axjf"], 5.0, 1024, expected_uid=expected_uid)


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> ExecOutput:
    out = ExecOutput(text="  PID COMMAND\n", exit_code=0)
    monkeypatch.setattr(kube_exec, "run", lambda *args: out)
    return out


def test_output_of_the_pod_that_stayed_is_returned_after_one_read(printed: ExecOutput) -> None:
    adapter = _Adapter("uid-1")
    assert ps(adapter) == printed and adapter.reads == 1


def test_unbound_reads_cost_nothing(printed: ExecOutput) -> None:
    adapter = _Adapter()
    assert ps(adapter, expected_uid=None) == printed and adapter.reads == 0


@pytest.mark.parametrize(("answer", "actual"), [("uid-2", "uid-2"), (NotFound("pod shop/web-0"), None)])
def test_output_is_refused_when_the_name_is_another_pod_or_none(
    printed: ExecOutput, answer: str | Exception, actual: str | None
) -> None:
    with pytest.raises(PodReplaced) as refused:
        ps(_Adapter(answer))
    assert (refused.value.expected_uid, refused.value.actual_uid) == ("uid-1", actual)


def test_output_that_cannot_be_bound_is_not_returned(printed: ExecOutput) -> None:
    with pytest.raises(Unavailable, match="could not confirm that pod shop/web-0 is still uid uid-1"):
        ps(_Adapter(TransientError("get pod: 503")))


def test_a_failure_in_a_replacement_is_reported_as_the_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: Any) -> ExecOutput:
        raise Unavailable("exec unavailable: container api not found")

    monkeypatch.setattr(kube_exec, "run", fails)
    with pytest.raises(PodReplaced):
        ps(_Adapter("uid-2"))
    with pytest.raises(Unavailable, match="container api not found"):  # the pod's own failure keeps its reason
        ps(_Adapter("uid-1"))
    with pytest.raises(Unavailable, match="container api not found"):  # gone: the failure says what it says
        ps(_Adapter(NotFound("pod shop/web-0")))
