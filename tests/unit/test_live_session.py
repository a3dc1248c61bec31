"""What isolation does to a shell that is already connected, and what the responder does about it.

The socket-level proof is in tests/node/test_reverse_shell.py; here the decisions: which dataplane behaviour is in
force, what the record claims, when the policy escalates, and what the connection evidence says.
"""

from __future__ import annotations

import pytest

from responder.containment import sockets
from responder.containment.enforcement import resolve
from responder.intake.findings import Endpoint
from responder.policy.rules import parse_policy
from responder.ports import ClusterInfo
from responder.report.builder import build_report
from tests.notifications import notification
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import NS, POD, make, run, statuses

GKE = {"name": "c", "location": "us-east1"}


@pytest.fixture
def kube() -> FakeKube:
    """The suspect pod of the sample finding, managed by a Deployment (the shared fixture's workload)."""
    k = FakeKube()
    k.add_web_deployment(NS, POD)
    return k


@pytest.mark.parametrize(
    ("setting", "info", "mode"),
    [
        ("auto", ClusterInfo(**GKE, datapath_provider="ADVANCED_DATAPATH"), "established"),
        ("auto", ClusterInfo(**GKE, network_policy_enabled=True), "new-only"),
        ("auto", ClusterInfo(**GKE), "none"),
        ("auto", ClusterInfo(**GKE, datapath_provider="LEGACY_DATAPATH"), "none"),
        ("auto", None, "new-only"),  # a kubeconfig: unknown, so no cut is claimed
        ("established", None, "established"),
        ("none", ClusterInfo(**GKE, datapath_provider="ADVANCED_DATAPATH"), "none"),  # the operator's word wins
    ],
)
def test_the_dataplane_behaviour_in_force(setting: str, info: ClusterInfo | None, mode: str) -> None:
    assert resolve(setting, info).mode == mode  # type: ignore[arg-type]


def _isolate(outcome: object) -> dict[str, object]:
    action = next(a for a in outcome.record.actions if a.action == "isolate")  # type: ignore[attr-defined]
    return {"status": action.status.value, "reason": action.reason, **action.details}


def test_dataplane_v2_cuts_so_isolation_is_enough(kube: FakeKube) -> None:
    info = ClusterInfo(**GKE, datapath_provider="ADVANCED_DATAPATH")
    outcome = run(make(kube, info=info, netpol_enforcement="auto"))
    isolate = _isolate(outcome)
    assert isolate["established_connections"] == "cut" and isolate["dataplane"] == "GKE Dataplane V2 (Cilium)"
    assert isolate["session_survives"] is False
    assert "delete" not in statuses(outcome)
    assert outcome.record.severity == "NOTICE"
    assert (NS, POD) in kube.pods


def test_calico_cannot_cut_so_the_default_policy_captures_then_deletes(kube: FakeKube) -> None:
    info = ClusterInfo(**GKE, network_policy_enabled=True)
    outcome = run(make(kube, action=None, info=info, netpol_enforcement="auto"))
    isolate = _isolate(outcome)
    assert isolate["status"] == "succeeded"  # new connections are blocked: the writes did what they can
    assert isolate["established_connections"] == "not cut (new connections only)"
    assert "Calico" in str(isolate["dataplane"]) and "may still be alive" in str(isolate["reason"])
    order = [a.action for a in outcome.record.actions if a.action in {"isolate", "capture", "delete"}]
    assert order.index("capture") < order.index("delete"), order
    assert statuses(outcome)["delete"] == "succeeded"
    assert (NS, POD) not in kube.pods
    assert kube.execs == [(NS, POD)]  # the process tree was taken before the delete
    assert outcome.record.severity == "NOTICE"  # the session ended with the pod


def test_report_keeps_the_pod_isolated_and_says_the_shell_may_be_alive(kube: FakeKube) -> None:
    outcome = run(make(kube, action=None, netpol_enforcement="new-only", live_session="report"))
    isolate = _isolate(outcome)
    assert isolate["established_connections"] == "not cut (new connections only)"
    assert "delete" not in statuses(outcome)
    assert (NS, POD) in kube.pods
    assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
    response = build_report(outcome).response
    assert response is not None
    first = response.todo[0]
    assert first.startswith("Not contained: the reverse shell in"), first
    assert "established connections: not cut" in first and "kubectl delete pod" in first


def test_a_rule_can_choose_report_where_the_default_escalates(kube: FakeKube) -> None:
    policy = parse_policy(
        "defaults: {live_session: escalate}\n"
        "rules: [{name: r, actions: [{action: isolate, live_session: report}, {action: capture}]}]"
    )
    outcome = run(make(kube, action=None, policy=policy, netpol_enforcement="new-only"))
    assert "delete" not in statuses(outcome)
    assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")


def test_a_pod_isolation_cannot_contain_is_never_detached(kube: FakeKube) -> None:
    kube.add_pod(NS, "web-5d9c-ccccc", {"app": "web", "pod-template-hash": "5d9c"}, controller=("ReplicaSet", "w"))
    doc = notification(namespace=NS, pod="web-5d9c-ccccc", container="api")
    policy = parse_policy("rules: [{name: r, actions: [{action: isolate, detach: true, live_session: report}]}]")
    outcome = run(make(kube, action=None, policy=policy, vouch=doc, netpol_enforcement="none"), doc)
    isolate = _isolate(outcome)
    assert isolate["established_connections"] == "no enforcement"
    detach = next(a for a in outcome.record.actions if a.action == "detach")
    assert detach.status.value == "skipped" and detach.reason.startswith("not detached: isolation leaves"), detach
    assert kube.pods[(NS, "web-5d9c-ccccc")].labels["app"] == "web"  # still managed by its ReplicaSet


def test_detach_happens_where_isolation_cuts(kube: FakeKube) -> None:
    kube.add_pod(NS, "web-5d9c-ddddd", {"app": "web", "pod-template-hash": "5d9c"}, controller=("ReplicaSet", "w"))
    doc = notification(namespace=NS, pod="web-5d9c-ddddd", container="api")
    policy = parse_policy("rules: [{name: r, actions: [{action: isolate, detach: true}]}]")
    run(make(kube, action=None, policy=policy, vouch=doc, netpol_enforcement="established"), doc)
    assert "app" not in kube.pods[(NS, "web-5d9c-ddddd")].labels


def test_the_capture_matches_the_findings_connection_among_the_containers_sockets(kube: FakeKube) -> None:
    outcome = run(make(kube))
    assert kube.socket_reads == [(NS, POD)]
    assert outcome.evidence is not None and outcome.evidence.shell_connection is not None
    connection = outcome.evidence.shell_connection
    assert connection["matched"] and connection["open"], connection
    assert connection["socket"] == {"local": "10.48.2.17:51734", "remote": "198.51.100.77:9001", "state": "ESTABLISHED"}
    inspect = build_report(outcome).inspect
    assert inspect is not None and inspect.connection == connection
    assert inspect.sockets is not None and len(inspect.sockets) == 2


def test_a_dry_run_reads_no_sockets(kube: FakeKube) -> None:
    outcome = run(make(kube, mode="dry-run"))
    assert kube.socket_reads == []
    assert outcome.evidence is not None
    assert any(n.startswith("sockets: not captured: dry-run") for n in outcome.evidence.notes)


# ---------------------------------------------------------------------------------------------- parsing and matching

TCP6 = (
    "  sl  local_address                         remote_address                        st\n"
    # ::ffff:10.0.0.5:8080 <- ::ffff:10.0.0.9:40000 ESTABLISHED (an IPv4 peer on a v6 socket)
    "   0: 0000000000000000FFFF00000500000A:1F90 0000000000000000FFFF00000900000A:9C40 01 0 0\n"
    # 2001:db8::1:4444 -> 2001:db8::2:50000 CLOSE_WAIT
    "   1: B80D0120000000000000000001000000:115C B80D0120000000000000000002000000:C350 08 0 0\n"
)


def test_tcp6_entries_and_ipv4_mapped_peers_parse() -> None:
    table = sockets.parse(TCP6)
    assert table.odd == 0
    found = table.sockets
    assert [s.as_dict() for s in found] == [
        {"local": "10.0.0.5:8080", "remote": "10.0.0.9:40000", "state": "ESTABLISHED"},
        {"local": "[2001:db8::1]:4444", "remote": "[2001:db8::2]:50000", "state": "CLOSE_WAIT"},
    ]
    closing = sockets.the_connection(found, Endpoint(ip="2001:db8::2", port=50000), None)
    assert closing["matched"] and closing["open"] is False and "CLOSE_WAIT" in str(closing["why"])


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b]0;owned\x07   0: 0100007F:0050 0100007F:0050 01",
        "   0: 0100007F:0050 0100007F:0050 ZZ 0 0",
        "   0: 7F:50 7F:50 01 0 0",
        "x" * 10_000,
        "   0: 0100007F:0050\n0100007F:0050 01 0 0",
    ],
)
def test_lines_that_are_not_socket_entries_are_counted_never_interpreted(hostile: str) -> None:
    table = sockets.parse(hostile)
    assert table.sockets == [] and table.entries == 0 and table.odd >= 1


def test_at_most_max_sockets_are_kept() -> None:
    line = "   0: 0100007F:0050 0100007F:0051 01 0 0\n"
    table = sockets.parse(line * (sockets.MAX_SOCKETS + 50))
    assert len(table.sockets) == sockets.MAX_SOCKETS and table.entries == sockets.MAX_SOCKETS + 50


def test_no_socket_to_the_remote_end_says_so() -> None:
    found = sockets.parse("   0: 0100007F:0050 0100007F:0051 01 0 0\n").sockets
    verdict = sockets.the_connection(found, Endpoint(ip="192.0.2.1", port=4444), None)
    assert verdict["matched"] is False and verdict["open"] is False
    assert "192.0.2.1:4444" in str(verdict["why"])
