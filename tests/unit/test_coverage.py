"""What a deployment covers (issue 32): its fleet of clusters, and its own canary.

A finding in a cluster outside ``RESPONDER_FLEET`` and the deployment's canary are both left alone, each only on SCC's
word, and neither reaches a cluster. Fakes for the cluster, SCC and Pub/Sub (tests/unit/fakes.py); every assertion is
about the record (verdict, code, outcome, severity), what was connected or written, and what SCC was asked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from responder.bootstrap import build_dependencies
from responder.config import Settings, load_settings
from responder.errors import ConfigError, TransientError
from responder.handler import handle, reset
from responder.policy.rules import PolicyEngine, parse_policy
from responder.service import Dependencies, Responder
from tests.notifications import notification, structured_cloudevent
from tests.support.common import deliver
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube, FakePublisher
from tests.unit.test_one_record import run_cli

NS, POD = "storefront", "cart-api-5c8d7b9f4-q7w2z"
HOME = "projects/example-retail-prod/locations/us-east1/clusters/retail-gke"  # the cluster the notifications name
ELSEWHERE = "projects/example-retail-dev/locations/europe-west1/clusters/dev-gke"
CANARY_SOURCE = "organizations/987654321012/sources/99887766554433221100"
CANARY_NAME = f"{CANARY_SOURCE}/findings/rsrcanary0001"
ENFORCE = "defaults: {mode: enforce, report_topic: projects/sec-project/topics/reports}\nrules: []"


class World:
    """The responder and the fakes it talks to."""

    def __init__(
        self, *, fleet: list[str] | None = None, canary_source: str | None = CANARY_SOURCE, scc: bool = True
    ) -> None:
        self.kube = FakeKube()
        self.kube.add_pod(NS, POD, {"app": "cart"})
        self.connector = FakeConnector(self.kube)
        self.findings = FakeFindings()
        self.publisher = FakePublisher()
        settings = Settings(mode="enforce", fleet=fleet, canary_source=canary_source)
        self.responder = Responder(
            Dependencies(
                settings=settings,
                policy=PolicyEngine(parse_policy(ENFORCE), settings),
                connector=self.connector,
                findings_api=self.findings if scc else None,  # None: a replay without Google APIs
                publisher=self.publisher,
            )
        )

    def untouched(self) -> bool:
        """No cluster connected, nothing read or written there, no marks, no report."""
        return (
            self.connector.connected == []
            and self.kube.calls == []
            and self.kube.writes == []
            and self.findings.marks_updates == []
            and self.findings.state_changes == []
            and self.publisher.messages == []
        )


def canary_notification(**finding_overrides: Any) -> dict[str, Any]:
    """What the canary job's finding looks like when SCC notifies it: whatever the job set, no pod, no cluster."""
    doc = notification(**finding_overrides)
    f = doc["finding"]
    f["name"] = CANARY_NAME
    f["canonicalName"] = CANARY_NAME
    f["parent"] = CANARY_SOURCE
    f["resourceName"] = "//rsr.example/canary"
    doc["resource"] = {"name": "//rsr.example/canary"}
    f["sourceProperties"] = {"canary": "true"}
    f.pop("kubernetes", None)
    f.pop("securityMarks", None)
    return doc


def vouch_canary(findings: FakeFindings, doc: dict[str, Any]) -> None:
    """The canary job's finding, as SCC holds it."""
    f = doc["finding"]
    event_time = datetime.fromisoformat(f["eventTime"].replace("Z", "+00:00"))
    findings.add(f["name"], category=f["category"], resource_name=f["resourceName"], event_time=event_time)


# ------------------------------------------------------------------------------------------------------ the fleet


def test_a_finding_in_the_fleet_is_handled_as_before() -> None:
    world = World(fleet=[HOME, ELSEWHERE])
    doc = notification()
    world.findings.add_from(doc)
    record = deliver(world.responder, doc).record
    assert (record.verdict, record.code, record.outcome) == ("act", "reverse_shell", "done")
    assert [ref.path for ref in world.connector.connected] == [HOME]
    assert "patch pod " + POD in world.kube.writes


def test_a_vouched_finding_outside_the_fleet_is_recorded_and_nothing_is_reached() -> None:
    world = World(fleet=[ELSEWHERE])
    doc = notification()
    world.findings.add_from(doc)
    outcome = deliver(world.responder, doc)
    record = outcome.record
    assert (record.verdict, record.code, record.outcome, record.severity) == (
        "ignore",
        "outside_fleet",
        "done",
        "WARNING",
    )
    assert record.cluster == HOME
    assert HOME in record.reason
    assert "real" in record.reason
    assert "does not cover" in record.reason
    assert record.verification is not None
    assert record.verification.status == "verified"
    assert world.untouched()
    assert world.findings.calls == ["get_finding"]  # SCC vouched; nothing was written back to it
    assert not outcome.retry


def test_a_forged_finding_outside_the_fleet_is_a_suspected_forgery_not_a_forgotten_cluster() -> None:
    world = World(fleet=[ELSEWHERE])
    record = deliver(world.responder, notification()).record  # SCC does not know it
    assert (record.verdict, record.code, record.outcome, record.severity) == (
        "reject",
        "suspected_forgery",
        "done",
        "ERROR",
    )
    assert world.untouched()


def test_a_finding_outside_the_fleet_is_retried_while_scc_cannot_answer() -> None:
    world = World(fleet=[ELSEWHERE])
    doc = notification()
    world.findings.add_from(doc)
    world.findings.raise_on["get_finding"] = TransientError("SCC 503")
    outcome = deliver(world.responder, doc)
    assert (outcome.record.code, outcome.record.outcome, outcome.record.severity) == ("unverified", "retry", "ERROR")
    assert outcome.retry
    assert world.untouched()


def test_without_a_fleet_every_cluster_is_covered() -> None:
    for fleet in (None, []):
        world = World(fleet=fleet)
        doc = notification()
        world.findings.add_from(doc)
        assert deliver(world.responder, doc).record.code == "reverse_shell"
        assert [ref.path for ref in world.connector.connected] == [HOME]


def test_the_fleet_setting_is_a_list_of_validated_cluster_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONDER_FLEET", f" {HOME} ,{ELSEWHERE},")
    settings = load_settings()
    assert settings.fleet == [HOME, ELSEWHERE]
    assert build_dependencies(settings).settings.fleet == [HOME, ELSEWHERE]
    monkeypatch.setenv("RESPONDER_FLEET", "")
    assert Responder(build_dependencies(load_settings())).coverage.scope.fleet == frozenset()


@pytest.mark.parametrize(
    "entry",
    [
        "projects/example-retail-prod/zones/us-east1-b/clusters/retail-gke",  # not the canonical form
        "//container.googleapis.com/projects/example-retail-prod/locations/us-east1/clusters/retail-gke",
        "projects/Bad_Project/locations/us-east1/clusters/retail-gke",
        "projects/example-retail-prod/locations/us-east1/clusters/retail-gke/k8s/namespaces/x",
        "projects/example-retail-prod/locations/us-east1/clusters/retail\ngke",
        "retail-gke",
    ],
)
def test_a_bad_fleet_entry_refuses_the_configuration(entry: str) -> None:
    with pytest.raises(ConfigError, match="RESPONDER_FLEET"):
        World(fleet=[HOME, entry])


def test_a_bad_fleet_entry_is_a_config_error_record_and_the_message_is_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESPONDER_FLEET", "projects/p/locations/us-east1/clusters/c")  # project IDs have 6+ chars
    reset()
    try:
        event = structured_cloudevent(notification())
        data = event.pop("data")
        with pytest.raises(ConfigError):
            handle(CloudEvent(event, data))
    finally:
        reset()
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert (line["code"], line["outcome"]) == ("config_error", "retry")
    assert "RESPONDER_FLEET" in line["reason"]


# ------------------------------------------------------------------------------------------------------ the canary


def test_a_vouched_canary_is_recorded_and_touches_nothing() -> None:
    world = World()
    doc = canary_notification()
    vouch_canary(world.findings, doc)
    outcome = deliver(world.responder, doc)
    record = outcome.record
    assert (record.verdict, record.code, record.outcome, record.severity) == ("ignore", "canary", "done", "INFO")
    assert record.finding == CANARY_NAME
    assert record.verification is not None
    assert record.verification.status == "verified"
    assert record.actions == []
    assert record.writebacks == []
    assert world.untouched()
    assert world.findings.calls == ["get_finding"]
    assert not outcome.retry


def test_a_canary_source_message_scc_does_not_hold_is_a_suspected_forgery() -> None:
    world = World()
    record = deliver(world.responder, canary_notification()).record
    assert (record.verdict, record.code, record.outcome, record.severity) == (
        "reject",
        "suspected_forgery",
        "done",
        "ERROR",
    )
    assert record.verification is not None
    assert record.verification.status == "refuted"
    assert world.untouched()


def test_a_canary_whose_message_claims_a_later_event_than_scc_holds_is_a_suspected_forgery() -> None:
    world = World()
    doc = canary_notification()
    vouch_canary(world.findings, doc)
    later = datetime.now(UTC) + timedelta(hours=1)
    doc["finding"]["eventTime"] = later.isoformat().replace("+00:00", "Z")
    assert deliver(world.responder, doc).record.code == "suspected_forgery"
    assert world.untouched()


def test_a_canary_is_retried_while_scc_cannot_answer() -> None:
    world = World()
    doc = canary_notification()
    vouch_canary(world.findings, doc)
    world.findings.raise_on["get_finding"] = TransientError("SCC 503")
    outcome = deliver(world.responder, doc)
    assert outcome.retry
    assert (outcome.record.code, outcome.record.outcome, outcome.record.severity) == ("unverified", "retry", "ERROR")
    assert "canary source" in outcome.record.reason
    assert world.untouched()


def test_a_canary_without_scc_here_is_retried_never_counted() -> None:
    world = World(scc=False)
    outcome = deliver(world.responder, canary_notification())
    assert outcome.retry
    assert outcome.record.code != "canary"
    assert world.untouched()


def test_a_canary_naming_a_cluster_outside_the_fleet_is_still_the_canary() -> None:
    world = World(fleet=[ELSEWHERE])
    doc = notification()  # the canary job may well name a real-looking pod in some cluster
    for key in ("name", "canonicalName"):
        doc["finding"][key] = CANARY_NAME
    world.findings.add_from(doc)
    record = deliver(world.responder, doc).record
    assert (record.verdict, record.code, record.severity) == ("ignore", "canary", "INFO")
    assert world.untouched()


def test_a_redelivered_canary_is_still_the_canary_and_writes_nothing() -> None:
    world = World()
    doc = canary_notification()
    vouch_canary(world.findings, doc)
    codes = [deliver(world.responder, doc, attempt=n).record.code for n in (1, 2, 5)]
    assert codes == ["canary", "canary", "canary"]
    assert world.untouched()
    assert world.findings.calls == ["get_finding"] * 3


def test_a_finding_of_another_source_is_no_canary() -> None:
    world = World()
    doc = notification()
    world.findings.add_from(doc)
    assert deliver(world.responder, doc).record.code == "reverse_shell"


@pytest.mark.parametrize(
    "source",
    [
        "organizations/org/sources/1",
        "folders/123/sources/1",
        "organizations/123/sources/1/findings/2",
        "projects/Bad_Project/sources/1",
        "organizations/123/sources/a b",
    ],
)
def test_a_bad_canary_source_refuses_the_configuration(source: str) -> None:
    with pytest.raises(ConfigError, match="RESPONDER_CANARY_SOURCE"):
        World(canary_source=source)


# ------------------------------------------------------------------------------------------------------ plan agrees


def test_plan_says_what_the_record_will_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONDER_FLEET", ELSEWHERE)
    monkeypatch.setenv("RESPONDER_CANARY_SOURCE", CANARY_SOURCE)
    outside, canary = tmp_path / "outside.json", tmp_path / "canary.json"
    outside.write_text(json.dumps(notification()))
    canary.write_text(json.dumps(canary_notification()))
    code, out, _ = run_cli("plan", "--json", str(outside))
    shown = json.loads(out)
    assert (code, shown["verdict"], shown["code"]) == (0, "ignore", "outside_fleet")
    assert HOME in shown["reason"]
    code, out, _ = run_cli("plan", str(canary))
    assert code == 0
    assert out.startswith("ignore: canary:")
