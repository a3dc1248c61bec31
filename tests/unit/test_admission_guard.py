"""deploy/kubernetes/admission-guard.yaml, evaluated offline (tests/integration/test_guard_live.py: on the apiserver).

Two evaluators run the policy's own CEL: tests/support/admission_guard.py (cel-python, in process: here) and
tests/support/celguard.py (k8s.io/apiserver's CEL environment and admission code, built with Go: what a 1.30+
apiserver refuses to create fails there; tests/guard/test_kubernetes_cel.py, a tier of its own because it needs Go and
the module proxy). Here: every expression compiled; the request fixtures in tests/fixtures/admission/*.yaml (each
allowed and each refused kind of request, and requests of other users, which the guard must not touch); the
responder's real writes, made by running it against an in-memory cluster that puts the guard in front of every write
(tests/guard replays the same writes through the Go evaluator); and both manifest objects checked against the official
Kubernetes 1.30 schema (and the newest one known).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes_validate
import pytest
import yaml

from responder.config import Settings
from responder.containment.budget import ENTRIES_ANNOTATION, LEASE_NAME
from responder.containment.capture import PROCESS_TREE_ARGV
from responder.containment.keys import DENY_ALL_POLICY, MANAGED_BY, QUARANTINE_LABEL
from responder.containment.shape import deny_all_body
from responder.errors import Conflict, Forbidden, NotFound
from responder.intake.envelope import Delivery
from responder.policy.rules import PROTECTED_FLOOR, PolicyEngine, parse_policy
from responder.ports import ExecOutput, LabelSelector, LabelSelectorRequirement, LeaseView, NetworkPolicyView, PodView
from responder.service import Dependencies, Responder
from tests.notifications import notification
from tests.support import celguard
from tests.support.admission_guard import (
    IDENTITY,
    IDENTITY_MANIFEST,
    LEASES,
    MANIFEST,
    PODS,
    POLICIES,
    REPO_ROOT,
    Decision,
    Guard,
    admission_request,
    load_guard,
    manifest_documents,
)
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube, selector_json

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "admission"
OLDEST_SUPPORTED = "1.30"  # ValidatingAdmissionPolicy went GA (admissionregistration.k8s.io/v1) in Kubernetes 1.30


@pytest.fixture(scope="module")
def guard() -> Guard:
    return load_guard()


# ---------------------------------------------------------------------------------------------- the manifest


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, kubernetes_validate.latest_version()])
def test_manifest_objects_match_the_kubernetes_schema(version: str) -> None:
    documents = manifest_documents()
    assert [d["kind"] for d in documents] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_the_identity_guard_matches_the_kubernetes_schema(version: str) -> None:
    """deploy/kubernetes/identity-guard.yaml (issue 31): its policy and binding, with the parameter the responder
    keeps. (What only the apiserver checks, such as "*/*" beside another resource, `make kube-up` meets.)"""
    documents = [d for d in yaml.safe_load_all(IDENTITY_MANIFEST.read_text()) if d]
    assert [d["kind"] for d in documents] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    policy, binding = documents
    assert policy["spec"]["failurePolicy"] == "Fail" and policy["spec"]["paramKind"]["kind"] == "ConfigMap"
    assert binding["spec"]["paramRef"] == {
        "name": "rsr-quarantined-identities",
        "namespace": "responder-system",
        "parameterNotFoundAction": "Allow",  # no parameter: nothing is refused, never every pod's writes
    }


def test_the_api_the_guard_needs_does_not_exist_before_1_30() -> None:
    policy = manifest_documents()[0]
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(policy, "1.29", strict=True)


def test_manifest_is_a_terraform_template_with_one_variable() -> None:
    text = MANIFEST.read_text()
    # templatefile() treats every ${...} and %{...} as template syntax: only the identity may appear.
    assert set(re.findall(r"\$\{([^}]*)\}", text)) == {"responder_identity"}
    assert "%{" not in text
    # Terraform splits manifests on "\n---\n" (terraform/locals.tf); the same split must give the same objects.
    chunks = [yaml.safe_load(c) for c in f"\n{text}\n".split("\n---\n")]
    assert [c["kind"] for c in chunks if c] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def test_binding_enforces_the_policy_and_the_policy_fails_closed() -> None:
    policy, binding = manifest_documents()
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert "Deny" in binding["spec"]["validationActions"]
    assert "matchResources" not in binding["spec"]  # who is affected is decided by the match condition alone
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_every_expression_compiles(guard: Guard) -> None:
    assert len(guard.validations) >= 10
    assert [name for name, _ in guard.match_conditions] == ["responder-identity-only"]


def test_the_guard_follows_the_identity_it_is_rendered_for() -> None:
    other = "responder@prod-project.iam.gserviceaccount.com"
    rendered = load_guard(other)
    delete_deployment = admission_request(
        "DELETE", {"group": "apps", "version": "v1", "resource": "deployments"}, namespace="shop", name="web"
    )
    assert not rendered.review(delete_deployment, None, {"metadata": {"name": "web"}}).matched  # the test identity
    as_other = admission_request(
        "DELETE",
        {"group": "apps", "version": "v1", "resource": "deployments"},
        namespace="shop",
        name="web",
        user=other,
    )
    assert rendered.review(as_other, None, {"metadata": {"name": "web"}}).refusals


# ------------------------------------------------------------------------------------------------ the fixtures


def _cases() -> list[Any]:
    params = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


CASES = _cases()


def _review(guard: Guard, case: Mapping[str, Any]) -> Decision:
    request = fixture_request(case)
    return guard.review(request.request, request.obj, request.old)


def fixture_request(case: Mapping[str, Any]) -> celguard.Request:
    spec = case["request"]
    request = admission_request(
        spec["operation"],
        spec["resource"],
        namespace=spec.get("namespace", ""),
        name=spec.get("name", ""),
        sub_resource=spec.get("subResource", ""),
        user=spec.get("user", IDENTITY),
    )
    return celguard.Request(request, case.get("object"), case.get("oldObject"))


@pytest.mark.parametrize("case", CASES)
def test_fixture(guard: Guard, case: Mapping[str, Any]) -> None:
    check_fixture(_review(guard, case), case)


def check_fixture(decision: Decision, case: Mapping[str, Any]) -> None:
    """The decision is what the fixture expects (tests/guard holds the Go evaluator's to the same)."""
    expect = case["expect"]
    if expect == "unmatched":
        assert not decision.matched, decision
    elif expect == "allow":
        assert decision.matched and decision.allowed, decision.refusals
    else:
        assert expect == "deny", expect
        assert decision.matched and decision.refusals, "expected a refusal"
        assert any(case["refusal"] in message for message in decision.refusals), decision.refusals
        assert not any("error" in message for message in decision.refusals), decision.refusals


def test_every_rule_refuses_something_in_the_fixtures(guard: Guard) -> None:
    """No validation is dead weight: each one is the reason for at least one refusal among the fixtures."""
    seen: set[str] = set()
    for param in CASES:
        seen.update(_review(guard, param.values[0]).refusals)
    assert {message for message, _ in guard.validations} <= seen


def test_fixtures_cover_allowed_refused_and_unmatched_requests_for_every_operation() -> None:
    cases = [p.values[0] for p in CASES]
    assert {c["expect"] for c in cases} == {"allow", "deny", "unmatched"}
    assert {c["request"]["operation"] for c in cases} == {"CREATE", "UPDATE", "DELETE", "CONNECT"}


# ------------------------------------------------------------------------ the responder's own writes, as code


def _pod_object(pod: PodView) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid}
    if pod.labels:
        metadata["labels"] = dict(pod.labels)
    if pod.annotations:
        metadata["annotations"] = dict(pod.annotations)
    if pod.owners:
        metadata["ownerReferences"] = [
            {"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid, "controller": o.controller}
            for o in pod.owners
        ]
    containers = [{"name": c.name, "image": c.image} for c in pod.containers]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": containers}}


def _policy_object(view: NetworkPolicyView) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": view.name, "namespace": view.namespace}
    if view.labels:
        metadata["labels"] = dict(view.labels)
    spec = dict(getattr(view, "spec", None) or {})  # the whole spec, where the view carries it
    spec["podSelector"] = selector_json(view.pod_selector)
    spec["policyTypes"] = list(view.policy_types)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


def _lease_object(namespace: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY), "annotations": dict(annotations)}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": {}}


class GuardedKube(FakeKube):
    """The in-memory cluster, with the guard in front of every write, as the apiserver would have it.

    Each write is turned into the admission request the real adapter (responder/adapters/kube.py) causes: the pod
    patch is a strategic merge of labels and annotations, the selector change a JSON merge patch of
    spec.podSelector, exec a CONNECT with the argv in PodExecOptions. A refusal raises Forbidden, like a 403.
    """

    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard
        self.reviewed: list[tuple[str, Decision]] = []
        self.requests: list[celguard.Request] = []  # to replay through the Go evaluator afterwards

    def _admit(self, what: str, request: dict[str, Any], obj: Any, old: Any) -> None:
        decision = self.guard.review(request, obj, old)
        self.reviewed.append((what, decision))
        self.requests.append(celguard.Request(request, json.loads(json.dumps(obj)), json.loads(json.dumps(old))))
        if not decision.matched or not decision.allowed:
            raise Forbidden(f"{what}: {decision}")

    def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        uid: str,
        labels: Mapping[str, str | None],
        annotations: Mapping[str, str | None],
        resource_version: str | None = None,
    ) -> PodView:
        with self.lock:
            old = self.pods[(namespace, name)]
            new_labels = {k: v for k, v in {**old.labels, **labels}.items() if v is not None}
            new_annotations = {k: v for k, v in {**old.annotations, **annotations}.items() if v is not None}
            new = old.model_copy(update={"labels": new_labels, "annotations": new_annotations})
            request = admission_request("UPDATE", PODS, namespace=namespace, name=name)
            self._admit(f"patch pod {name}", request, _pod_object(new), _pod_object(old))
            return super().patch_pod_metadata(namespace, name, uid, labels, annotations, resource_version)

    def delete_pod(self, namespace: str, name: str, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            old = self.pods[(namespace, name)]
            request = admission_request("DELETE", PODS, namespace=namespace, name=name)
            self._admit(f"delete pod {name}", request, None, _pod_object(old))
            super().delete_pod(namespace, name, *args, **kwargs)

    # NetworkPolicies are kept here in full (spec with rules), as the apiserver stores them, so the responder's
    # judgement of the deny-all's content sees what a real server would answer.
    def _store_policy(self, obj: dict[str, Any]) -> NetworkPolicyView:
        metadata, spec = obj["metadata"], obj["spec"]
        selector = spec.get("podSelector") or {}
        fields: dict[str, Any] = {
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "resource_version": self.rv(),
            "pod_selector": LabelSelector(
                match_labels=selector.get("matchLabels") or {},
                match_expressions=tuple(
                    LabelSelectorRequirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
                    for e in selector.get("matchExpressions") or ()
                ),
            ),
            "policy_types": tuple(spec.get("policyTypes") or ()),
            "labels": dict(metadata.get("labels") or {}),
        }
        if "spec" in NetworkPolicyView.model_fields:
            fields["spec"] = spec
        view = NetworkPolicyView(**fields)
        self.policies[(view.namespace, view.name)] = view
        self.writes.append(f"write networkpolicy {view.name}")
        return view

    def create_network_policy(self, namespace: str, body: dict[str, Any]) -> NetworkPolicyView:
        self._maybe_fail("create_network_policy")
        obj = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        name = body["metadata"]["name"]
        with self.lock:
            if (namespace, name) in self.policies:
                raise Conflict(f"networkpolicy {name} exists")
            request = admission_request("CREATE", POLICIES, namespace=namespace, name=name)
            self._admit(f"create networkpolicy {name}", request, obj, None)
            return self._store_policy(obj)

    def _update_policy(
        self, verb: str, namespace: str, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], version: Any
    ) -> NetworkPolicyView:
        with self.lock:
            try:
                current = self.policies[(namespace, name)]
            except KeyError:
                raise NotFound(name) from None
            if version and current.resource_version != version:
                raise Conflict("resourceVersion")
            old = _policy_object(current)
            new = change(old)
            request = admission_request("UPDATE", POLICIES, namespace=namespace, name=name)
            self._admit(f"{verb} networkpolicy {name}", request, new, old)
            return self._store_policy(new)

    def set_network_policy_selector(
        self, namespace: str, name: str, selector: LabelSelector, resource_version: str | None
    ) -> NetworkPolicyView:
        self._maybe_fail("set_network_policy_selector")
        return self._update_policy(
            "patch",
            namespace,
            name,
            lambda old: {**old, "spec": {**old["spec"], "podSelector": selector_json(selector)}},
            resource_version,
        )

    def replace_network_policy(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> NetworkPolicyView:
        self._maybe_fail("replace_network_policy")
        return self._update_policy(
            "replace",
            namespace,
            name,
            lambda old: {**old, "metadata": {**old["metadata"], "labels": dict(labels)}, "spec": spec},
            resource_version,
        )

    def exec(
        self, namespace: str, name: str, container: str | None, argv: list[str], *args: Any, **kwargs: Any
    ) -> ExecOutput:
        # The adapter sends stdin=False and tty=False, which the apiserver leaves out of PodExecOptions.
        options = {"kind": "PodExecOptions", "apiVersion": "v1", "stdout": True, "stderr": True, "command": argv}
        if container:
            options["container"] = container
        request = admission_request("CONNECT", PODS, namespace=namespace, name=name, sub_resource="exec")
        self._admit(f"exec {' '.join(argv)}", request, options, None)
        return super().exec(namespace, name, container, argv, *args, **kwargs)

    def create_lease(self, namespace: str, name: str, annotations: Mapping[str, str]) -> LeaseView:
        request = admission_request("CREATE", LEASES, namespace=namespace, name=name)
        self._admit(f"create lease {name}", request, _lease_object(namespace, name, annotations), None)
        return super().create_lease(namespace, name, annotations)

    def update_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], resource_version: str | None
    ) -> LeaseView:
        with self.lock:
            old = self.leases[(namespace, name)]
            request = admission_request("UPDATE", LEASES, namespace=namespace, name=name)
            self._admit(
                f"update lease {name}",
                request,
                _lease_object(namespace, name, annotations),
                _lease_object(namespace, name, old.annotations),
            )
            return super().update_lease(namespace, name, annotations, resource_version)


EVERYTHING = """
defaults: {mode: enforce, verify_finding: false, budget: {max_actions: 100}}
rules:
  - name: everything
    actions: [{action: label}, {action: isolate, detach: true}, {action: capture}, {action: delete}]
"""


def write_everything(guard: Guard) -> GuardedKube:
    """The responder, every action in its policy, on two findings in a namespace with allowing, default-deny and
    budget objects, behind the guard; the cluster afterwards (its ``requests`` are every write, to replay)."""
    kube = GuardedKube(guard)
    findings = FakeFindings()
    kube.add_workload("shop", "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
    kube.add_workload("shop", "Deployment", "web")
    kube.add_policy("shop", "allow-all")  # empty selector: every pod
    kube.add_policy("shop", "allow-web", LabelSelector(match_labels={"app": "web"}))
    # Allows nothing: the guard refuses the exclusion there, so the responder must leave it alone.
    kube.add_policy("shop", "default-deny", policy_types=("Ingress", "Egress"), rules=False)
    settings = Settings(mode="enforce")
    # A counter with an entry long out of the window: the guard refuses pruning it, so the responder must append.
    expired = json.dumps([["2020-01-01T00:00:00+00:00", "organizations/1/sources/2/findings/old"]])
    FakeKube.create_lease(kube, settings.budget_namespace, LEASE_NAME, {ENTRIES_ANNOTATION: expired})
    responder = Responder(
        Dependencies(
            settings=settings,
            policy=PolicyEngine(parse_policy(EVERYTHING), settings),
            connector=FakeConnector(kube),
            findings_api=findings,
        )
    )
    counter = itertools.count()
    for pod in ("web-5d9c-aaaaa", "web-5d9c-bbbbb"):  # two findings: the budget Lease is created, then updated
        kube.add_pod("shop", pod, {"app": "web", "pod-template-hash": "5d9c", "team": "payments"})
        doc = notification(namespace="shop", pod=pod, container="api", name_suffix=f"guard{next(counter)}")
        findings.add(doc["finding"]["name"])
        outcome = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
        statuses = {a.action: (a.status.value, a.reason) for a in outcome.record.actions}
        assert statuses["isolate"][0] == "succeeded", statuses
        assert statuses["delete"][0] == "succeeded", statuses
        assert "process tree" in statuses["capture"][1], statuses
    return kube


def test_every_write_the_responder_makes_passes_the_guard(guard: Guard) -> None:
    kube = write_everything(guard)
    refused = [(what, d) for what, d in kube.reviewed if not d.allowed]
    assert refused == []
    kinds = {what.split(" ")[0] + " " + what.split(" ")[1] for what, _ in kube.reviewed}
    assert kinds == {
        "create networkpolicy",
        "patch networkpolicy",
        "patch pod",
        "exec ps",
        "exec cat",
        "update lease",
        "delete pod",
    }, kinds
    assert kube.policies[("shop", "default-deny")].pod_selector.match_expressions == ()
    entries = json.loads(kube.leases[(Settings().budget_namespace, LEASE_NAME)].annotations[ENTRIES_ANNOTATION])
    assert len(entries) == 3 and entries[0][1] == "organizations/1/sources/2/findings/old"


def test_the_guard_knows_the_code_s_names() -> None:
    """The literals in the manifest are the constants the code writes with."""
    text = MANIFEST.read_text()
    body = deny_all_body()
    assert body["metadata"]["name"] == DENY_ALL_POLICY and f"'{DENY_ALL_POLICY}'" in text
    assert f"'{QUARANTINE_LABEL}'" in text
    assert QUARANTINE_LABEL.startswith("responder.rsr.dev/") and "'responder.rsr.dev/'" in text
    assert f"'{LEASE_NAME}'" in text and f"'{Settings().budget_namespace}'" in text
    assert "['" + "', '".join(PROCESS_TREE_ARGV) + "']" in text
    for key, value in MANAGED_BY.items():
        assert f"'{key}'" in text and f"'{value}'" in text


@pytest.mark.parametrize("pattern", PROTECTED_FLOOR)
def test_the_guard_protects_the_code_s_protected_floor(guard: Guard, pattern: str) -> None:
    """Every namespace the responder's policy can never act in is one the cluster refuses it to write in."""
    namespace = pattern.replace("*", "managed-x").replace("?", "x")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}, "spec": {}}
    request = admission_request("DELETE", PODS, namespace=namespace, name="p")
    decision = guard.review(request, None, pod)
    expected = "in responder-system" if namespace == Settings().budget_namespace else "protected namespace"
    assert any(expected in message for message in decision.refusals), (namespace, decision.refusals)


def repair_and_roll_back(guard: Guard) -> tuple[GuardedKube, PodView]:
    """The writes that only happen under attack: replacing a squatting 'deny-all' and undoing a forged quarantine.
    The cluster afterwards, and the pod as it was before."""
    kube = GuardedKube(guard)
    kube.add_workload("shop", "ReplicaSet", "web-5d9c", owner=("Deployment", "web"))
    kube.add_policy("shop", "allow-web", LabelSelector(match_labels={"app": "web"}))
    kube.add_policy("shop", DENY_ALL_POLICY, LabelSelector(match_labels={"selects": "nothing"}))  # the squatter
    before = kube.add_pod("shop", "web-5d9c-ccccc", {"app": "web", "pod-template-hash": "5d9c"})
    settings = Settings(mode="enforce")
    responder = Responder(
        Dependencies(
            settings=settings,
            policy=PolicyEngine(
                parse_policy(EVERYTHING.replace("verify_finding: false", "verify_finding: true")), settings
            ),
            connector=FakeConnector(kube),
            findings_api=FakeFindings(),  # SCC knows nothing: the message is refuted
        )
    )
    doc = notification(namespace="shop", pod="web-5d9c-ccccc", container="api", name_suffix="forgedguard")
    outcome = responder.respond(Delivery(payload=json.dumps(doc).encode(), shape="test"))
    statuses = {a.action: (a.status.value, a.reason) for a in outcome.record.actions}
    assert statuses["isolate"][0] == "succeeded" and "impostor" in statuses["isolate"][1], statuses
    assert statuses["rollback"][0] == "succeeded", statuses
    assert statuses["detach"][0] == "skipped" and "not verified" in statuses["detach"][1], statuses
    return kube, before


def test_the_rollback_of_a_refuted_delivery_and_the_repair_of_an_impostor_pass_the_guard(guard: Guard) -> None:
    kube, before = repair_and_roll_back(guard)
    assert [(what, d) for what, d in kube.reviewed if not d.allowed] == []
    after = kube.pods[("shop", "web-5d9c-ccccc")]
    assert after.labels == before.labels  # never detached: the detach waited for SCC, which refuted the message
    assert not any(k.startswith("responder.rsr.dev/") for k in after.annotations)
    assert after.uid == before.uid
