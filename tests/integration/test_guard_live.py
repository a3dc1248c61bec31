"""The admission guard enforced by the real apiserver (Kubernetes 1.35, the local cluster's version).

`make kube-up` (and the session cluster of tests/support/kube.py) installs deploy/kubernetes/rbac.yaml,
rbac-capture.yaml and admission-guard.yaml. Here:
- every admission fixture (tests/fixtures/admission/, the table the offline tiers evaluate with cel-python and with
  Kubernetes' own CEL) whose user is the responder is tried on the live apiserver as the responder's identity
  (tests/support/admission_live.py). A write RBAC grants is sent, as a dry run, and must be allowed or refused by the
  guard exactly as the fixture says, with the fixture's refusal in the apiserver's message; a write RBAC refuses is
  refused before admission, and the fixture must say deny (RBAC never refuses what the responder needs). One table
  drives all three evaluators, so they cannot drift;
- the responder's own writes through its KubeAdapter pass;
- a guard refusal of the responder's isolation ends `not_contained`, with the guard's message in the record.
Under RSR_KUBE=1.20, which predates ValidatingAdmissionPolicy, the module is skipped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from responder.adapters.kube import KubeAdapter
from responder.adapters.kube_connect import KubeconfigConnector
from responder.config import Settings
from responder.containment.keys import AT_ANNOTATION, FINDING_ANNOTATION, QUARANTINE_LABEL
from responder.containment.shape import deny_all_body
from responder.intake.envelope import Delivery
from responder.policy.rules import Policy, PolicyEngine
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import admission_live as live
from tests.support import workloads as w
from tests.support.admission_guard import Decision, Guard, load_guard, manifest_documents
from tests.support.kube import KubeEnv
from tests.unit.test_admission_guard import CASES, fixture_request

pytestmark = pytest.mark.integration

POLICY = next(d for d in manifest_documents() if d["kind"] == "ValidatingAdmissionPolicy")["metadata"]["name"]
IMAGE = "registry.invalid/shop:1"  # never pulled: these pods do not tolerate the node's taint
LIVE_CASES = [case for case in CASES if "user" not in case.values[0]["request"]]  # the responder's own requests
TABLE: dict[str, str] = {}  # case -> how the live apiserver answered, printed at the end of the module


@pytest.fixture(autouse=True)
def _guard_runs_here(kube_env: KubeEnv) -> None:
    if kube_env.version.startswith("1.20."):
        pytest.skip("RSR_KUBE=1.20 predates ValidatingAdmissionPolicy: no guard runs there")


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if TABLE:
        counts = Counter(TABLE.values())
        print(f"\n[guard-live] {len(TABLE)} fixture cases on the live apiserver: {dict(sorted(counts.items()))}")
        for name, how in sorted(TABLE.items()):
            print(f"[guard-live]   {how:<24} {name}")


def test_the_guard_is_installed_and_bound(kube_admin: client.ApiClient) -> None:
    api = client.AdmissionregistrationV1Api(kube_admin)
    policy = api.read_validating_admission_policy(POLICY)
    assert policy.status.observed_generation == policy.metadata.generation
    assert not (policy.status.type_checking and policy.status.type_checking.expression_warnings)
    assert api.read_validating_admission_policy_binding(POLICY).spec.validation_actions == ["Deny", "Audit"]


@pytest.fixture(scope="module")
def guard() -> Guard:
    return load_guard()


def _offline(guard: Guard, case: Mapping[str, Any]) -> Decision:
    request = fixture_request(case)
    return guard.review(request.request, request.obj, request.old)


@pytest.mark.parametrize("case", LIVE_CASES)
def test_fixture_on_the_live_apiserver(
    case: Mapping[str, Any],
    guard: Guard,
    kube_env: KubeEnv,
    kube_admin: client.ApiClient,
    kube_responder: client.ApiClient,
    kube_namespace: str,
) -> None:
    request, expect = case["request"], case["expect"]
    replay = live.Replay(kube_admin, kube_responder, kube_namespace, case)
    if not live.rbac_allows(kube_admin, kube_env.responder_identity, request, replay.namespace()):
        assert expect == "deny", f"RBAC refuses what the responder must be able to do: {case['name']}"
        TABLE[case["name"]] = "refused by RBAC"
        return  # refused by the authorizer, before admission; the guard's refusal is proven offline
    assert live.replayable(case), f"RBAC grants this write but the live replay cannot send it: {case['name']}"
    with live.replayed(kube_admin, kube_responder, kube_namespace, case) as answer:
        if expect == "allow":
            assert not answer.refused_by_guard and answer.status != 403, answer
            if request["operation"] != "CONNECT":  # an admitted exec then fails: no node runs the pod
                assert answer.status in (200, 201, 202), answer
            TABLE[case["name"]] = f"admitted ({answer.status})"
        else:
            # The apiserver names the first validation that fails; the offline evaluator lists every one (the
            # fixture names one of them). The live reason must be one the offline evaluator gives.
            assert answer.refused_by_guard, answer
            assert f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request" in answer.message
            offline = _offline(guard, case)
            assert any(case["refusal"] in m for m in offline.refusals), offline
            assert any(answer.message.endswith(m) for m in offline.refusals), (answer.message, offline.refusals)
            TABLE[case["name"]] = "refused by the guard"


def test_the_responders_own_writes_pass(
    kube_admin: client.ApiClient, kube_responder: client.ApiClient, kube_namespace: str
) -> None:
    ns = kube_namespace
    shop = w.create_pod(kube_admin, ns, "shop", {"app": "shop", "tier": "web"})
    kube = KubeAdapter(kube_responder)
    patched = kube.patch_pod_metadata(
        ns,
        "shop",
        shop.metadata.uid,
        {QUARANTINE_LABEL: "true"},
        {
            FINDING_ANNOTATION: "organizations/1/sources/2/findings/guard-live",
            AT_ANNOTATION: "2026-12-07T00:00:00+00:00",
        },
    )
    assert patched.labels[QUARANTINE_LABEL] == "true" and patched.labels["tier"] == "web"
    policy = kube.create_network_policy(ns, deny_all_body())
    assert policy.name == "rsr-quarantine-deny-all"


def _protect_in_guard(admin: client.ApiClient, namespace: str) -> Callable[[], None]:
    """Add ``namespace`` to the live guard's protected namespaces (as a platform team would, beyond the responder's
    own floor); returns the undo."""
    api = client.AdmissionregistrationV1Api(admin)
    policy = api.read_validating_admission_policy(POLICY)
    original = [v.expression for v in policy.spec.variables]
    for variable in policy.spec.variables:
        if variable.name == "protectedNamespace":
            variable.expression = f"variables.requestNamespace == '{namespace}' || ({variable.expression})"
    api.replace_validating_admission_policy(POLICY, policy)

    def undo() -> None:
        current = api.read_validating_admission_policy(POLICY)
        for variable, expression in zip(current.spec.variables, original, strict=True):
            variable.expression = expression
        api.replace_validating_admission_policy(POLICY, current)

    return undo


def test_a_guard_refusal_of_the_responder_ends_not_contained_with_the_guard_s_message(
    kube_env: KubeEnv, kube_admin: client.ApiClient, kube_responder: client.ApiClient, kube_namespace: str
) -> None:
    """The guard refuses the responder's isolation (the namespace is protected by the platform in the guard, not by
    the responder's policy): a 403 with the guard's own message in the record, never retried, never `done`: the
    delivery ends `not_contained` at ERROR, which pages a person."""
    admin, responder, guarded = kube_admin, kube_responder, kube_namespace
    core = client.CoreV1Api(admin)
    body = {
        "metadata": {"name": "secrets-0", "labels": {"app": "vault"}},
        "spec": {"containers": [{"name": "c", "image": IMAGE}]},
    }
    core.create_namespaced_pod(guarded, body)
    undo = _protect_in_guard(admin, guarded)
    try:
        probe = {"metadata": {"labels": {QUARANTINE_LABEL: "true"}}}
        deadline = time.monotonic() + 30
        while True:  # the apiserver's policy informer takes the change in a moment
            try:
                client.CoreV1Api(responder).patch_namespaced_pod("secrets-0", guarded, probe, dry_run="All")
            except ApiException as exc:
                if exc.status == 403:
                    break
                raise
            assert time.monotonic() < deadline, "the guard never took the added protected namespace"
            time.sleep(0.5)
        settings = Settings(mode="enforce", action="isolate", verify_finding=False, netpol_enforcement="established")
        deps = Dependencies(
            settings=settings,
            policy=PolicyEngine(Policy(), settings),
            connector=KubeconfigConnector(kube_env.responder_kubeconfig),
        )
        doc = notification(namespace=guarded, pod="secrets-0", container="c")
        pod = core.read_namespaced_pod("secrets-0", guarded)
        doc["finding"]["eventTime"] = pod.metadata.creation_timestamp.isoformat().replace("+00:00", "Z")
        outcome = Responder(deps).respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
        record = outcome.record
        assert (record.outcome, record.severity) == ("not_contained", "ERROR"), record
        isolate = next(a for a in record.actions if a.action == "isolate")
        assert isolate.status.value == "failed" and "forbidden" in isolate.reason, isolate
        assert POLICY in isolate.reason and "protected namespace" in isolate.reason, isolate.reason
        assert record.reason.startswith("NOT CONTAINED")
        live = core.read_namespaced_pod("secrets-0", guarded)
        assert QUARANTINE_LABEL not in (live.metadata.labels or {})  # the guard held: nothing was written there
        assert not client.NetworkingV1Api(admin).list_namespaced_network_policy(guarded).items
    finally:
        undo()
