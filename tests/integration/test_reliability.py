"""Reliability under load, faults and hostile input, against the real kube-apiserver as the responder's identity.

- 100 findings x 10 concurrent deliveries: exactly-once effects from at-least-once delivery.
- 30% faults at the apiserver (``bench/latency_proxy.py``: resets, lost replies, stalls; a TCP proxy over TLS cannot
  forge an HTTP 503, see its docstring) and at the Google wire fakes (503, 429, hang → 504): every finding is
  contained in the end through in-call retries and simulated Pub/Sub redelivery, none is lost.
- A poison corpus through the real functions-framework server: every delivery acknowledged (HTTP 200), one record each.
- A forged finding (SCC does not know it): no destructive action.

Each test prints its figures (``pytest -s`` or the CI log shows them).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bench.latency_proxy import FAULT_MODES, LatencyProxy
from responder.bootstrap import build_dependencies
from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
from responder.intake.envelope import Delivery
from responder.report.outcome import Outcome
from responder.service import Responder
from tests.notifications import PUBSUB_TYPE, b64, message_published, notification, structured_cloudevent
from tests.support import workloads as w
from tests.support.google_fakes import GoogleFake

pytestmark = pytest.mark.integration

DEPLOYMENTS = 10
REPLICAS = 10
ALLOWING = ["allow-all", *(f"allow-web{i}" for i in range(DEPLOYMENTS))]  # each selects some of the 100 pods
POLICY = "version: 1\ndefaults:\n  budget: {max_actions: 100000, window_s: 3600}\n"
THREADS = 16
MAX_ROUNDS = 12


# ------------------------------------------------------------------------------------------------------ helpers


@dataclass
class Finding:
    """One seeded finding and the pod it names."""

    doc: dict[str, Any]
    namespace: str
    pod: str
    uid: str

    @property
    def name(self) -> str:
        return str(self.doc["finding"]["name"])

    def delivery(self, attempt: int = 1) -> Delivery:
        return Delivery(payload=json.dumps(self.doc).encode(), shape="test", delivery_attempt=attempt)


@dataclass
class Tally:
    """What the deliveries produced (thread-safe enough: appends and Counter updates under the GIL per call)."""

    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    isolate: Counter[str] = field(default_factory=Counter)

    def run(self, responder: Responder, finding: Finding, attempt: int) -> Outcome | None:
        try:
            outcome = responder.respond(finding.delivery(attempt))
        except Exception as exc:  # the contract: respond() never raises; a bug would lose the message
            self.errors.append(f"{finding.name}: {type(exc).__name__}: {exc}")
            return None
        self.outcomes.append(outcome)
        for action in outcome.record.actions:
            if action.action == "isolate":
                self.isolate[action.status.value] += 1
        return outcome

    @property
    def retries(self) -> int:
        return sum(1 for o in self.outcomes if o.retry)


def shop(admin: client.ApiClient, namespace: str) -> list[Any]:
    """10 Deployments x 10 replicas (``app=webN``), an allowing policy per Deployment, allow-all, allow-nothing."""
    w.create_policy(admin, namespace, "allow-all")
    w.create_policy(admin, namespace, "allow-nothing", {"app": "nothing"})
    for i in range(DEPLOYMENTS):
        w.create_deployment(admin, namespace, f"web{i}", replicas=REPLICAS)
        w.create_policy(admin, namespace, f"allow-web{i}", {"app": f"web{i}"})
    return w.wait_for_pods(admin, namespace, DEPLOYMENTS * REPLICAS, timeout_s=120)


def seed(fake: GoogleFake, namespace: str, pods: list[Any], tag: str) -> list[Finding]:
    findings = []
    for i, pod in enumerate(sorted(pods, key=lambda p: p.metadata.name)):
        doc = notification(namespace=namespace, pod=pod.metadata.name, container="api", name_suffix=f"{tag}{i:04d}")
        fake.vouch_for(doc)
        findings.append(Finding(doc, namespace, pod.metadata.name, pod.metadata.uid))
    return findings


def responder_for(fake: GoogleFake, kubeconfig: Path, tmp_path: Path, action: str = "isolate") -> Responder:
    """The production composition root (bootstrap) in enforce mode, SCC/Logging on the wire fake."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = fake.settings(mode="enforce", action=action, kubeconfig=kubeconfig, policy_file=policy)
    return Responder(build_dependencies(settings))


def contained_state(admin: client.ApiClient, namespace: str, findings: list[Finding]) -> list[str]:
    """What is wrong with the namespace, read back with the admin client (empty: every finding contained once)."""
    problems = []
    labelled = w.pods(admin, namespace, f"{QUARANTINE_LABEL}=true")
    if len(labelled) != len(findings):
        problems.append(f"{len(labelled)} pods carry the quarantine label, expected {len(findings)}")
    live = {p.metadata.name: p.metadata.uid for p in w.pods(admin, namespace)}
    for f in findings:
        if live.get(f.pod) != f.uid:
            problems.append(f"{f.pod}: gone or replaced (uid {live.get(f.pod)} != {f.uid})")
    policies = w.policies(admin, namespace)
    if sum(1 for name in policies if name == DENY_ALL_POLICY) != 1:
        problems.append("no deny-all policy")
    for name, policy in policies.items():
        exprs = policy.spec.pod_selector.match_expressions or []
        exclusions = sum(1 for e in exprs if e.key == QUARANTINE_LABEL and e.operator == "NotIn")
        expected = 1 if name in ALLOWING else 0
        if exclusions != expected:
            problems.append(f"policy {name}: {exclusions} NotIn exclusions, expected {expected}")
    return problems


@pytest.fixture
def hundred_pods(kube_admin: client.ApiClient, kube_namespace: str) -> list[Any]:
    return shop(kube_admin, kube_namespace)


# ------------------------------------------------------------------------------------------ duplicates at scale


def test_100_findings_delivered_10_times_concurrently_are_contained_exactly_once(
    kube_admin: client.ApiClient,
    kube_paths: Any,
    kube_namespace: str,
    hundred_pods: list[Any],
    google_fake: GoogleFake,
    tmp_path: Path,
) -> None:
    findings = seed(google_fake, kube_namespace, hundred_pods, "dup")
    responder = responder_for(google_fake, kube_paths.responder_kubeconfig, tmp_path)
    deliveries = [f for f in findings for _ in range(10)]
    random.Random(7).shuffle(deliveries)
    tally = Tally()
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda f: tally.run(responder, f, 1), deliveries))
    elapsed = time.monotonic() - started
    problems = contained_state(kube_admin, kube_namespace, findings)
    print(
        f"\n[reliability] duplicates: findings={len(findings)} deliveries={len(deliveries)} threads={THREADS} "
        f"containments={tally.isolate['succeeded']} already_isolated={tally.isolate['skipped']} "
        f"isolate_failed={tally.isolate['failed']} retries={tally.retries} errors={len(tally.errors)} "
        f"labelled={len(w.pods(kube_admin, kube_namespace, f'{QUARANTINE_LABEL}=true'))} "
        f"wall={elapsed:.1f}s ({len(deliveries) / elapsed:.0f} deliveries/s)"
    )
    assert not tally.errors, tally.errors[:5]
    assert tally.retries == 0, [o.record.reason for o in tally.outcomes if o.retry][:5]
    assert len(tally.outcomes) == len(deliveries)
    # A delivery that finds its finding's containment already in place (annotation, label, deny-all and exclusions
    # by content) is one record saying so; every other one acts.
    kinds = {
        (o.record.verdict.value, o.record.code if o.record.verdict.value == "ignore" else "") for o in tally.outcomes
    }
    assert kinds <= {("act", ""), ("ignore", "duplicate")}, kinds
    acted = {o.record.finding for o in tally.outcomes if o.record.verdict.value == "act"}
    assert len(acted) == len(findings)  # every finding was acted on by at least one delivery
    assert tally.isolate["failed"] == 0
    assert not problems, problems
    # Every finding got a labelled pod; the succeeded count can exceed 100 only through idempotent re-writes.
    assert tally.isolate["succeeded"] >= len(findings)


# ----------------------------------------------------------------------------------------------- fault injection


@pytest.fixture
def faulty_apiserver(kube_paths: Any, tmp_path: Path) -> Iterator[tuple[LatencyProxy, Path]]:
    """The apiserver behind the proxy: requests reset, lost after being applied, or stalled then reset."""
    proxy = LatencyProxy.for_kubeconfig(kube_paths.responder_kubeconfig, fault_ratio=0.3, stall_s=1.0, seed=11)
    proxy.start()
    kubeconfig = proxy.write_kubeconfig(kube_paths.responder_kubeconfig, tmp_path / "faulty.kubeconfig")
    yield proxy, kubeconfig
    proxy.stop()


def test_faults_at_the_apiserver_and_google_apis_lose_no_finding(
    kube_admin: client.ApiClient,
    kube_namespace: str,
    hundred_pods: list[Any],
    google_fake: GoogleFake,
    faulty_apiserver: tuple[LatencyProxy, Path],
    tmp_path: Path,
) -> None:
    proxy, kubeconfig = faulty_apiserver
    findings = seed(google_fake, kube_namespace, hundred_pods, "flt")
    google_fake.fail_ratio = 0.3
    google_fake.hang_s = 1.0  # "hang" = 1 s, then 504 (below the adapters' 10 s timeout, to keep the suite fast)
    google_fake.reseed(5)
    responder = responder_for(google_fake, kubeconfig, tmp_path)
    tally = Tally()
    pending = list(findings)
    per_round: list[int] = []
    rounds = 0
    started = time.monotonic()
    # Pub/Sub redelivery, simulated: every delivery whose outcome asks for a retry (or that raised) comes back.
    # Round 1 is an outage (every apiserver request reset), so redelivery is exercised and not only in-call retries;
    # from round 2 on, 30% of requests fail.
    while pending and rounds < MAX_ROUNDS:
        rounds += 1
        outage = rounds == 1
        proxy.fault_ratio, proxy.fault_modes = (1.0, ("reset",)) if outage else (0.3, FAULT_MODES)
        attempt = rounds

        def deliver(f: Finding, attempt: int = attempt) -> Finding | None:
            outcome = tally.run(responder, f, attempt)
            return f if outcome is None or outcome.retry else None

        with ThreadPoolExecutor(THREADS) as pool:
            pending = [f for f in pool.map(deliver, pending) if f is not None]
        per_round.append(len(pending))
    elapsed = time.monotonic() - started
    google_fake.fail_ratio = 0.0
    problems = contained_state(kube_admin, kube_namespace, findings)
    stats = proxy.stats.as_dict()
    print(
        f"\n[reliability] faults: findings={len(findings)} deliveries={len(tally.outcomes) + len(tally.errors)} "
        f"rounds={rounds} pending_after_each_round={per_round} retries(redeliveries requested)={tally.retries} "
        f"containments={tally.isolate['succeeded']} isolate_failed={tally.isolate['failed']} "
        f"errors={len(tally.errors)} apiserver_faults={stats['fault_total']}/{stats['eligible']} {stats['faults']} "
        f"google_faults={google_fake.faults_injected}/{len(google_fake.requests)} wall={elapsed:.1f}s"
    )
    assert not tally.errors, tally.errors[:5]
    assert stats["fault_total"] > 0 and google_fake.faults_injected > 0  # the faults really happened
    assert per_round[0] > 0, "the outage round should have asked for redelivery"
    assert not pending, f"{len(pending)} findings still asking for redelivery after {rounds} rounds"
    assert not problems, problems


# ----------------------------------------------------------------------------------------------- poison corpus


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _binary(data: bytes | dict[str, Any], event_type: str = PUBSUB_TYPE) -> tuple[bytes, dict[str, str]]:
    """A binary-mode CloudEvent as Eventarc sends it: ce-* headers, MessagePublishedData as the body."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return body, {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": event_type,
        "ce-source": "//pubsub.googleapis.com/projects/example-secops/topics/scc-findings",
        "ce-id": "poison",
    }


def _message(raw: bytes) -> tuple[bytes, dict[str, str]]:
    """Pub/Sub message data ``raw`` (any bytes), inside a well-formed envelope."""
    return _binary(message_published(raw))


def poison_corpus() -> dict[str, tuple[bytes, dict[str, str], set[str]]]:
    """Name → (body, headers, acceptable verdicts). Each is a delivery Eventarc could really make; none may be retried.

    Huge arguments are hostile in size only: the finding is otherwise valid, so the verdict is ``act`` (the pod it
    names does not exist here, so nothing is written); everything else must be rejected or ignored.
    """
    good = json.dumps(notification()).encode()
    hostile = {
        "namespace path traversal": {"namespace": "../../kube-system"},
        "pod shell metacharacters": {"pod": "web; rm -rf / #"},
        "pod newline + fake record": {"pod": 'web\n{"verdict": "act"}'},
        "namespace upper case": {"namespace": "Storefront"},
        "pod 300 characters": {"pod": "a" * 300},
        "log filter injection": {"pod": 'web" OR logName:"projects/x'},
        "container quote": {"container": 'api"; DROP'},
        "ANSI escape": {"namespace": "\x1b[31mred"},
        "NUL byte": {"pod": "web\x00x"},
        "unicode homoglyph": {"namespace": "st\u043erefront"},  # a Cyrillic o
    }
    huge_args = [{"name": "bash", "args": ["x" * 2_000_000], "binary": {"path": "/bin/sh"}}]
    many_args = [{"name": "bash", "args": ["-c"] * 20_000}]
    envelopes: dict[str, tuple[bytes, dict[str, str]]] = {
        "truncated JSON": _message(good[: len(good) // 2]),
        "truncated by one byte": _message(good[:-1]),
        "not UTF-8": _message(b"\xff\xfe\xfd" + good),
        "latin-1 inside JSON": _message(good.replace(b"storefront", b"st\xf6refront")),
        "empty message data": _message(b""),
        "JSON array": _message(b"[1, 2, 3]"),
        "JSON string": _message(b'"Reverse Shell"'),
        "JSON null": _message(b"null"),
        "deeply nested": _message(b"[" * 100_000 + b"]" * 100_000),
        "finding is null": _message(json.dumps({"finding": None}).encode()),
        "no finding": _message(json.dumps({"notificationConfigName": "x"}).encode()),
        "wrong category": _message(json.dumps(notification(category="Malware: Cryptomining Bad Domain")).encode()),
        "not a GKE resource": _message(
            json.dumps(notification(resource="//compute.googleapis.com/projects/p/zones/z/instances/i")).encode()
        ),
        "eventTime garbage": _message(json.dumps(notification(eventTime="yesterday at noon")).encode()),
        "wrong event type (storage)": _binary(message_published(good), "google.cloud.storage.object.v1.finalized"),
        "wrong event type (audit log)": _binary(message_published(good), "google.cloud.audit.log.v1.written"),
        "data not base64": _binary({"message": {"data": "!!! not base64 !!!", "messageId": "1"}}),
        "data not a string": _binary({"message": {"data": 42, "messageId": "1"}}),
        "no message": _binary({"subscription": "projects/p/subscriptions/s"}),
        "data is a list": _binary(b"[]"),
        "structured, wrong type": (
            json.dumps(structured_cloudevent(notification(), event_type="com.example.other")).encode(),
            {"Content-Type": "application/cloudevents+json"},
        ),
        "base64 of base64": _binary({"message": {"data": b64(b64(notification()).encode()), "messageId": "1"}}),
    }
    for label, ids in hostile.items():
        envelopes[f"hostile: {label}"] = _message(json.dumps(notification(**ids)).encode())
    corpus = {name: (body, headers, {"reject", "ignore"}) for name, (body, headers) in envelopes.items()}
    corpus["huge args (2 MB)"] = (*_message(json.dumps(notification(processes=huge_args)).encode()), {"act"})
    corpus["20000 args"] = (*_message(json.dumps(notification(processes=many_args)).encode()), {"act"})
    return corpus


def test_poison_corpus_is_acknowledged_with_one_record_each(
    function_server_factory: Callable[[dict[str, str]], Any], kube_paths: Any, google_fake: GoogleFake
) -> None:
    server = function_server_factory(
        {
            "RESPONDER_KUBECONFIG": str(kube_paths.responder_kubeconfig),
            "RESPONDER_MODE": "enforce",
            "RESPONDER_ACTION": "isolate",
            "RESPONDER_SCC_ENDPOINT": google_fake.url,
            "RESPONDER_LOGGING_ENDPOINT": google_fake.url,
            "RESPONDER_CONTAINER_ENDPOINT": google_fake.url,
            "RESPONDER_ANONYMOUS_GOOGLE": "true",
        }
    )
    corpus = poison_corpus()
    # The huge-but-valid ones name a real finding (about a pod not here). SCC's record is read after the messages were
    # built: its eventTime is not earlier than theirs (a message whose event is later than SCC's is refuted).
    google_fake.vouch_for(notification())
    statuses: dict[str, int] = {}
    for name, (body, headers, _) in corpus.items():  # one at a time, so record i belongs to delivery i
        statuses[name] = _post(server.url + "/", body, headers)
    server.wait_for_records(len(corpus), timeout_s=60)
    time.sleep(0.5)  # a second record for one delivery would show up now
    records = server.records()
    verdicts = Counter(r["verdict"] for r in records)
    print(
        f"\n[reliability] poison: deliveries={len(corpus)} http={dict(Counter(statuses.values()))} "
        f"records={len(records)} verdicts={dict(verdicts)}"
    )
    not_acked = {name: status for name, status in statuses.items() if status != 200}
    assert not not_acked, not_acked
    assert len(records) == len(corpus)
    for (name, (_, _, allowed)), record in zip(corpus.items(), records, strict=True):
        assert record["verdict"] in allowed, (name, record["verdict"], record["reason"])
        assert record["outcome"] == "done", (name, record["reason"])
        written = [a for a in record["actions"] if a["status"] == "succeeded"]
        assert not written, (name, written)  # nothing in the cluster was touched


# ----------------------------------------------------------------------------------------------------- forgery


def test_forged_finding_causes_no_destructive_action(
    kube_admin: client.ApiClient, kube_paths: Any, kube_namespace: str, google_fake: GoogleFake, tmp_path: Path
) -> None:
    w.create_deployment(kube_admin, kube_namespace, "web", replicas=2)
    target = w.wait_for_pods(kube_admin, kube_namespace, 2, "app=web")[0]
    # SCC (the fake) knows nothing about this finding: only the notification claims it exists.
    responder = responder_for(google_fake, kube_paths.responder_kubeconfig, tmp_path, action="delete")
    forged = Finding(
        notification(namespace=kube_namespace, pod=target.metadata.name, container="api", name_suffix="forged0001"),
        kube_namespace,
        target.metadata.name,
        target.metadata.uid,
    )
    outcome = responder.respond(forged.delivery())
    actions = {a.action: a for a in outcome.record.actions}
    still_there = client.CoreV1Api(kube_admin).read_namespaced_pod(target.metadata.name, kube_namespace)
    print(
        f"\n[reliability] forged: delete={actions['delete'].status.value} ({actions['delete'].reason}); "
        f"pod uid unchanged={still_there.metadata.uid == target.metadata.uid}"
    )
    assert actions["delete"].status.value == "skipped"
    assert "not verified" in actions["delete"].reason
    assert still_there.metadata.uid == target.metadata.uid
    assert still_there.metadata.deletion_timestamp is None
    assert google_fake.requests_to("GET", "*/findings"), "verification asked SCC"
