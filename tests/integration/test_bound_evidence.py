"""Bound evidence and never-silent outcomes, tried as an attacker and as a careless operator would.

Real kube-apiserver (+ controller-manager), the responder's own least-privilege identity (deploy/kubernetes/rbac.yaml),
and the SCC wire fake spoken to by the real google-cloud-securitycenter client. Every assertion is about what exists
afterwards (pods, labels, policies, SCC's record) or what the decision record says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_connect import KubeconfigConnector
from responder.adapters.scc import SccFindings
from responder.containment.keys import DENY_ALL_POLICY, PREFIX, QUARANTINE_LABEL
from responder.errors import Conflict
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import Budget, Defaults, Policy, PolicyEngine
from responder.ports import Connection
from responder.report.builder import build_report
from responder.report.markdown import render_markdown
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import workloads as w
from tests.support.common import acts, deliver, responder_cli

pytestmark = pytest.mark.integration
ROOMY = Defaults(budget=Budget(max_actions=10_000, window_s=3600))


def responder(google_fake: Any, kubeconfig: Path, *, connector: Any = None, **settings: Any) -> Responder:
    values = {"mode": "enforce", "action": "delete", "kubeconfig": kubeconfig, **settings}
    s = google_fake.settings(**values)
    deps = Dependencies(
        settings=s,
        policy=PolicyEngine(Policy(defaults=ROOMY), s),
        connector=connector or KubeconfigConnector(kubeconfig),
        findings_api=SccFindings(s, deadline_s=0),
    )
    return Responder(deps)


def vouch(google_fake: Any, doc: dict[str, Any], **overrides: Any) -> None:
    """Seed SCC with its own record of the finding ``doc`` describes (what a genuine notification mirrors)."""
    google_fake.vouch_for(doc, **overrides)


def ours(meta: Any) -> dict[str, str]:
    """The labels and annotations the responder writes (its own domain)."""
    return {k: v for k, v in {**(meta.labels or {}), **(meta.annotations or {})}.items() if k.startswith(PREFIX)}


@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> list[Any]:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    return w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")


def test_positive_control_a_genuine_finding_is_deleted_marked_and_set_inactive(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="genuine1")
    vouch(google_fake, doc)
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, set_inactive=True), doc)
    assert outcome.record.verification is not None and outcome.record.verification.status == "verified"
    assert acts(outcome)["delete"].status.value == "succeeded", acts(outcome)["delete"].reason
    assert acts(outcome)["capture"].status.value == "succeeded"  # evidence before the delete
    assert "refused" not in acts(outcome)["capture"].reason  # the pod stayed itself while it was read
    live = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web", exclude_uids={target.metadata.uid})
    assert target.metadata.uid not in {p.metadata.uid for p in live}
    record = google_fake.findings[doc["finding"]["name"]]
    assert record["state"] == "INACTIVE"
    assert record["securityMarks"]["marks"]["rsr_status"] == "deleted"
    assert not outcome.retry and outcome.record.verdict.value == "act"


def test_reusing_the_name_of_an_unrelated_real_finding_harms_neither_the_pod_nor_that_finding(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="unrelated1")
    # SCC's record under that name: an "Added Binary Executed" finding about another pod in another project.
    vouch(
        google_fake,
        doc,
        category="Added Binary Executed",
        resource_name="//container.googleapis.com/projects/other-project-1/locations/europe-west1/clusters/batch",
        kubernetes={"pods": [{"ns": "jobs", "name": "etl-1"}]},
        sourceProperties={"Pod_Namespace": "jobs", "Pod_Name": "etl-1"},
    )
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, set_inactive=True), doc)
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "suspected_forgery")
    assert outcome.record.severity in ("WARNING", "ERROR", "CRITICAL")
    mismatched = " ".join(outcome.record.verification.mismatches if outcome.record.verification else [])
    assert "category" in mismatched and "cluster" in mismatched and "pod" in mismatched
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert live.metadata.uid == target.metadata.uid  # not deleted
    assert live.metadata.labels == target.metadata.labels  # isolation undone, detach or not
    assert ours(live.metadata) == {}
    assert acts(outcome)["delete"].status.value == "skipped"
    assert acts(outcome)["rollback"].status.value == "succeeded"
    unrelated = google_fake.findings[doc["finding"]["name"]]
    assert unrelated["state"] == "ACTIVE"  # the real incident is not hidden
    assert unrelated["securityMarks"]["marks"] == {}
    assert not [r for r in google_fake.requests if r.method == "POST" and "setState" in r.path]


def test_a_finding_scc_does_not_know_isolates_nothing_for_long_and_deletes_nothing(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[1]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="forged1")
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig), doc)
    assert (outcome.record.verdict.value, outcome.record.code) == ("reject", "suspected_forgery")
    assert "does not know" in outcome.record.reason
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert live.metadata.uid == target.metadata.uid and ours(live.metadata) == {}
    assert live.metadata.labels == target.metadata.labels


def test_a_real_finding_cannot_be_pointed_at_another_pod(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    genuine, victim = shop
    doc = notification(namespace=kube_namespace, pod=victim.metadata.name, name_suffix="redirect1")
    vouch(google_fake, notification(namespace=kube_namespace, pod=genuine.metadata.name, name_suffix="redirect1"))
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig), doc)
    assert outcome.record.code == "suspected_forgery"
    assert outcome.record.verification is not None
    assert [m.split(" ")[0] for m in outcome.record.verification.mismatches] == ["pod"]
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(victim.metadata.name, kube_namespace)
    assert live.metadata.uid == victim.metadata.uid and QUARANTINE_LABEL not in (live.metadata.labels or {})


def test_an_impostor_deny_all_is_replaced_before_the_pod_leaves_its_allowing_policies(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    squatter = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": DENY_ALL_POLICY},
        "spec": {"podSelector": {"matchLabels": {"selects": "nothing"}}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    client.NetworkingV1Api(kube_admin).create_namespaced_network_policy(kube_namespace, squatter)
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="impostor1")
    vouch(google_fake, doc)
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, action="isolate"), doc)
    isolate = acts(outcome)["isolate"]
    assert isolate.status.value == "succeeded" and "impostor" in isolate.reason
    deny = w.policies(kube_admin, kube_namespace)[DENY_ALL_POLICY].spec
    assert deny.pod_selector.match_labels == {QUARANTINE_LABEL: "true"} and not deny.pod_selector.match_expressions
    assert sorted(deny.policy_types) == ["Egress", "Ingress"]
    assert not deny.ingress and not deny.egress
    # The quarantined pod is selected by the deny-all and by nothing that allows traffic.
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert live.metadata.labels[QUARANTINE_LABEL] == "true"
    allow = w.policies(kube_admin, kube_namespace)["allow-web"].spec.pod_selector.match_expressions
    assert [(e.key, e.operator) for e in allow] == [(QUARANTINE_LABEL, "NotIn")]


class _ReplacedWhileLogsAreRead:
    """A connector whose adapter lets the StatefulSet replace the pod just before capture reads its log: the
    interleaving of issue 27 (a same-named pod's evidence filed as the compromised pod's), forced with a hook."""

    def __init__(self, kubeconfig: Path, admin: client.ApiClient) -> None:
        self.connector, self.admin = KubeconfigConnector(kubeconfig), admin
        self.replacement: Any = None

    def connect(self, ref: ClusterRef) -> Connection:
        connection = self.connector.connect(ref)
        kube, read_log = connection.kube, connection.kube.read_log

        def replaced_first(namespace: str, name: str, *args: Any, **kwargs: Any) -> str:
            if self.replacement is None:
                old = client.CoreV1Api(self.admin).read_namespaced_pod(name, namespace)
                client.CoreV1Api(self.admin).delete_namespaced_pod(name, namespace, grace_period_seconds=0)
                [self.replacement] = w.wait_for_pods(
                    self.admin, namespace, 1, "app=db", exclude_uids={old.metadata.uid}
                )
            text: str = read_log(namespace, name, *args, **kwargs)
            return text

        kube.read_log = replaced_first  # type: ignore[method-assign]
        return connection


def test_a_log_read_that_reaches_the_statefulsets_replacement_is_refused_not_filed(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str
) -> None:
    w.create_statefulset(kube_admin, kube_namespace, "db")
    [target] = w.wait_for_pods(kube_admin, kube_namespace, 1, "app=db")
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="replaced1")
    vouch(google_fake, doc)
    racing = _ReplacedWhileLogsAreRead(kube_paths.responder_kubeconfig, kube_admin)

    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, action="isolate", connector=racing), doc)

    new = racing.replacement
    assert new is not None and new.metadata.name == target.metadata.name and new.metadata.uid != target.metadata.uid
    refused = (
        f"capture refused: pod {kube_namespace}/{target.metadata.name} is now uid {new.metadata.uid}, "
        f"not the compromised pod's uid {target.metadata.uid}"
    )
    capture = acts(outcome)["capture"]
    assert refused in capture.reason, capture.reason
    assert outcome.evidence is not None and outcome.evidence.logs is None
    assert f"logs: {refused}" in outcome.evidence.notes
    report = build_report(outcome)
    assert report.logs is not None and report.logs.captured_tail is None
    assert refused in render_markdown(report).replace("\\", "")


class _Impersonating:
    """A connector whose client speaks as ``user``: a missing RBAC binding, as a careless operator leaves it."""

    def __init__(self, admin_kubeconfig: Path, user: str) -> None:
        self.kubeconfig, self.user = admin_kubeconfig, user

    def connect(self, ref: ClusterRef) -> Connection:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        api.set_default_header("Impersonate-User", self.user)
        return Connection(kube=KubeAdapter(api))


def test_a_403_on_the_pod_read_is_a_loud_failure_that_redelivers_never_already_gone(
    google_fake: Any, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, shop: list[Any]
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix="forbidden1")
    vouch(google_fake, doc)
    unbound = _Impersonating(kube_paths.kubeconfig, "no-rbac-binding@rsr-test.iam.gserviceaccount.com")
    outcome = deliver(responder(google_fake, kube_paths.responder_kubeconfig, connector=unbound), doc)
    containment = [a for a in outcome.record.actions if a.action in ("isolate", "label", "capture", "delete")]
    assert containment and all(a.status.value == "failed" for a in containment)
    assert all("forbidden (check RBAC" in a.reason and "already gone" not in a.reason for a in containment)
    # A 403 does not heal by redelivery: the pod is not contained, so a person is paged (never "already gone").
    assert (outcome.record.outcome, outcome.record.severity) == ("not_contained", "ERROR")
    assert outcome.record.reason.startswith("NOT CONTAINED") and "forbidden" in outcome.record.reason
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert QUARANTINE_LABEL not in (live.metadata.labels or {})


@pytest.mark.parametrize(
    ("identity", "says"),
    [
        ("responder", "forbidden (check RBAC: leases"),  # its rights end at responder-system: it cannot even look
        ("admin", "does not exist"),  # an identity that may look learns the namespace is missing
    ],
)
def test_a_missing_budget_namespace_fails_the_delete_keeps_the_isolation_and_redelivers(
    google_fake: Any,
    kube_paths: Any,
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[Any],
    identity: str,
    says: str,
) -> None:
    target = shop[0]
    doc = notification(namespace=kube_namespace, pod=target.metadata.name, name_suffix=f"nobudget{identity}")
    vouch(google_fake, doc)
    kubeconfig = kube_paths.responder_kubeconfig if identity == "responder" else kube_paths.kubeconfig
    r = responder(google_fake, kubeconfig, budget_namespace="rsr-budget-missing")
    outcome = deliver(r, doc)
    delete = acts(outcome)["delete"]
    assert delete.status.value == "failed" and says in delete.reason, delete.reason
    assert acts(outcome)["isolate"].status.value == "succeeded"  # done before, kept, and recorded
    live = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    assert live.metadata.uid == target.metadata.uid and live.metadata.labels[QUARANTINE_LABEL] == "true"
    if identity == "admin":  # a missing namespace may be created: retried
        assert outcome.retry and outcome.record.severity == "ERROR"
    else:  # a 403 does not heal; the pod is contained (the local dataplane cut the session): done, the failure loud
        assert (outcome.record.outcome, outcome.record.severity) == ("done", "WARNING")


def test_a_patch_with_a_stale_uid_reads_as_replaced_on_a_real_apiserver(
    kube_responder: client.ApiClient, kube_admin: client.ApiClient, kube_namespace: str
) -> None:
    w.create_pod(kube_admin, kube_namespace, "stale-1")
    kube = KubeAdapter(kube_responder)
    with pytest.raises(Conflict, match="replaced"):  # the apiserver answers 422 (uid is immutable), not 409
        kube.patch_pod_metadata(kube_namespace, "stale-1", "00000000-0000-0000-0000-000000000000", {"x": "y"}, {})


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"eventTime": "9999-12-31T23:59:59Z"}, "bad_time"),
        ({"eventTime": "0001-01-01T00:00:00Z"}, "bad_time"),
        ({"state": 1, "severity": 1, "mute": 2, "findingClass": 1}, None),  # proto3 numbers: acted on
        ({"processes": [{"pid": int("9" * 30)}]}, "bad_envelope"),  # the file itself is refused
    ],
)
def test_replay_never_prints_a_traceback_and_always_prints_one_record(
    tmp_path: Path, kube_paths: Any, kube_admin: client.ApiClient, kube_namespace: str, change: Any, code: str | None
) -> None:
    w.create_pod(kube_admin, kube_namespace, "replayed-1")
    doc = notification(namespace=kube_namespace, pod="replayed-1", name_suffix="replay1", **change)
    path = tmp_path / "finding.json"
    path.write_text(json.dumps(doc))
    env = {
        **os.environ,
        "RESPONDER_KUBECONFIG": str(kube_paths.responder_kubeconfig),
        "RESPONDER_MODE": "enforce",
        "RESPONDER_ACTION": "isolate",
        "RESPONDER_VERIFY_FINDING": "false",
        "RESPONDER_GOOGLE_APIS": "off",
    }
    proc = responder_cli("replay", str(path), env=env)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    [line] = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    record = json.loads(line)
    live = client.CoreV1Api(kube_admin).read_namespaced_pod("replayed-1", kube_namespace)
    if code is None:
        assert (proc.returncode, record["verdict"]) == (0, "act"), record["reason"]
        assert live.metadata.labels[QUARANTINE_LABEL] == "true"
    else:
        assert (proc.returncode, record["verdict"], record["code"]) == (2, "reject", code)
        assert QUARANTINE_LABEL not in (live.metadata.labels or {})
