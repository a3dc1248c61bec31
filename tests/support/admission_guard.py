"""An offline evaluator for deploy/kubernetes/admission-guard.yaml (a ValidatingAdmissionPolicy).

The local kube-apiserver (1.35) runs the guard itself; the unit tier has no apiserver, and FakeKube puts this
evaluator in front of every write instead. This module evaluates the policy's own expressions, read from the manifest, with a CEL interpreter (cel-python), the way the
apiserver does (tests/support/celguard.py runs them in Kubernetes' own CEL environment, which also catches what a
1.30+ apiserver would refuse to create; this one is in process, so it can judge each of the responder's writes): match constraints and match conditions first (the guard applies to the responder's identity only),
then the variables, then every validation; a validation that is not true refuses the request (failurePolicy Fail: an
error refuses too). Requests are shaped as the apiserver builds them (see admission_request).

Used by tests/unit/test_admission_guard.py (fixtures, the responder's writes on an in-memory cluster), by
tests/guard/test_kubernetes_cel.py (which judges the same requests again in Go) and by
tests/integration/test_least_authority.py (objects exactly as a real apiserver stored them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy.evaluation import CELEvalError

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "deploy" / "kubernetes" / "admission-guard.yaml"
IDENTITY_MANIFEST = REPO_ROOT / "deploy" / "kubernetes" / "identity-guard.yaml"  # issue 31: a second policy
IDENTITY = "responder@rsr-test.iam.gserviceaccount.com"  # what tools/kubeenv.py and the tests call the responder
PODS = {"group": "", "version": "v1", "resource": "pods"}
POLICIES = {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"}
LEASES = {"group": "coordination.k8s.io", "version": "v1", "resource": "leases"}


def manifest_documents(identity: str = IDENTITY) -> list[dict[str, Any]]:
    """The manifest's objects, rendered for `identity` as Terraform's templatefile() would."""
    text = MANIFEST.read_text().replace("${responder_identity}", identity)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_guard(identity: str = IDENTITY) -> Guard:
    """The policy of the manifest, compiled."""
    return Guard(next(d for d in manifest_documents(identity) if d["kind"] == "ValidatingAdmissionPolicy"))


@dataclass(frozen=True)
class Decision:
    """What the apiserver would do with one request."""

    matched: bool  # False: the guard does not apply to this request at all
    refusals: tuple[str, ...] = ()  # messages of the validations that did not hold

    @property
    def allowed(self) -> bool:
        return not self.refusals


def _substring(text: Any, start: Any, end: Any = None) -> Any:
    """cel-go's ``string.substring(start[, end])``: code points, and an error (not a clamp) when out of range."""
    value, first = str(text), int(start)
    last = len(value) if end is None else int(end)
    if not 0 <= first <= last <= len(value):
        return CELEvalError(f"substring({first}, {last}) out of range for a string of length {len(value)}")
    return celpy.celtypes.StringType(value[first:last])


def _split(text: Any, separator: Any) -> Any:
    """cel-go's ``string.split(separator)``."""
    return celpy.celtypes.ListType([celpy.celtypes.StringType(part) for part in str(text).split(str(separator))])


# The functions of cel-go's strings extension that the guard uses (Kubernetes' CEL environment enables the
# extension; cel-python only has CEL's standard library). tests/support/celguard.py runs the real ones.
_STRINGS_EXTENSION = {"substring": _substring, "split": _split}


class Guard:
    """One ValidatingAdmissionPolicy, its expressions compiled by cel-python."""

    def __init__(self, policy: dict[str, Any]) -> None:
        env = celpy.Environment()
        spec = policy["spec"]

        def compiled(expression: str) -> Any:
            return env.program(env.compile(expression), functions=_STRINGS_EXTENSION)

        self.spec = spec
        self.match_conditions = [(c["name"], compiled(c["expression"])) for c in spec.get("matchConditions", [])]
        self.variables = [(v["name"], compiled(v["expression"])) for v in spec.get("variables", [])]
        self.validations = [(v["message"], compiled(v["expression"])) for v in spec["validations"]]

    def constrained(self, request: Mapping[str, Any]) -> bool:
        """spec.matchConstraints.resourceRules ("*/*" is every resource and subresource)."""
        resource, sub = request["resource"], request.get("subResource", "")
        for rule in self.spec["matchConstraints"]["resourceRules"]:
            if not ({"*", request["operation"]} & set(rule["operations"])):
                continue
            if not ({"*", resource["group"]} & set(rule["apiGroups"])):
                continue
            if not ({"*", resource["version"]} & set(rule["apiVersions"])):
                continue
            for pattern in rule["resources"]:
                res_pattern, _, sub_pattern = pattern.partition("/")
                if pattern == "*/*" or (
                    (res_pattern in {"*", resource["resource"]} and sub_pattern == sub) or (sub and sub_pattern == "*")
                ):
                    return True
        return False

    def review(self, request: Mapping[str, Any], obj: Any = None, old: Any = None) -> Decision:
        if not self.constrained(request):
            return Decision(matched=False)
        activation: dict[str, Any] = {
            "request": celpy.json_to_cel(dict(request)),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
        }
        for name, program in self.match_conditions:
            result = _evaluate(program, activation)
            if isinstance(result, CELEvalError):  # failurePolicy Fail: a broken match condition refuses
                return Decision(matched=True, refusals=(f"match condition {name} failed: {result}",))
            if result is not True:
                return Decision(matched=False)
        # cel-go evaluates variables lazily, so an error in one only matters where it is used; keeping errors as
        # values gives the same result, since CEL's && and || absorb an error when the other side decides.
        variables: dict[Any, Any] = {}
        activation["variables"] = celpy.celtypes.MapType(variables)
        for name, program in self.variables:
            variables[celpy.celtypes.StringType(name)] = _raw(program, activation)
            activation["variables"] = celpy.celtypes.MapType(variables)
        refusals = []
        for message, program in self.validations:
            result = _evaluate(program, activation)
            if result is not True:
                refusals.append(message if result is False else f"{message} (error: {result})")
        return Decision(matched=True, refusals=tuple(refusals))


def _raw(program: Any, activation: Mapping[str, Any]) -> Any:
    try:
        return program.evaluate(dict(activation))
    except CELEvalError as exc:
        return exc


def _evaluate(program: Any, activation: Mapping[str, Any]) -> bool | CELEvalError:
    result = _raw(program, activation)
    if isinstance(result, CELEvalError):
        return result
    return bool(result) if isinstance(result, celpy.celtypes.BoolType) else CELEvalError(f"not a bool: {result!r}")


def admission_request(
    operation: str,
    resource: Mapping[str, str],
    *,
    namespace: str = "",
    name: str = "",
    sub_resource: str = "",
    user: str | None = IDENTITY,
) -> dict[str, Any]:
    """An AdmissionRequest as CEL sees it: fields left empty are absent (the API types mark them omitempty)."""
    request: dict[str, Any] = {
        "uid": "7d2c9a5e-0000-4000-8000-000000000001",
        "resource": dict(resource),
        "requestResource": dict(resource),
        "operation": operation,
        "userInfo": {"username": user, "groups": ["system:authenticated"]}
        if user
        else {"groups": ["system:unauthenticated"]},
    }
    for key, value in (("namespace", namespace), ("name", name), ("subResource", sub_resource)):
        if value:
            request[key] = value
    if sub_resource:
        request["requestSubResource"] = sub_resource
    return request
