"""What a token stolen from the pod can do (issue 31, the report side): the RBAC bindings that name the pod's service
account, as the apiserver's authorizer matches them, with their roles' rules; the tokens the identity guard cannot see;
and the report's Identity section, end to end on the in-memory cluster (the RBAC kinds are listed, as on a real one).
The same on the real apiserver, as the responder's identity: tests/integration/test_rights_apiserver.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from responder.errors import Forbidden, Unavailable
from responder.investigation import rights
from responder.ports import ServiceAccountView
from responder.report.builder import build_report
from responder.report.markdown import render_markdown
from responder.report.models import IncidentReport
from responder.report.outcome import Outcome
from tests.notifications import notification
from tests.support.common import deliver
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import make
from tests.unit.test_report import split_markdown

NS, POD, ACCOUNT = "shop", "web-5d9c-abcde", "web"
PROJECT = "example-retail-prod"
FINDING = notification(namespace=NS, pod=POD, container="api", name_suffix="rights")
RBAC = "rbac.authorization.k8s.io"


def binding(
    name: str, role: tuple[str, str], *subjects: dict[str, str], namespace: str | None = None, **labels: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    if labels:
        meta["labels"] = labels
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": role[0], "name": role[1]},
        "subjects": list(subjects),
    }


def role(name: str, *rules: dict[str, list[str]], namespace: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, **({"namespace": namespace} if namespace else {})}, "rules": list(rules)}


def sa(name: str = ACCOUNT, namespace: str | None = None) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


def user(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def group(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def serve(kube: FakeKube, plural: str, *objects: dict[str, Any]) -> None:
    kube.custom_objects[(RBAC, "v1", plural)].extend(objects)


@pytest.fixture
def kube() -> FakeKube:
    """The compromised pod runs as service account ``web``, which names a legacy token Secret."""
    k = FakeKube()
    k.add_web_deployment(NS, POD, "web-5d9c-other")
    k.pods[(NS, POD)] = k.pods[(NS, POD)].model_copy(update={"service_account": ACCOUNT})
    k.service_accounts[(NS, ACCOUNT)] = ServiceAccountView(namespace=NS, name=ACCOUNT, secrets=("web-token-x7k2p",))
    return k


def world(kube: FakeKube) -> None:
    """Bindings that name the account in every way the authorizer accepts, and some that only look as if they do."""
    serve(
        kube,
        "roles",
        role(
            "configmap-writer",
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch"]},
            namespace=NS,
        ),
    )
    serve(
        kube,
        "clusterroles",
        role("secret-reader", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}),
        role("pod-exec", {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}),
        role("pod-lister", {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}),
        role("metrics", {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}),
        role("system:discovery", {"nonResourceURLs": ["/api", "/apis"], "verbs": ["get"]}),
    )
    serve(
        kube,
        "rolebindings",
        # A ServiceAccount subject without a namespace is in the binding's namespace: this one is shop/web.
        binding("web-edit", ("Role", "configmap-writer"), sa(), namespace=NS),
        # A RoleBinding in another namespace may name an account of this one: its rules hold in billing.
        binding("shop-web-reads-billing", ("ClusterRole", "secret-reader"), sa(ACCOUNT, NS), namespace="billing"),
        # Not ours: billing/web (the same name, in the binding's own namespace), and shop's other account.
        binding("billing-web", ("ClusterRole", "secret-reader"), sa(), namespace="billing"),
        binding("other-edit", ("Role", "configmap-writer"), sa("other"), namespace=NS),
    )
    serve(
        kube,
        "clusterrolebindings",
        binding("exec-anywhere", ("ClusterRole", "pod-exec"), user(f"system:serviceaccount:{NS}:{ACCOUNT}")),
        binding("shop-accounts-list-pods", ("ClusterRole", "pod-lister"), group(f"system:serviceaccounts:{NS}")),
        binding("everyone-metrics", ("ClusterRole", "metrics"), group("system:authenticated")),
        # The cluster's own default, which names every authenticated user: left out.
        binding(
            "system:discovery",
            ("ClusterRole", "system:discovery"),
            group("system:authenticated"),
            **{"kubernetes.io/bootstrapping": "rbac-defaults"},
        ),
        # A prefix of the name is not the name.
        binding("web-admin-exec", ("ClusterRole", "pod-exec"), user(f"system:serviceaccount:{NS}:{ACCOUNT}-admin")),
    )


def respond(kube: FakeKube) -> Outcome:
    return deliver(make(kube, vouch=FINDING), FINDING)


def listed(outcome: Outcome) -> dict[str, tuple[str, str]]:
    """Binding → (how it names the account, the role), as the investigation found them."""
    assert outcome.investigation is not None and outcome.investigation.rights is not None
    return {
        f"{g.kind} {g.namespace + '/' if g.namespace else ''}{g.name}": (g.subject, f"{g.role_kind} {g.role_name}")
        for g in outcome.investigation.rights.grants
    }


def identity_of(report: IncidentReport) -> Any:
    assert report.identity is not None
    return report.identity


# ------------------------------------------------------------------------------------------- who names the account


def test_the_bindings_naming_the_account_directly_or_through_its_groups_are_listed_and_no_other(
    kube: FakeKube,
) -> None:
    world(kube)
    outcome = respond(kube)
    assert listed(outcome) == {
        "RoleBinding shop/web-edit": ("ServiceAccount shop/web", "Role configmap-writer"),
        "RoleBinding billing/shop-web-reads-billing": ("ServiceAccount shop/web", "ClusterRole secret-reader"),
        "ClusterRoleBinding exec-anywhere": ("User system:serviceaccount:shop:web", "ClusterRole pod-exec"),
        "ClusterRoleBinding shop-accounts-list-pods": ("Group system:serviceaccounts:shop", "ClusterRole pod-lister"),
        "ClusterRoleBinding everyone-metrics": ("Group system:authenticated", "ClusterRole metrics"),
    }
    found = outcome.investigation.rights  # type: ignore[union-attr]
    assert found is not None and found.defaults_skipped == 1 and found.truncated == 0
    assert outcome.record.enrichment["rights"] == "ok"


def test_what_it_can_write_and_read_is_summed_up_per_scope(kube: FakeKube) -> None:
    world(kube)
    identity = identity_of(build_report(respond(kube)))
    # exec counts as a write whatever its verb: a command in another pod is as good as a write.
    assert identity.can_write == ("pods/exec in every namespace (get)", "configmaps in namespace shop (create, patch)")
    assert set(identity.can_read) == {
        "pods in every namespace (list, watch)",
        "URL /metrics in every namespace (get)",
        "secrets in namespace billing (get, list)",
    }


def test_a_binding_to_a_role_that_does_not_exist_is_listed_as_granting_nothing_yet(kube: FakeKube) -> None:
    serve(kube, "rolebindings", binding("ghost-edit", ("Role", "ghost"), sa(), namespace=NS))
    report = build_report(respond(kube))
    [ghost] = identity_of(report).bindings
    assert (ghost.name, ghost.role_found, ghost.rules) == ("ghost-edit", False, ())
    assert "the role does not exist: it grants nothing until it is created" in render_markdown(report)


def test_a_forbidden_list_is_a_failed_branch_never_an_account_that_can_do_nothing(kube: FakeKube) -> None:
    world(kube)
    kube.raise_on["list_objects"] = Forbidden('rolebindings.rbac.authorization.k8s.io is forbidden: User "x"')
    outcome = respond(kube)
    assert outcome.investigation is not None and outcome.investigation.rights is None
    assert outcome.record.enrichment["rights"].startswith("failed: ")
    report = build_report(outcome)
    md = render_markdown(report)
    assert "not listed (failed: " in md and "which does not mean it has none" in md
    assert "nothing, as far as the bindings say" not in md
    [step] = [t for t in report.response.todo if "service-account token" in t]  # type: ignore[union-attr]
    assert "the bindings could not be listed: kubectl get rolebindings,clusterrolebindings -A -o wide" in step


def test_an_unreachable_apiserver_makes_the_branch_unavailable(kube: FakeKube) -> None:
    kube.raise_on["list_objects"] = Unavailable("connection refused")
    outcome = respond(kube)
    assert outcome.record.enrichment["rights"].startswith("unavailable")


def test_the_bindings_listed_are_capped_and_the_rest_counted(kube: FakeKube) -> None:
    bindings = [binding(f"b-{i:03d}", ("Role", "r"), sa(), namespace=NS) for i in range(rights.MAX_BINDINGS + 7)]
    serve(kube, "rolebindings", *bindings)
    identity = identity_of(build_report(respond(kube)))
    assert (len(identity.bindings), identity.bindings_truncated) == (rights.MAX_BINDINGS, 7)
    assert f"({rights.MAX_BINDINGS}; 7 more not listed)" in render_markdown(build_report(respond(kube)))


# ---------------------------------------------------------------------------------------------------- the report


def test_the_identity_section_names_the_account_its_bindings_and_the_tokens_the_guard_cannot_see(
    kube: FakeKube,
) -> None:
    world(kube)
    report = build_report(respond(kube))
    md = render_markdown(report)
    section = md[md.index("### Identity") : md.index("## 4. Logs")]
    assert "- **Service account**: `system:serviceaccount:shop:web`" in section
    assert "refused by the cluster now" in section and "**Reads are never refused**" in section
    assert "- RoleBinding `shop/web-edit` → Role `configmap-writer`, names it as `ServiceAccount shop/web`" in section
    assert "    - write: `create, patch` on `configmaps`" in section
    assert "through `Group system:serviceaccounts:shop`" in section
    assert "1 default binding(s) of the cluster left out" in section
    assert "`web-token-x7k2p`" in section
    assert "does not cover tokens that are not bound to a pod" in section
    assert "`kubectl get secrets -n shop --field-selector type=kubernetes.io/service-account-token`" in section
    # Its writes since the event are searched and shown here, not again with the pod's searches.
    assert "#### Writes made with the pod's service account" in section
    assert 'principalEmail="system:serviceaccount:shop:web"' in section
    assert md.count('principalEmail="system:serviceaccount:shop:web"') == 1
    # The next step points at the section rather than repeating it.
    [step] = [t for t in report.response.todo if "service-account token" in t]  # type: ignore[union-attr]
    assert "(5 binding(s) in step 3, Identity)" in step and "rolebindings,clusterrolebindings" not in step


def test_without_the_annotation_the_google_identity_is_the_federation_principal(kube: FakeKube) -> None:
    identity = identity_of(build_report(respond(kube)))
    assert identity.google_identity_source == "principal"
    assert identity.google_identity == (
        "principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/"
        f"{PROJECT}.svc.id.goog/subject/ns/{NS}/sa/{ACCOUNT}"
    )


def test_in_dry_run_the_section_says_its_writes_are_not_refused(kube: FakeKube) -> None:
    report = build_report(deliver(make(kube, mode="dry-run", vouch=FINDING), FINDING))
    identity = identity_of(report)
    assert identity.writes_refused is False
    assert "**not refused**" in render_markdown(report)


HOSTILE = "x`` \n## 9. Owned\n[click](javascript:alert(1)) <img src=x onerror=alert(1)>"


def test_hostile_names_from_the_cluster_stay_inside_their_code_spans(kube: FakeKube) -> None:
    """Anyone who may write RBAC objects chooses resource names, resourceNames and a role's name: none of it may
    become Markdown structure in the report."""
    serve(
        kube,
        "clusterroles",
        role(HOSTILE, {"apiGroups": [HOSTILE], "resources": [HOSTILE], "resourceNames": [HOSTILE], "verbs": ["*"]}),
    )
    serve(kube, "rolebindings", binding("evil", ("ClusterRole", HOSTILE), sa(), namespace=NS))
    kube.service_accounts[(NS, ACCOUNT)] = ServiceAccountView(namespace=NS, name=ACCOUNT, secrets=(HOSTILE,))
    md = render_markdown(build_report(respond(kube)))
    outside, _ = split_markdown(md)
    shown = [line for line in outside if "Owned" in line]
    assert len(shown) >= 4  # the role, its rule, the two summaries, the Secret
    for line in shown:
        plain = CODE_SPAN.sub("", line)  # what Markdown reads as structure, once every code span is taken out
        assert "Owned" not in plain and "<img" not in plain and "](javascript:" not in plain, line
    assert not any(line.lstrip().startswith("## 9.") for line in outside)


CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
