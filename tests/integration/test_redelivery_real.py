"""Issue 27's proof on the real local cluster: every delivery converges, and acknowledged means contained.

The cases of tests/unit/test_redelivery.py, on the real kube-apiserver + etcd (+ controller-manager) as the
responder's least-privilege identity (deploy/kubernetes/rbac.yaml + rbac-capture.yaml), with SCC on the wire fake
through the real SCC client. Each case delivers the same Pub/Sub message two or three times (a CloudEvent whose
message carries ``deliveryAttempt``, read by the handler's own envelope code), with SCC unavailable (503), refusing
(403) or answering in between, and asserts after every attempt: the outcome (``record.outcome``, ``code``,
``severity``), the pod (labels, annotations, UID), the NetworkPolicies read back with the admin client (the deny-all
by content, the ``NotIn`` exclusions) and SCC's marks read back from the fake.

Each attempt is delivered by a fresh :class:`Instance` (the production composition root: Pub/Sub may redeliver to any
instance, which remembers nothing), unless a case needs one instance's hook. An instance records every request its
Kubernetes adapter sends (method, path, status), which is how "no write" is counted; it can also answer a request as
the apiserver would refuse it (a 503, a 403), which is how a failed delete is injected: the local apiserver cannot be
made to answer 503 (a 403 from the admission guard is real: test_guard_live.py). Interleavings (a release
racing an isolation, a rollback racing a genuine isolation) are forced with hooks on the adapter method that is about
to write: the other party's write runs first, in full, then the hooked write goes out. Nothing relies on timing.

Pods need no node: they stay Pending, which is enough for labels, policies and deletes (capture then records that
the container is not running, and never execs).

The cases, in order: (1) a forged message isolated while SCC was down, rolled back once it answers (also when the
rollback's patch fails, and when redeliveries carry no attempt count); (2) a forged message SCC refuses to answer for
(403) is never acknowledged; (3) a genuine finding with SCC down first finishes on the next attempt, and the one after
is a duplicate that writes nothing (also when the isolation decayed meanwhile, when the marks write is refused, and
for a seek); (4) Calico: the escalated delete failing once, held for SCC, or refused (bare pod, StatefulSet pod,
403), and ``live_session: report``; (5) a hostNetwork pod; (6) a flood that exhausts the budget; (7) what the
workload can write (a planted release, a planted exemption label) against a release SCC records, and a vouched
shell the policy leaves alone (namespace exemption, protected namespace, dry-run); (8) a release of another pod
racing a new isolation, both ways round; (9) a forged rollback racing a genuine isolation.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_connect import KubeconfigConnector
from responder.adapters.scc import SccFindings
from responder.aftercare.facts import QUARANTINE_SELECTOR
from responder.aftercare.release import Releaser, ReleaseRequest
from responder.aftercare.status import collect_status
from responder.bootstrap import build_dependencies
from responder.config import Settings
from responder.containment.budget import ENTRIES_ANNOTATION, LEASE_NAME
from responder.containment.keys import (
    ACTIONS_ANNOTATION,
    AT_ANNOTATION,
    DENY_ALL_POLICY,
    FINDING_ANNOTATION,
    PRIOR_FINDING_ANNOTATION,
    QUARANTINE_LABEL,
    RELEASED_ANNOTATION,
)
from responder.errors import KubeHttpError
from responder.intake.envelope import PUBSUB_EVENT_TYPE, from_cloud_event
from responder.intake.identifiers import ClusterRef
from responder.policy.rules import Policy, PolicyEngine
from responder.ports import PodView
from responder.report.outcome import Outcome
from responder.service import Responder
from tests.notifications import message_published, notification
from tests.support import workloads as w
from tests.support.common import REPO
from tests.support.google_fakes import GoogleFake
from tests.support.kube import KubeEnv

pytestmark = pytest.mark.integration

REF = ClusterRef(project="example-retail-prod", location="us-east1", name="retail-gke")  # one kubeconfig serves all
POLICY = REPO / "policy.yaml"  # the shipped policy: default-isolate (label, isolate, capture), live_session: escalate
BUDGET_NAMESPACE = "responder-system"
SCC_READ = "*/findings"  # ListFindings, the verification read (the marks write is .../findings/F/securityMarks)
SCC_MARKS = "*/securityMarks"
CUT = "established"  # Dataplane V2: isolation cuts the live session
NEW_ONLY = "new-only"  # Calico: it does not, so the policy escalates to a delete
ALLOWING = ("allow-all", "allow-web")  # the shop's policies that select a web pod and allow traffic
RESPONDER_KEYS = (FINDING_ANNOTATION, ACTIONS_ANNOTATION, AT_ANNOTATION, PRIOR_FINDING_ANNOTATION)


# ------------------------------------------------------------------------------------------------ an instance
@dataclass
class Fault:
    """Requests the apiserver is made to refuse: ``status`` for the next ``times`` matching (method, path glob)."""

    method: str
    path: str
    status: int
    times: int

    def take(self, method: str, path: str) -> bool:
        if self.times > 0 and method == self.method and fnmatch.fnmatchcase(path, self.path):
            self.times -= 1
            return True
        return False


@dataclass
class Instance:
    """One function instance: the production composition root (``build_dependencies``) in enforce mode, with the
    shipped policy, the responder's kubeconfig and SCC on the wire fake. SCC calls are made once each (no in-call
    retry), so a fault placed on the fake lands on exactly the call it is meant for.

    ``requests``: every request its Kubernetes adapter sent, as (method, path, status); ``faults``: requests it is
    made to see refused as the apiserver would refuse them (never sent)."""

    responder: Responder
    kube: KubeAdapter
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def start(cls, fake: GoogleFake, kubeconfig: Path, **settings: Any) -> Instance:
        # The shipped policy's budget (5 per hour) is the cluster's, shared by every test on it: only the flood
        # test sets one of its own.
        values: dict[str, Any] = {"mode": "enforce", "netpol_enforcement": CUT, "budget_max": 10_000} | settings
        s = fake.settings(kubeconfig=kubeconfig, policy_file=POLICY, **values)
        deps = build_dependencies(s)
        deps.findings_api = SccFindings(s, deadline_s=0)
        assert deps.connector is not None
        kube = cast(KubeAdapter, deps.connector.connect(REF).kube)
        instance = cls(Responder(deps), kube)
        send, send_together = kube.http.request, kube.http.get_together

        def injected(method: str, path: str) -> KubeHttpError | None:
            for fault in instance.faults:
                if fault.take(method, path):
                    instance.requests.append((method, path, fault.status))
                    body = json.dumps({"kind": "Status", "code": fault.status, "message": "injected by the test"})
                    return KubeHttpError(fault.status, "injected", body)
            return None

        def request(method: str, path: str, **kwargs: Any) -> Any:
            refused = injected(method, path)
            if refused is not None:
                raise refused
            try:
                answer = send(method, path, **kwargs)
            except KubeHttpError as exc:
                instance.requests.append((method, path, exc.status))
                raise
            instance.requests.append((method, path, 200))
            return answer

        def get_together(reads: list[tuple[str, Any]]) -> list[Any]:
            """The reads a redelivery sends together: refused one by one as ``request`` refuses them."""
            out: list[Any] = [injected("GET", path) for path, _ in reads]
            sent = [i for i, refused in enumerate(out) if refused is None]
            for i, answer in zip(sent, send_together([reads[i] for i in sent]), strict=True):
                status = (
                    answer.status if isinstance(answer, KubeHttpError) else 0 if isinstance(answer, Exception) else 200
                )
                instance.requests.append(("GET", reads[i][0], status))
                out[i] = answer
            return out

        kube.http.request = request  # type: ignore[method-assign]
        kube.http.get_together = get_together  # type: ignore[method-assign]
        return instance

    def deliver(self, doc: dict[str, Any], attempt: int | None) -> Outcome:
        """``doc`` as Pub/Sub delivers it the ``attempt``-th time: the same message, the same id. ``None``: without
        a count, as a subscription without a dead-letter policy, a second subscription or a seek delivers it."""
        data = message_published(doc, message_id=f"m-{doc['finding']['name'][-12:]}")
        if attempt is not None:
            data["message"]["deliveryAttempt"] = attempt
        delivery = from_cloud_event(PUBSUB_EVENT_TYPE, data["message"]["messageId"], data)
        assert delivery.delivery_attempt == attempt
        return self.responder.respond(delivery)

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] != "GET"]


# ----------------------------------------------------------------------------------------------- what happened
@dataclass
class Attempts:
    """The outcome of every attempt of one message, printed as it comes (``pytest -s`` shows them)."""

    case: str
    seen: list[tuple[int | None, str, str, str, str]] = field(default_factory=list)

    def add(self, attempt: int | None, outcome: Outcome) -> Outcome:
        r = outcome.record
        self.seen.append((attempt, r.verdict.value, r.code, r.outcome, r.severity))
        print(f"[redelivery] {self.case}: attempt {attempt}: {r.verdict.value}/{r.code} {r.outcome} {r.severity}")
        return outcome


def ends(outcome: Outcome) -> tuple[str, str, str, str]:
    r = outcome.record
    return r.verdict.value, r.code, r.outcome, r.severity


def steps(outcome: Any) -> dict[str, str]:
    return {a.action: a.status.value for a in [*outcome.record.actions, *outcome.record.writebacks]}


def reason(outcome: Any, action: str) -> str:
    return str(next(a.reason for a in [*outcome.record.actions, *outcome.record.writebacks] if a.action == action))


def read_pod(admin: client.ApiClient, namespace: str, name: str) -> Any:
    """The pod as stored, or None when there is none by that name."""
    try:
        return client.CoreV1Api(admin).read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def quarantined(admin: client.ApiClient, namespace: str, name: str, finding: str | None = None) -> bool:
    """The pod carries the quarantine label (and, when given, ``finding``'s record), and is not being deleted."""
    pod = read_pod(admin, namespace, name)
    if pod is None or pod.metadata.deletion_timestamp is not None:
        return False
    labels, annotations = pod.metadata.labels or {}, pod.metadata.annotations or {}
    recorded = finding is None or annotations.get(FINDING_ANNOTATION) == finding
    return bool(labels.get(QUARANTINE_LABEL) == "true" and recorded)


def deny_all_by_content(admin: client.ApiClient, namespace: str) -> bool:
    """The deny-all exists and is exactly the responder's: selects the quarantine label, both directions, no rule."""
    policy = w.policies(admin, namespace).get(DENY_ALL_POLICY)
    if policy is None:
        return False
    spec = admin.sanitize_for_serialization(policy.spec)
    return bool(
        spec == {"podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}}, "policyTypes": ["Ingress", "Egress"]}
    )


def excluded(admin: client.ApiClient, namespace: str) -> dict[str, bool]:
    """Each allowing policy of the shop: does it exclude quarantined pods (``NotIn``)?"""
    policies = w.policies(admin, namespace)
    out = {}
    for name in ALLOWING:
        exprs = policies[name].spec.pod_selector.match_expressions or []
        out[name] = any(e.key == QUARANTINE_LABEL and e.operator == "NotIn" and e.values == ["true"] for e in exprs)
    return out


def isolated(admin: client.ApiClient, namespace: str, name: str, finding: str | None = None) -> bool:
    """Quarantined, the deny-all intact by content and every allowing policy excluding quarantined pods."""
    return (
        quarantined(admin, namespace, name, finding)
        and deny_all_by_content(admin, namespace)
        and all(excluded(admin, namespace).values())
    )


def marks(fake: GoogleFake, name: str) -> dict[str, str]:
    """SCC's marks on the finding, as the fake holds them ({} for a name SCC does not know)."""
    finding = fake.findings.get(name)
    return dict(finding["securityMarks"].get("marks") or {}) if finding else {}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def finding_doc(namespace: str, pod: str, **overrides: Any) -> dict[str, Any]:
    """A fresh finding (a unique name per run: the budget counts findings by name) about ``namespace/pod``."""
    return notification(namespace=namespace, pod=pod, container="api", name_suffix=uuid.uuid4().hex, **overrides)


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def policies_path(namespace: str) -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"


# -------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def shop(kube_admin: client.ApiClient, kube_namespace: str) -> list[str]:
    """web x2 (a Deployment, Pending pods) and three allowing policies: all, app=web, app=db."""
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    w.create_policy(kube_admin, kube_namespace, "allow-all")
    w.create_policy(kube_admin, kube_namespace, "allow-web", {"app": "web"})
    w.create_policy(kube_admin, kube_namespace, "allow-db", {"app": "db"})
    return sorted(p.metadata.name for p in w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web"))


@pytest.fixture
def start(google_fake: GoogleFake, kube_env: KubeEnv) -> Iterator[Callable[..., Instance]]:
    """A new function instance as the responder's identity (settings as keyword arguments); its pools are shut
    down after the test."""
    started: list[Instance] = []

    def make(**settings: Any) -> Instance:
        started.append(Instance.start(google_fake, kube_env.responder_kubeconfig, **settings))
        return started[-1]

    yield make
    for instance in started:
        instance.responder.workers.shutdown(wait=False)
        instance.responder.coordinators.shutdown(wait=False)


@pytest.fixture
def operator(google_fake: GoogleFake, kube_env: KubeEnv) -> Releaser:
    """``release`` with the operator's rights (admin kubeconfig) and Google APIs on: it writes its mark to SCC."""
    kube = KubeconfigConnector(kube_env.kubeconfig).connect(REF).kube
    return Releaser(
        kube,
        protected=PolicyEngine(Policy(), Settings()).protected,
        findings=SccFindings(google_fake.settings(), deadline_s=0),
    )


# ----------------------------------------------------------------------------------- (1) (2) forged messages
@pytest.mark.parametrize("numbered", [True, False], ids=["deliveryAttempt", "no attempt count"])
def test_a_forged_message_isolated_while_scc_was_down_is_rolled_back_once_scc_answers(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
    numbered: bool,
) -> None:
    """Without an attempt count a fresh instance cannot tell a redelivery from a first delivery: the pod's record
    of this finding is the hint that makes it ask SCC before anything else (and never decides anything itself)."""
    ns, pod = kube_namespace, shop[0]
    before = read_pod(kube_admin, ns, pod)
    forged = finding_doc(ns, pod)  # SCC does not know the name: every delivery of this message is a forgery
    name = forged["finding"]["name"]
    seen = Attempts(f"forged, SCC 503 then answering ({'numbered' if numbered else 'unnumbered'})")
    google_fake.fail_next(1, status=503, path=SCC_READ)

    def nth(attempt: int) -> int | None:
        return attempt if numbered else None

    first = seen.add(1, start().deliver(forged, nth(1)))
    assert ends(first) == ("act", "reverse_shell", "retry", "ERROR"), first.record.reason
    assert isolated(kube_admin, ns, pod, name)  # fail safe while SCC cannot answer
    assert steps(first)["capture"] == "skipped" and "not verified" in reason(first, "capture")

    second = seen.add(2, start().deliver(forged, nth(2)))
    assert ends(second) == ("reject", "suspected_forgery", "done", "ERROR"), second.record.reason  # pages as rejected
    assert steps(second) == {"rollback": "succeeded"}
    after = read_pod(kube_admin, ns, pod)
    assert after.metadata.uid == before.metadata.uid
    assert (after.metadata.labels or {}) == (before.metadata.labels or {})  # exactly as before the forgery
    assert not set(RESPONDER_KEYS) & set(after.metadata.annotations or {})
    # The deny-all and the exclusions stay: both concern quarantined pods only, so they change nothing for this one.
    assert deny_all_by_content(kube_admin, ns)

    third_instance = start()
    third = seen.add(3, third_instance.deliver(forged, nth(3)))
    assert ends(third)[:3] == ("reject", "suspected_forgery", "done"), third.record.reason
    if numbered:
        assert steps(third) == {} and third_instance.writes() == []  # asked SCC first: nothing left to undo
    else:
        # Nothing tells this instance that the message was seen before (the pod no longer names the finding): it is
        # handled as a first delivery, isolated before SCC answers and rolled back when SCC refutes it.
        assert steps(third) == {
            "isolate": "succeeded",
            "identity": "succeeded",
            "label": "skipped",
            "capture": "skipped",
            "rollback": "succeeded",
        }
    after = read_pod(kube_admin, ns, pod)
    assert (after.metadata.labels or {}) == (before.metadata.labels or {})
    assert not set(RESPONDER_KEYS) & set(after.metadata.annotations or {})
    assert marks(google_fake, name) == {} and not google_fake.requests_to("PATCH", SCC_MARKS)
    assert [r.status for r in google_fake.requests_to("GET", SCC_READ)] == [503, 200, 200]  # one SCC read each


def test_a_forged_message_scc_refuses_to_answer_for_is_never_acknowledged(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """A name under an organisation the responder may not read: SCC answers 403 every time. Every attempt retries,
    so the message ends in the dead letter (which pages), never acknowledged with the forged isolation standing."""
    ns, pod = kube_namespace, shop[0]
    forged = finding_doc(ns, pod)
    seen = Attempts("forged, SCC 403 on every attempt")
    google_fake.fail_next(1_000, status=403, path=SCC_READ)
    for attempt in (1, 2, 3):
        outcome = seen.add(attempt, start().deliver(forged, attempt))
        assert ends(outcome) == ("act", "reverse_shell", "retry", "ERROR"), (attempt, outcome.record.reason)
        assert "403" in outcome.record.reason or "403" in (outcome.record.left or ""), outcome.record.reason
        assert steps(outcome)["capture"] == "skipped"
        assert isolated(kube_admin, ns, pod, forged["finding"]["name"])  # kept, fail safe, and redelivered
    assert not google_fake.requests_to("PATCH", SCC_MARKS)


def test_a_rollback_the_apiserver_fails_is_retried_until_it_lands(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    ns, pod = kube_namespace, shop[0]
    forged = finding_doc(ns, pod)
    name = forged["finding"]["name"]
    seen = Attempts("forged, rollback 503 on attempt 2")
    google_fake.fail_next(1, status=503, path=SCC_READ)
    assert ends(seen.add(1, start().deliver(forged, 1)))[2] == "retry"
    failing = start()
    failing.faults.append(Fault("PATCH", pod_path(ns, pod), 503, times=100))
    second = seen.add(2, failing.deliver(forged, 2))
    assert ends(second) == ("reject", "suspected_forgery", "retry", "ERROR"), second.record.reason
    assert steps(second) == {"rollback": "failed"} and "503" in reason(second, "rollback")
    assert isolated(kube_admin, ns, pod, name)  # not acknowledged while the forged isolation stands
    third = seen.add(3, start().deliver(forged, 3))
    assert ends(third)[:3] == ("reject", "suspected_forgery", "done") and steps(third) == {"rollback": "succeeded"}
    assert not quarantined(kube_admin, ns, pod)


# ----------------------------------------------------------------------------------------- (3) genuine finding
def test_a_genuine_finding_with_scc_down_first_finishes_on_the_next_attempt_and_then_costs_no_write(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    uid = read_pod(kube_admin, ns, pod).metadata.uid
    seen = Attempts("genuine, SCC 503 on attempt 1")
    google_fake.fail_next(1, status=503, path=SCC_READ)

    first = seen.add(1, start().deliver(doc, 1))
    assert ends(first) == ("act", "reverse_shell", "retry", "ERROR"), first.record.reason
    assert steps(first)["capture"] == "skipped" and "not verified" in reason(first, "capture")  # held
    assert steps(first)["mark"] == "skipped" and marks(google_fake, name) == {}
    assert isolated(kube_admin, ns, pod, name)  # the isolation does not wait for SCC

    second = seen.add(2, start().deliver(doc, 2))
    assert ends(second) == ("act", "reverse_shell", "done", "NOTICE"), second.record.reason
    assert steps(second)["capture"] == "succeeded" and steps(second)["mark"] == "succeeded"
    assert "the container is not running" in json.dumps(second.record.model_dump(mode="json"))  # never exec'd
    written = marks(google_fake, name)
    assert (written["rsr_outcome"], written["rsr_status"], written["rsr_pod_uid"]) == ("done", "isolated", uid)
    assert when(written["rsr_event"]) == when(doc["finding"]["eventTime"])
    assert isolated(kube_admin, ns, pod, name)

    settled = w.written_state(kube_admin, ns)
    scc_before = len(google_fake.requests)
    third_instance = start()  # another instance: it remembers nothing
    third = seen.add(3, third_instance.deliver(doc, 3))
    assert ends(third) == ("ignore", "duplicate", "done", "INFO"), third.record.reason
    assert "SCC's marks record this occurrence as done" in third.record.reason
    # A converged redelivery: one SCC read, three kube reads (the pod, the policies, the quarantined identities),
    # no write anywhere; and, since this cluster serves ClusterNetworkPolicy, the tier above the namespace judged
    # again: API discovery (a cold instance: a warm one has it cached) and the one served kind. Not the namespace:
    # the one policy there (the static deny) selects namespaces by kubernetes.io/metadata.name alone.
    assert sorted(third_instance.requests) == [
        ("GET", "/api/v1/namespaces/responder-system/configmaps/rsr-quarantined-identities", 200),
        ("GET", pod_path(ns, pod), 200),
        ("GET", "/apis", 200),
        ("GET", policies_path(ns), 200),
        ("GET", "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies", 200),
    ]
    assert [(r.method, fnmatch.fnmatchcase(r.path, SCC_READ)) for r in google_fake.requests[scc_before:]] == [
        ("GET", True)
    ]
    assert w.written_state(kube_admin, ns) == settled and marks(google_fake, name) == written


@pytest.mark.parametrize(
    ("path", "status", "second_ends", "failed_step"),
    [
        # The pod read refused: its end state cannot be judged and a 403 does not heal: it pages, never "gone".
        ("/api/v1/namespaces/*/pods/*", 403, ("act", "reverse_shell", "not_contained", "ERROR"), None),
        # The policies failing on every retry: redelivered.
        (
            "/apis/networking.k8s.io/v1/namespaces/*/networkpolicies",
            503,
            ("act", "reverse_shell", "retry", "ERROR"),
            None,
        ),
        # The quarantined identities unreadable: handled in full; the identity step fails in the record, as on a first
        # delivery refused that read, while the pod stays isolated with its session cut.
        (
            "/api/v1/namespaces/responder-system/configmaps/*",
            403,
            ("act", "reverse_shell", "done", "WARNING"),
            "identity",
        ),
    ],
)
def test_a_redelivery_whose_reads_together_are_refused_is_never_taken_for_converged(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
    path: str,
    status: int,
    second_ends: tuple[str, str, str, str],
    failed_step: str | None,
) -> None:
    """The reads a redelivery sends together (the pod, the namespace's policies, the quarantined identities): one of
    them refused or failing on every attempt means the end state cannot be judged, so the delivery is no duplicate,
    the isolation stands, and the record says which read failed. The next clean delivery ends done."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    seen = Attempts(f"converged, then GET {path} answered {status}")
    assert ends(seen.add(1, start().deliver(doc, 1)))[:3] == ("act", "reverse_shell", "done")
    failing = start()
    failing.faults.append(Fault("GET", path, status, times=100))
    second = seen.add(2, failing.deliver(doc, 2))
    assert ends(second) == second_ends, second.record.reason
    assert any(s == status and fnmatch.fnmatchcase(p, path) for _, p, s in failing.requests)
    if failed_step is not None:
        assert steps(second)[failed_step] == "failed" and str(status) in reason(second, failed_step)
    assert isolated(kube_admin, ns, pod, name)
    third = seen.add(3, start().deliver(doc, 3))
    assert ends(third)[2] == "done" and ends(third)[3] in ("INFO", "NOTICE"), third.record.reason
    assert isolated(kube_admin, ns, pod, name)


def test_a_redelivery_whose_isolation_decayed_converges_again_and_a_seek_is_recognised(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """SCC's marks say done, but someone deleted the deny-all since: the redelivery is no duplicate, it isolates
    again (without repeating the capture). A redelivery with no attempt count (a second subscription, a seek) is
    recognised from the pod's record and costs no write either (the deny-all create it tries first is refused 409)."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    seen = Attempts("decayed isolation, then a seek")
    assert ends(seen.add(1, start().deliver(doc, 1)))[:3] == ("act", "reverse_shell", "done")
    client.NetworkingV1Api(kube_admin).delete_namespaced_network_policy(DENY_ALL_POLICY, ns)

    second = seen.add(2, start().deliver(doc, 2))
    assert ends(second) == ("act", "reverse_shell", "done", "NOTICE"), second.record.reason
    assert steps(second)["capture"] == "skipped" and "earlier delivery" in reason(second, "capture")
    assert isolated(kube_admin, ns, pod, name)

    settled = w.written_state(kube_admin, ns)
    seek = start()
    data = message_published(doc)  # no deliveryAttempt: Pub/Sub sets it only with a dead-letter policy
    third = seen.add(None, seek.responder.respond(from_cloud_event(PUBSUB_EVENT_TYPE, "seek", data)))
    assert ends(third) == ("ignore", "duplicate", "done", "INFO"), third.record.reason
    assert [(m, st) for m, _, st in seek.writes()] in ([], [("POST", 409)])
    assert w.written_state(kube_admin, ns) == settled


def test_marks_scc_refuses_make_the_delivery_a_retry_and_the_next_one_writes_them(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    seen = Attempts("marks 403 on attempt 1")
    google_fake.fail_next(1, status=403, path=SCC_MARKS)
    first = seen.add(1, start().deliver(doc, 1))
    assert ends(first) == ("act", "reverse_shell", "retry", "ERROR"), first.record.reason
    assert steps(first)["mark"] == "failed" and marks(google_fake, name) == {}
    assert isolated(kube_admin, ns, pod, name)  # contained meanwhile
    second = seen.add(2, start().deliver(doc, 2))
    assert ends(second) == ("act", "reverse_shell", "done", "NOTICE"), second.record.reason
    assert marks(google_fake, name)["rsr_outcome"] == "done"


# ------------------------------------------------------------------------------------- (4) Calico escalation
def test_an_escalated_delete_that_fails_once_runs_on_the_redelivery(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """Calico: isolation leaves the live shell connected, so the policy escalates to capture, then delete. The
    apiserver answers the delete 503 (every in-call retry): a retry; the redelivery deletes; the next is a duplicate."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    uid = read_pod(kube_admin, ns, pod).metadata.uid
    seen = Attempts("Calico, delete 503 on attempt 1")

    failing = start(netpol_enforcement=NEW_ONLY)
    failing.faults.append(Fault("DELETE", pod_path(ns, pod), 503, times=100))
    first = seen.add(1, failing.deliver(doc, 1))
    assert ends(first) == ("act", "reverse_shell", "retry", "ERROR"), first.record.reason
    assert steps(first)["delete"] == "failed" and "503" in reason(first, "delete")
    assert steps(first)["capture"] == "succeeded"  # evidence first, before the (failed) delete
    assert ("DELETE", pod_path(ns, pod), 503) in failing.requests
    assert isolated(kube_admin, ns, pod, name)  # for new connections at least, meanwhile
    assert marks(google_fake, name)["rsr_outcome"] == "retry"

    second = seen.add(2, start(netpol_enforcement=NEW_ONLY).deliver(doc, 2))
    assert ends(second) == ("act", "reverse_shell", "done", "NOTICE"), second.record.reason
    assert steps(second)["delete"] == "succeeded"
    assert steps(second)["capture"] == "skipped" and "earlier delivery" in reason(second, "capture")  # not repeated
    gone = read_pod(kube_admin, ns, pod)
    assert gone is None or gone.metadata.uid != uid or gone.metadata.deletion_timestamp is not None
    written = marks(google_fake, name)
    assert (written["rsr_outcome"], written["rsr_status"], written["rsr_pod_uid"]) == ("done", "deleted", uid)

    third_instance = start(netpol_enforcement=NEW_ONLY)
    third = seen.add(3, third_instance.deliver(doc, 3))
    assert ends(third) == ("ignore", "duplicate", "done", "INFO"), third.record.reason
    assert third_instance.writes() == []


def test_an_escalation_held_while_scc_was_down_runs_once_it_answers(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    seen = Attempts("Calico, SCC 503 on attempt 1")
    google_fake.fail_next(1, status=503, path=SCC_READ)
    first = seen.add(1, start(netpol_enforcement=NEW_ONLY).deliver(doc, 1))
    assert ends(first) == ("act", "reverse_shell", "retry", "ERROR"), first.record.reason
    assert steps(first)["delete"] == "skipped" and "not verified" in reason(first, "delete")
    assert isolated(kube_admin, ns, pod, doc["finding"]["name"])
    second = seen.add(2, start(netpol_enforcement=NEW_ONLY).deliver(doc, 2))
    assert ends(second) == ("act", "reverse_shell", "done", "NOTICE"), second.record.reason
    assert steps(second)["delete"] == "succeeded" and read_pod(kube_admin, ns, pod) is None
    assert marks(google_fake, doc["finding"]["name"])["rsr_status"] == "deleted"


def _bare_pod(admin: client.ApiClient, namespace: str, name: str, host_network: bool = False) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"hostNetwork": host_network, "containers": [{"name": "api", "image": "registry.invalid/x:1"}]},
    }
    client.CoreV1Api(admin).create_namespaced_pod(namespace, body)


def _statefulset_pod(admin: client.ApiClient, namespace: str) -> str:
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web", "role": "db"}},
            "template": {
                "metadata": {"labels": {"app": "web", "role": "db"}},
                "spec": {"containers": [{"name": "api", "image": "registry.invalid/db:1"}]},
            },
        },
    }
    client.AppsV1Api(admin).create_namespaced_stateful_set(namespace, body)
    w.wait_for_pods(admin, namespace, 1, "role=db")
    return "db-0"


@pytest.mark.parametrize("refusal", ["bare pod", "StatefulSet pod", "delete forbidden (403)"])
def test_an_escalation_that_cannot_run_ends_not_contained_on_every_attempt(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
    refusal: str,
) -> None:
    """Calico, and the escalated delete is refused (a guard, or a 403 as RBAC or the admission guard answers it): the
    shell may still be connected, so every attempt ends not_contained at ERROR and pages; never a duplicate."""
    ns, pod = kube_namespace, shop[0]
    if refusal == "bare pod":
        pod = "lone-1"
        _bare_pod(kube_admin, ns, pod)
    elif refusal == "StatefulSet pod":
        pod = _statefulset_pod(kube_admin, ns)
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    uid = read_pod(kube_admin, ns, pod).metadata.uid
    seen = Attempts(f"Calico, {refusal}")
    for attempt in (1, 2, 3):
        instance = start(netpol_enforcement=NEW_ONLY)
        if refusal.startswith("delete forbidden"):
            instance.faults.append(Fault("DELETE", pod_path(ns, pod), 403, times=100))
        outcome = seen.add(attempt, instance.deliver(doc, attempt))
        assert ends(outcome) == ("act", "reverse_shell", "not_contained", "ERROR"), (attempt, outcome.record.reason)
        assert outcome.record.reason.startswith("NOT CONTAINED"), outcome.record.reason
        expected = {"bare pod": "standalone", "StatefulSet pod": "StatefulSet", "delete forbidden (403)": "403"}
        assert expected[refusal] in reason(outcome, "delete"), reason(outcome, "delete")
        assert steps(outcome)["delete"] == ("failed" if refusal.startswith("delete") else "skipped")
        live = read_pod(kube_admin, ns, pod)
        assert live.metadata.uid == uid and live.metadata.deletion_timestamp is None  # still there, shell and all
        assert isolated(kube_admin, ns, pod, name)  # new connections at least are cut
        assert marks(google_fake, name)["rsr_outcome"] == "not_contained"


def test_live_session_report_on_calico_pages_instead_of_escalating(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """``live_session: report`` means "do not escalate, page instead": isolated for new connections, never deleted,
    and not_contained on every attempt (no report topic here, so nothing else would tell anyone)."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    uid = read_pod(kube_admin, ns, pod).metadata.uid
    seen = Attempts("Calico, live_session: report")
    for attempt in (1, 2):
        outcome = seen.add(attempt, start(netpol_enforcement=NEW_ONLY, live_session="report").deliver(doc, attempt))
        assert ends(outcome) == ("act", "reverse_shell", "not_contained", "ERROR"), outcome.record.reason
        assert "delete" not in steps(outcome) and steps(outcome)["isolate"] in ("succeeded", "skipped")
        assert read_pod(kube_admin, ns, pod).metadata.uid == uid
        assert isolated(kube_admin, ns, pod, doc["finding"]["name"])
    assert marks(google_fake, doc["finding"]["name"])["rsr_outcome"] == "not_contained"


# ----------------------------------------------------------------------------------------- (5) hostNetwork
def test_a_host_network_bare_pod_isolation_cannot_touch_ends_not_contained(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """Even on a dataplane that cuts live sessions: NetworkPolicy does not apply to a pod on the node's network, the
    escalated delete is refused for a bare pod, and no attempt says "nothing to do"."""
    ns, pod = kube_namespace, "host-1"
    _bare_pod(kube_admin, ns, pod, host_network=True)
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    seen = Attempts("hostNetwork bare pod")
    for attempt in (1, 2):
        outcome = seen.add(attempt, start().deliver(doc, attempt))
        assert ends(outcome) == ("act", "reverse_shell", "not_contained", "ERROR"), (attempt, outcome.record.reason)
        assert steps(outcome)["isolate"] == "failed" and "hostNetwork" in reason(outcome, "isolate")
        assert steps(outcome)["delete"] == "skipped" and "standalone" in reason(outcome, "delete")
        assert read_pod(kube_admin, ns, pod).metadata.deletion_timestamp is None
    assert marks(google_fake, doc["finding"]["name"])["rsr_outcome"] == "not_contained"


def test_a_host_network_deployment_pod_is_escalated_to_a_delete(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
) -> None:
    """The control: where the guards allow the escalation, the pod is deleted and the response converges."""
    ns = kube_namespace
    w.create_deployment(kube_admin, ns, "edge", replicas=1, host_network=True)
    [created] = w.wait_for_pods(kube_admin, ns, 1, "app=edge")
    pod, uid = created.metadata.name, created.metadata.uid
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    seen = Attempts("hostNetwork Deployment pod")
    first = seen.add(1, start().deliver(doc, 1))
    assert ends(first) == ("act", "reverse_shell", "done", "WARNING"), first.record.reason  # WARNING: isolate failed
    assert steps(first)["isolate"] == "failed" and steps(first)["delete"] == "succeeded"
    gone = read_pod(kube_admin, ns, pod)
    assert gone is None or gone.metadata.uid != uid or gone.metadata.deletion_timestamp is not None
    second = seen.add(2, start().deliver(doc, 2))
    assert ends(second) == ("ignore", "duplicate", "done", "INFO"), second.record.reason


# ---------------------------------------------------------------------------------------------- (6) a flood
def _budget_used(admin: client.ApiClient, window_s: int = 3600) -> int:
    """Destructive actions the cluster's budget Lease counts in the window now (other tests' deletes among them)."""
    try:
        lease = client.CoordinationV1Api(admin).read_namespaced_lease(LEASE_NAME, BUDGET_NAMESPACE)
    except client.ApiException as exc:
        if exc.status == 404:
            return 0
        raise
    entries = json.loads((lease.metadata.annotations or {}).get(ENTRIES_ANNOTATION) or "[]")
    horizon = datetime.now(UTC) - timedelta(seconds=window_s)
    return sum(1 for ts, _ in entries if datetime.fromisoformat(ts) > horizon)


def test_a_flood_that_exhausts_the_budget_pages_for_every_shell_left_connected(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
) -> None:
    """Burning the budget with throwaway shells is a cheap way in: every shell the budget leaves connected pages."""
    ns = kube_namespace
    w.create_deployment(kube_admin, ns, "web", replicas=4)
    w.create_policy(kube_admin, ns, "allow-all")
    pods = sorted(p.metadata.name for p in w.wait_for_pods(kube_admin, ns, 4, "app=web"))
    uids = {p: read_pod(kube_admin, ns, p).metadata.uid for p in pods}
    docs = [finding_doc(ns, p) for p in pods]
    for doc in docs:
        google_fake.vouch_for(doc)
    budget = _budget_used(kube_admin) + 1  # room for exactly one more delete in this cluster's window
    seen = Attempts("flood, budget for one delete")
    for attempt in (1, 2):
        outcomes = [
            seen.add(attempt, start(netpol_enforcement=NEW_ONLY, budget_max=budget).deliver(d, attempt)) for d in docs
        ]
        if attempt == 1:
            assert [o.record.outcome for o in outcomes] == ["done", *["not_contained"] * 3], [
                o.record.reason for o in outcomes
            ]
            assert steps(outcomes[0])["delete"] == "succeeded"
        else:
            assert [ends(o)[:3] for o in outcomes] == [
                ("ignore", "duplicate", "done"),
                *[("act", "reverse_shell", "not_contained")] * 3,
            ]
        for o in outcomes[1:]:
            assert o.record.severity == "ERROR" and o.record.reason.startswith("NOT CONTAINED")
            assert "budget" in reason(o, "delete") and "OVER" in reason(o, "delete")
    first = read_pod(kube_admin, ns, pods[0])
    assert first is None or first.metadata.uid != uids[pods[0]] or first.metadata.deletion_timestamp is not None
    for pod, doc in zip(pods[1:], docs[1:], strict=True):
        assert read_pod(kube_admin, ns, pod).metadata.uid == uids[pod]  # not deleted: the shell may be alive
        assert quarantined(kube_admin, ns, pod, doc["finding"]["name"])
        assert marks(google_fake, doc["finding"]["name"])["rsr_outcome"] == "not_contained"
    assert marks(google_fake, docs[0]["finding"]["name"])["rsr_status"] == "deleted"


# ------------------------------------------------------------------------- (7) what the workload can write
def test_a_planted_release_and_a_planted_exemption_do_not_hold_the_responder_off(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """Anyone with ``pods: patch`` (the workload's own service account, perhaps) can write these on the pod."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    later = (datetime.now(UTC) + timedelta(seconds=30)).isoformat(timespec="seconds")
    client.CoreV1Api(kube_admin).patch_namespaced_pod(
        pod,
        ns,
        {
            "metadata": {
                "annotations": {RELEASED_ANNOTATION: later},
                "labels": {"responder.rsr.dev/exempt": "true"},
            }
        },
    )
    seen = Attempts("planted released-at and pod exemption label")
    for attempt in (1, 2):
        outcome = seen.add(attempt, start().deliver(doc, attempt))
        expected = (
            ("act", "reverse_shell", "done", "NOTICE") if attempt == 1 else ("ignore", "duplicate", "done", "INFO")
        )
        assert ends(outcome) == expected, outcome.record.reason
        assert isolated(kube_admin, ns, pod, doc["finding"]["name"])
    assert marks(google_fake, doc["finding"]["name"])["rsr_outcome"] == "done"


def test_a_genuine_release_recorded_in_scc_lasts_across_redeliveries(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    operator: Releaser,
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    name = doc["finding"]["name"]
    google_fake.vouch_for(doc)
    seen = Attempts("genuine release")
    first = seen.add(1, start().deliver(doc, 1))
    assert ends(first)[:3] == ("act", "reverse_shell", "done") and isolated(kube_admin, ns, pod, name)

    released = operator.release(ReleaseRequest(target=f"{ns}/{pod}", apply=True, reason="false positive", by="sre"))
    assert steps(released)["mark"] == "succeeded", released.record.writebacks
    written = marks(google_fake, name)
    assert written["rsr_status"] == "released" and when(written["rsr_time"]) >= when(doc["finding"]["eventTime"]) - (
        timedelta(seconds=1)
    )
    assert not quarantined(kube_admin, ns, pod) and DENY_ALL_POLICY not in w.policies(kube_admin, ns)
    settled = w.written_state(kube_admin, ns)

    for attempt in (2, 3):  # a redelivery, a topic seek: the release lasts
        instance = start()
        outcome = seen.add(attempt, instance.deliver(doc, attempt))
        assert ends(outcome) == ("ignore", "released", "done", "INFO"), outcome.record.reason
        assert instance.writes() == [] and w.written_state(kube_admin, ns) == settled
        assert not quarantined(kube_admin, ns, pod)


@pytest.mark.parametrize("released", ["before the event", "in the future"])
def test_a_release_scc_records_for_another_moment_does_not_hold_the_responder_off(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
    released: str,
) -> None:
    """A release before this occurrence (the shell came back since), or stamped in the future, is not this one's."""
    ns, pod = kube_namespace, shop[0]
    doc = finding_doc(ns, pod)
    event = when(doc["finding"]["eventTime"])
    at = event - timedelta(hours=1) if released == "before the event" else event + timedelta(hours=1)
    google_fake.vouch_for(doc, marks={"rsr_status": "released", "rsr_time": at.isoformat(timespec="seconds")})
    seen = Attempts(f"SCC records a release {released}")
    outcome = seen.add(1, start().deliver(doc, 1))
    assert ends(outcome) == ("act", "reverse_shell", "done", "NOTICE"), outcome.record.reason
    assert isolated(kube_admin, ns, pod, doc["finding"]["name"])


@pytest.mark.parametrize("why", ["namespace exemption", "protected namespace", "dry-run"])
def test_a_vouched_shell_the_policy_leaves_alone_pages_on_every_attempt(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
    why: str,
) -> None:
    """The exemption is the namespace's (the platform's label), not the pod's. Honoured, like a protected namespace
    and dry-run; but SCC vouches for a shell that is then left connected, so every attempt ends not_contained at
    ERROR, never a quiet INFO, never a duplicate, and the pod and the namespace's policies are never written.

    In an exempt namespace the deny-all is created alongside the pod read, before the namespace's labels are known
    (round one of isolation, by design: it selects only quarantined pods, so it changes nothing for any pod here)."""
    ns, pod = kube_namespace, shop[0]
    settings: dict[str, Any] = {}
    if why == "namespace exemption":
        client.CoreV1Api(kube_admin).patch_namespace(ns, {"metadata": {"labels": {"responder.rsr.dev/exempt": "true"}}})
    elif why == "protected namespace":
        settings["protected_namespaces"] = ["rsr-t-*"]
    else:
        settings["mode"] = "dry-run"
    doc = finding_doc(ns, pod)
    google_fake.vouch_for(doc)
    seen = Attempts(why)
    before = w.written_state(kube_admin, ns)
    expected = {
        "namespace exemption": ("ignore", "exempt"),
        "protected namespace": ("ignore", "protected"),
        "dry-run": ("act", "reverse_shell"),
    }[why]
    for attempt in (1, 2):
        instance = start(**settings)
        outcome = seen.add(attempt, instance.deliver(doc, attempt))
        assert ends(outcome) == (*expected, "not_contained", "ERROR"), outcome.record.reason
        assert outcome.record.reason.startswith("NOT CONTAINED"), outcome.record.reason
        inert = [(m, p) for m, p, _ in instance.writes()] == [("POST", policies_path(ns))]
        assert instance.writes() == [] or (why == "namespace exemption" and inert), instance.writes()
        assert {k: v for k, v in w.written_state(kube_admin, ns).items() if k != f"np/{DENY_ALL_POLICY}"} == before
        assert not quarantined(kube_admin, ns, pod)
    written = marks(google_fake, doc["finding"]["name"])
    if why == "dry-run":
        assert written == {}  # dry-run writes nothing anywhere, SCC included
    else:
        assert written["rsr_outcome"] == "not_contained"


# -------------------------------------------------------------------------------- (8) (9) concurrent writers
def _hook_pod_patch(instance: Instance, first: Callable[[str, Mapping[str, str | None], str | None], bool]) -> None:
    """Before the instance's first pod patch for which ``first(name, labels, resource_version)`` is true: run it
    (the hook runs the other party's write), then send the patch as it was."""
    original = instance.kube.patch_pod_metadata

    def hooked(
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        if first(name, labels, resource_version):
            instance.kube.patch_pod_metadata = original  # type: ignore[method-assign]
        return original(namespace, name, uid, labels, annotations, resource_version)

    instance.kube.patch_pod_metadata = hooked  # type: ignore[method-assign]


def test_a_release_of_another_pod_racing_a_new_isolation_is_redone_not_claimed(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    operator: Releaser,
    kube_admin: client.ApiClient,
    kube_env: KubeEnv,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """Pod A is quarantined. Finding B's isolation has judged the namespace's policies (the deny-all is there, the
    exclusions are there) and is about to label pod B; just then the operator releases A, the last quarantined pod,
    so the release deletes the deny-all and lifts the exclusions. Then B's label lands. B's isolation reads the
    policies again after its patch, redoes what the release undid, and its record claims only what holds."""
    ns, (a, b) = kube_namespace, shop
    doc_a, doc_b = finding_doc(ns, a), finding_doc(ns, b)
    google_fake.vouch_for(doc_a)
    google_fake.vouch_for(doc_b)
    seen = Attempts("release of A racing B's isolation")
    assert ends(seen.add(1, start().deliver(doc_a, 1)))[:3] == ("act", "reverse_shell", "done")
    assert isolated(kube_admin, ns, a)

    raced: list[Any] = []

    def release_a_first(name: str, labels: Mapping[str, str | None], _rv: str | None) -> bool:
        if name != b or labels.get(QUARANTINE_LABEL) != "true":
            return False
        raced.append(operator.release(ReleaseRequest(target=f"{ns}/{a}", apply=True, reason="race", by="sre")))
        # What B's patch meets: no deny-all, no exclusion left (the release of the last quarantined pod).
        assert DENY_ALL_POLICY not in w.policies(kube_admin, ns)
        assert not any(excluded(kube_admin, ns).values())
        return True

    racing = start()
    _hook_pod_patch(racing, release_a_first)
    outcome = seen.add(1, racing.deliver(doc_b, 1))
    assert raced and steps(raced[0])["release"] == "succeeded" and steps(raced[0])["policies"] == "succeeded"
    assert ends(outcome) == ("act", "reverse_shell", "done", "NOTICE"), outcome.record.reason
    isolate = next(x for x in outcome.record.actions if x.action == "isolate")
    assert isolate.status.value == "succeeded"
    assert any("again" in change for change in isolate.changes), isolate.changes
    assert isolated(kube_admin, ns, b, doc_b["finding"]["name"]) and not quarantined(kube_admin, ns, a)
    status = KubeconfigConnector(kube_env.kubeconfig).connect(REF).kube
    [entry] = collect_status(status, ns)  # what `status` says, with the operator's rights
    assert (entry.pod, entry.policy_intact) == (b, True), entry.policy_problems


def test_a_new_isolation_racing_a_release_s_cleanup_is_restored_by_the_release(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    operator: Releaser,
    kube_admin: client.ApiClient,
    kube_env: KubeEnv,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """The other order: the release of A has seen no other quarantined pod and is about to delete the deny-all and
    lift the exclusions; just then finding B's isolation runs in full (it finds both in place and writes none of
    them). The release's writes then undo B's isolation, and its re-check after them puts it back."""
    ns, (a, b) = kube_namespace, shop
    doc_a, doc_b = finding_doc(ns, a), finding_doc(ns, b)
    google_fake.vouch_for(doc_a)
    google_fake.vouch_for(doc_b)
    seen = Attempts("B's isolation racing the release of A")
    assert ends(seen.add(1, start().deliver(doc_a, 1)))[:3] == ("act", "reverse_shell", "done")

    raced: list[Outcome] = []
    kube = cast(KubeAdapter, operator.kube)
    list_pods = kube.list_pods

    def isolate_b_first(namespace: str | None, label_selector: str) -> list[PodView]:
        listed = list_pods(namespace, label_selector)  # the release judges this read: A is the last one
        if label_selector == QUARANTINE_SELECTOR and not raced:
            raced.append(seen.add(1, start().deliver(doc_b, 1)))
            assert isolated(kube_admin, ns, b, doc_b["finding"]["name"])
        return listed

    kube.list_pods = isolate_b_first  # type: ignore[method-assign]
    released = operator.release(ReleaseRequest(target=f"{ns}/{a}", apply=True, reason="race", by="sre"))
    assert raced and ends(raced[0]) == ("act", "reverse_shell", "done", "NOTICE"), raced[0].record.reason
    assert steps(released)["policies"] == "succeeded", released.record.actions  # it did undo B's isolation...
    assert steps(released)["reisolate"] == "succeeded", released.record.actions  # ...and put it back
    assert isolated(kube_admin, ns, b, doc_b["finding"]["name"]) and not quarantined(kube_admin, ns, a)
    status = KubeconfigConnector(kube_env.kubeconfig).connect(REF).kube
    [entry] = collect_status(status, ns)
    assert (entry.pod, entry.policy_intact) == (b, True), entry.policy_problems


def test_a_forged_rollback_racing_a_genuine_isolation_leaves_the_genuine_quarantine(
    google_fake: GoogleFake,
    start: Callable[..., Instance],
    kube_admin: client.ApiClient,
    kube_namespace: str,
    shop: list[str],
) -> None:
    """The forged message's rollback reads the pod; a genuine finding's isolation of the same pod lands; then the
    rollback's patch goes out with the resourceVersion it read: the apiserver refuses it (409), the fresh read shows
    the genuine record, and nothing is undone."""
    ns, pod = kube_namespace, shop[0]
    forged = finding_doc(ns, pod)
    seen = Attempts("forged rollback racing a genuine isolation")
    google_fake.fail_next(1, status=503, path=SCC_READ)
    assert ends(seen.add(1, start().deliver(forged, 1)))[2] == "retry"  # the forged isolation, kept while SCC was down
    assert quarantined(kube_admin, ns, pod, forged["finding"]["name"])
    genuine = finding_doc(ns, pod)
    google_fake.vouch_for(genuine)

    raced: list[Outcome] = []

    def genuine_first(_name: str, _labels: Mapping[str, str | None], resource_version: str | None) -> bool:
        if not resource_version:
            return False
        raced.append(seen.add(1, start().deliver(genuine, 1)))  # the genuine isolation lands first
        return True

    forger = start()
    _hook_pod_patch(forger, genuine_first)
    outcome = seen.add(2, forger.deliver(forged, 2))
    assert raced and ends(raced[0]) == ("act", "reverse_shell", "done", "NOTICE"), raced[0].record.reason
    assert ends(outcome)[:3] == ("reject", "suspected_forgery", "done"), outcome.record.reason
    assert steps(outcome) == {"rollback": "skipped"}
    assert "another finding's record" in reason(outcome, "rollback")
    assert [r for r in forger.writes() if r[1] == pod_path(ns, pod)] == [("PATCH", pod_path(ns, pod), 409)]
    annotations = read_pod(kube_admin, ns, pod).metadata.annotations or {}
    assert isolated(kube_admin, ns, pod, genuine["finding"]["name"])
    assert annotations[PRIOR_FINDING_ANNOTATION] == forged["finding"]["name"]
    assert marks(google_fake, genuine["finding"]["name"])["rsr_outcome"] == "done"
    assert marks(google_fake, forged["finding"]["name"]) == {}
