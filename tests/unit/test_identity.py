"""The quarantined pod's identity (issue 31): its service-account token may not write once the pod is quarantined.

What exists afterwards on the in-memory cluster: the identity guard's parameter
(``responder-system/rsr-quarantined-identities``) names the pod's UID and its service account exactly while the pod
is quarantined: added right after the isolation, kept by a redelivery (restored if lost), removed by a refuted
message's rollback and by ``release``. The admission policy that reads it is proven on the live apiserver
(tests/node/test_identity_live.py).
"""

from __future__ import annotations

import pytest

from responder.aftercare.release import ReleaseRequest
from responder.aftercare.status import collect_status, render_table
from responder.containment import identity
from responder.containment.identity import IDENTITIES, PRUNE_AT, account, entry
from responder.containment.keys import QUARANTINE_LABEL
from responder.errors import Forbidden
from responder.ports import LabelSelector, PodView, ServiceAccountView
from responder.report.builder import build_report
from responder.report.markdown import render_markdown
from tests.notifications import notification
from tests.support.common import acts, deliver
from tests.unit.fakes import FakeFindings, FakeKube
from tests.unit.test_containment import make, statuses
from tests.unit.test_release import releaser

NS, POD, OWN = "shop", "web-5d9c-abcde", "responder-system"
FINDING = notification(namespace=NS, pod=POD, container="api", name_suffix="identity")


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add_web_deployment(NS, POD, "web-5d9c-other")
    k.add_policy(NS, "allow-web", LabelSelector(match_labels={"app": "web"}))
    return k


def identities(kube: FakeKube) -> dict[str, str]:
    held = kube.config_maps.get((OWN, IDENTITIES))
    return dict(held.data) if held else {}


def pod(kube: FakeKube, name: str = POD) -> PodView:
    return kube.pods[(NS, name)]


def test_a_quarantined_pod_s_token_is_listed_right_after_its_isolation(kube: FakeKube) -> None:
    outcome = deliver(make(kube, vouch=FINDING), FINDING)
    assert identities(kube) == {pod(kube).uid: f"system:serviceaccount:{NS}:default {NS}/{POD}"}
    assert pod(kube, "web-5d9c-other").uid not in identities(kube)  # a replica that is not quarantined writes on
    steps = [a.action for a in outcome.record.actions]
    assert steps.index("identity") == steps.index("isolate") + 1  # before the label, the capture, anything else
    result = acts(outcome)["identity"]
    assert result.status.value == "succeeded"
    assert "system:serviceaccount:shop:default" in result.reason and "reads with it are not refused" in result.reason
    assert outcome.record.outcome == "done"


def test_a_redelivery_writes_nothing_more_and_restores_a_lost_entry(kube: FakeKube) -> None:
    responder = make(kube, vouch=FINDING)
    deliver(responder, FINDING)
    written = kube.config_maps[(OWN, IDENTITIES)].resource_version
    again = deliver(responder, FINDING, attempt=2)
    assert kube.config_maps[(OWN, IDENTITIES)].resource_version == written
    assert again.record.outcome == "done"

    del kube.config_maps[(OWN, IDENTITIES)]  # someone deleted the parameter: the policy now refuses nothing
    restored = deliver(make(kube, vouch=FINDING), FINDING, attempt=3)
    assert identities(kube) == {pod(kube).uid: entry(pod(kube))}
    assert restored.record.code != "duplicate" and acts(restored)["identity"].status.value == "succeeded"


def test_dry_run_plans_it_and_writes_nothing(kube: FakeKube) -> None:
    outcome = deliver(make(kube, mode="dry-run", vouch=FINDING), FINDING)
    assert identities(kube) == {} and (OWN, IDENTITIES) not in kube.config_maps
    planned = acts(outcome)["identity"]
    assert planned.status.value == "skipped" and planned.reason.startswith("dry-run: would add pod web-5d9c-abcde")


def test_a_refuted_message_s_rollback_takes_the_identity_quarantine_back(kube: FakeKube) -> None:
    forged = notification(namespace=NS, pod=POD, container="api", name_suffix="forged")
    outcome = deliver(make(kube, findings=FakeFindings()), forged)  # SCC does not know it
    assert outcome.record.code == "suspected_forgery"
    assert QUARANTINE_LABEL not in pod(kube).labels and identities(kube) == {}
    assert "its token may write again" in acts(outcome)["rollback"].reason


def test_a_rollback_that_cannot_lift_the_identity_is_retried(kube: FakeKube) -> None:
    forged = notification(namespace=NS, pod=POD, container="api", name_suffix="forged")
    responder = make(kube, findings=FakeFindings())
    kube.fail_next["patch_config_map_data"] = 1  # the identity is listed (create), then its removal hits a 503
    outcome = deliver(responder, forged)
    assert outcome.record.outcome == "retry" and pod(kube).uid in identities(kube)
    deliver(responder, forged, attempt=2)
    assert identities(kube) == {}


def test_release_lifts_it_and_a_dry_run_release_only_says_so(kube: FakeKube) -> None:
    deliver(make(kube, vouch=FINDING), FINDING)
    planned = releaser(kube).release(ReleaseRequest(target=f"{NS}/{POD}", without_marks=True))
    assert pod(kube).uid in identities(kube)
    assert any(a.action == "identity" and "may write again" in a.reason for a in planned.record.actions)
    done = releaser(kube).release(ReleaseRequest(target=f"{NS}/{POD}", apply=True, without_marks=True))
    assert identities(kube) == {}
    assert {a.action: a.status.value for a in done.record.actions}["identity"] == "succeeded"


def test_entries_of_pods_that_are_gone_are_pruned_once_the_list_is_long(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "PRUNE_AT", 2)
    other = pod(kube, "web-5d9c-other")
    stale = {
        "11111111-1111-1111-1111-111111111111": f"system:serviceaccount:{NS}:default {NS}/web-5d9c-deleted",
        "22222222-2222-2222-2222-222222222222": f"system:serviceaccount:{NS}:default {NS}/web-5d9c-other",  # replaced
        other.uid: entry(other),  # still standing: kept
    }
    kube.create_config_map(OWN, IDENTITIES, stale)
    deliver(make(kube, vouch=FINDING), FINDING)
    assert identities(kube) == {other.uid: entry(other), pod(kube).uid: entry(pod(kube))}
    assert PRUNE_AT > 100  # the shipped threshold prunes only a long list (each entry costs a pod read)


def test_a_concurrent_writer_between_the_read_and_the_write_loses_nothing(kube: FakeKube) -> None:
    """Another instance adds its pod after this one read the parameter: the merge patch sets only this pod's key,
    so both entries stay, with no conflict to retry (a worm quarantines many pods at once)."""
    other = pod(kube, "web-5d9c-other")
    real_patch = kube.patch_config_map_data

    def racing(namespace: str, name: str, data: dict[str, str | None]) -> object:
        kube.patch_config_map_data = real_patch  # type: ignore[method-assign]
        real_patch(namespace, name, {other.uid: entry(other)})  # the other instance's write lands first
        return real_patch(namespace, name, data)

    kube.create_config_map(OWN, IDENTITIES, {})
    kube.patch_config_map_data = racing  # type: ignore[method-assign]
    deliver(make(kube, vouch=FINDING), FINDING)
    assert identities(kube) == {other.uid: entry(other), pod(kube).uid: entry(pod(kube))}


def test_a_parameter_created_by_another_instance_meanwhile_is_patched_instead(kube: FakeKube) -> None:
    other = pod(kube, "web-5d9c-other")
    real_create = kube.create_config_map

    def racing(namespace: str, name: str, data: dict[str, str]) -> object:
        kube.create_config_map = real_create  # type: ignore[method-assign]
        real_create(namespace, name, {other.uid: entry(other)})  # created first by the other instance
        return real_create(namespace, name, data)  # Conflict: read again, then patch

    kube.create_config_map = racing  # type: ignore[method-assign]
    deliver(make(kube, vouch=FINDING), FINDING)
    assert identities(kube) == {other.uid: entry(other), pod(kube).uid: entry(pod(kube))}


def test_a_403_on_the_parameter_fails_the_step_without_a_retry_and_the_isolation_stands(kube: FakeKube) -> None:
    kube.raise_on["get_config_map"] = Forbidden("configmaps is forbidden: User cannot get resource configmaps")
    outcome = deliver(make(kube, vouch=FINDING), FINDING)
    result = acts(outcome)["identity"]
    assert result.status.value == "failed" and "forbidden" in result.reason.lower()
    assert statuses(outcome)["isolate"] == "succeeded" and outcome.record.outcome == "done"
    assert pod(kube).labels[QUARANTINE_LABEL] == "true"


def test_the_value_names_the_account_the_token_authenticates_as() -> None:
    view = PodView(namespace="payments", name="api-0", uid="u", service_account="api")
    assert account(view) == "system:serviceaccount:payments:api"
    assert entry(view) == "system:serviceaccount:payments:api payments/api-0"


def test_the_report_says_what_the_stolen_token_can_still_do(kube: FakeKube) -> None:
    report = build_report(deliver(make(kube, vouch=FINDING), FINDING))
    [identity_step] = [s for s in (report.response.todo if report.response else ()) if "service-account token" in s]
    assert "system:serviceaccount:shop:default) are refused by the cluster" in identity_step
    assert "its reads are not" in identity_step and "Secret-based tokens" in identity_step
    assert "about an hour" in identity_step  # a Google access token already taken


def test_the_report_says_so_when_the_token_still_writes(kube: FakeKube) -> None:
    kube.raise_on["get_config_map"] = Forbidden("configmaps is forbidden")
    report = build_report(deliver(make(kube, vouch=FINDING), FINDING))
    [identity_step] = [s for s in (report.response.todo if report.response else ()) if "service-account token" in s]
    assert "can still WRITE" in identity_step and "contain it by hand" in identity_step


def test_status_says_whether_each_quarantined_pod_s_token_still_writes(kube: FakeKube) -> None:
    deliver(make(kube, vouch=FINDING), FINDING)
    [entry_] = collect_status(kube)
    assert entry_.identity_quarantined is True and "refused" in render_table([entry_])
    kube.config_maps.clear()  # the parameter lost: the token writes again, and status says so
    [lost] = collect_status(kube)
    assert lost.identity_quarantined is False and "ALLOWED" in render_table([lost])
    kube.raise_on["get_config_map"] = Forbidden("configmaps is forbidden")
    assert collect_status(kube)[0].identity_quarantined is None  # unknown, not "fine"


def test_where_the_identity_guard_is_not_installed_the_record_never_claims_a_refusal(kube: FakeKube) -> None:
    kube.admission_bindings.clear()  # a cluster without deploy/kubernetes/identity-guard.yaml (or before 1.30)
    outcome = deliver(make(kube, vouch=FINDING), FINDING)
    step = acts(outcome)["identity"]
    assert step.status.value == "failed"
    assert "no admission binding reverse-shell-responder-identity" in step.reason and "still writes" in step.reason
    assert pod(kube).uid in identities(kube)  # kept: it takes effect once the policy is installed
    assert statuses(outcome)["isolate"] == "succeeded" and outcome.record.outcome == "done"
    report = build_report(outcome)
    assert any("can still WRITE" in s for s in (report.response.todo if report.response else ()))


def test_a_binding_that_only_audits_is_not_taken_for_a_refusal(kube: FakeKube) -> None:
    kube.admission_bindings["reverse-shell-responder-identity"] = ("Audit",)
    step = acts(deliver(make(kube, vouch=FINDING), FINDING))["identity"]
    assert step.status.value == "failed" and "does not deny (Audit)" in step.reason


def test_the_report_names_the_google_identity_a_stolen_token_leads_to(kube: FakeKube) -> None:
    kube.service_accounts[(NS, "default")] = ServiceAccountView(
        namespace=NS, name="default", annotations={"iam.gke.io/gcp-service-account": "shop@p.iam.gserviceaccount.com"}
    )
    outcome = deliver(make(kube, vouch=FINDING), FINDING)
    report = build_report(outcome)
    assert report.pod is not None and report.pod.google_service_account == "shop@p.iam.gserviceaccount.com"
    [identity_step] = [s for s in (report.response.todo if report.response else ()) if "service-account token" in s]
    assert "its Google identity shop@p.iam.gserviceaccount.com" in identity_step
    assert "Google identity `shop@p.iam.gserviceaccount.com`" in render_markdown(report)
    assert outcome.record.enrichment["service_account"] == "ok"
