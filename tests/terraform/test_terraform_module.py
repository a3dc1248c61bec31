"""Offline checks of the Terraform module in terraform/.

`terraform validate` and `plan` need the google provider, which needs the network, so these tests read the module with
python-hcl2 and prove what matters for this product: every operator setting of ``responder.config.Settings`` reaches
the function, delivery retries and dead-letters without any step outside Terraform, a fresh project needs nothing but
`terraform init` + `terraform apply` (every API enabled, every resource waiting for it), only SCC may publish to the
findings topic, every identity holds exactly its least-privilege role set, the protected namespaces keep their floor,
and the Kubernetes manifests are rendered from deploy/kubernetes/ rather than copied. Where a terraform binary is
available, the provider-free part of the module (variables.tf + locals.tf) is also evaluated by real Terraform, so the
validation rules and the derived values are exercised, not just read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from responder.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
RBAC_MANIFEST = ROOT / "deploy" / "kubernetes" / "rbac.yaml"
CAPTURE_MANIFEST = ROOT / "deploy" / "kubernetes" / "rbac-capture.yaml"
ADMISSION_GUARD_MANIFEST = ROOT / "deploy" / "kubernetes" / "admission-guard.yaml"
IDENTITY_GUARD_MANIFEST = ROOT / "deploy" / "kubernetes" / "identity-guard.yaml"  # shipped with the admission guard
GUARD_FILES = ["deploy/kubernetes/admission-guard.yaml", "deploy/kubernetes/identity-guard.yaml"]

# Settings that only make sense for local tests and must never be set by Terraform. `google_apis` defaults to
# "auto", which turns the Google adapters on in Cloud Functions (K_SERVICE is set there).
WIRING_ONLY = {
    "scc_endpoint",
    "logging_endpoint",
    "container_endpoint",
    "anonymous_google",
    "kubeconfig",
    "google_apis",
    "k_service",  # set by the platform
    "pubsub_emulator_host",  # set by tests
    "login_name",  # set by the operator's shell, read by `release` only
}

# Settings Terraform exports that the application reads (they were exported ahead of it once; kept as a check that
# they stay operator settings).
PENDING_APP_SETTINGS = {"gke_endpoint", "process_capture", "netpol_enforcement", "live_session", "identity"}
NETPOL_ENFORCEMENT = ["auto", "established", "new-only", "none"]

PROTECTED_FLOOR = {
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "gke-*",
    "gke-managed-*",
    "gmp-*",
    "config-management-system",
    "config-management-*",
    "resource-group-system",
    "responder-system",
}

FUNCTION = ("google_cloudfunctions2_function", "responder")
FUNCTION_SA_REF = "google_service_account.function."

EXPECTED_FUNCTION_ROLES = {
    "roles/container.clusterViewer",
    "roles/logging.viewer",
    "roles/securitycenter.findingsViewer",
    "roles/securitycenter.findingSecurityMarksWriter",
    "roles/securitycenter.findingsStateSetter",
    "roles/pubsub.publisher",
    "roles/run.invoker",  # on its own Cloud Run service, with Direct VPC egress only
}
PRIMITIVE_ROLE = re.compile(r"roles/(owner|editor|viewer)\b")
ROLE = re.compile(r"roles/[A-Za-z0-9_.]+")


# --- loading -------------------------------------------------------------------------------------------------------


@dataclass
class Module:
    """The merged top-level blocks of every .tf file of the module."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    moved: list[dict[str, str]] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(
            f,
            serialization_options=hcl2.SerializationOptions(
                strip_string_quotes=True, explicit_blocks=False, with_comments=False
            ),
        )


@cache
def module() -> Module:
    mod = Module()
    for path in sorted(TF_DIR.glob("*.tf")):
        doc = _load(path)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    assert (rtype, name) not in mod.resources, f"duplicate resource {rtype}.{name}"
                    mod.resources[(rtype, name)] = body
        for block in doc.get("data", []):
            for dtype, named in block.items():
                for name, body in named.items():
                    mod.data[(dtype, name)] = body
        for block in doc.get("variable", []):
            mod.variables.update(block)
        for block in doc.get("locals", []):
            for key, value in block.items():
                assert key not in mod.locals, f"local.{key} defined twice"
                mod.locals[key] = value
        for block in doc.get("output", []):
            mod.outputs.update(block)
        mod.terraform.extend(doc.get("terraform", []))
        for block in doc.get("provider", []):
            mod.providers.extend(block.items())
        for block in doc.get("module", []):
            mod.modules.update(block)
        mod.moved.extend(doc.get("moved", []))
    return mod


def tf_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TF_DIR.glob("*.tf")))


def resource(rtype: str, name: str) -> dict[str, Any]:
    mod = module()
    assert (rtype, name) in mod.resources, f"missing resource {rtype}.{name}"
    return mod.resources[(rtype, name)]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` (hcl2 serialises blocks as lists)."""
    value = body[name]
    assert isinstance(value, list), f"{name} is not a block"
    assert len(value) == 1, f"expected one {name} block"
    return value[0]


def local_refs(expr: Any) -> set[str]:
    return set(re.findall(r"\blocal\.([A-Za-z0-9_]+)", json.dumps(expr)))


def expand_locals(expr: Any) -> str:
    """`expr` and, recursively, the definitions of the locals it references, as one string."""
    seen: set[str] = set()
    parts = [json.dumps(expr)]
    todo = list(local_refs(expr))
    while todo:
        name = todo.pop()
        if name in seen or name not in module().locals:
            continue
        seen.add(name)
        value = module().locals[name]
        parts.append(json.dumps(value))
        todo.extend(local_refs(value))
    return "\n".join(parts)


def roles_of(body: dict[str, Any]) -> set[str]:
    """Roles an IAM member resource can grant: a literal role, or the roles its for_each draws from."""
    role = body["role"]
    if ROLE.fullmatch(role):
        return {role}
    assert role.startswith("${each.value"), f"unresolvable role expression {role!r}"
    return set(ROLE.findall(expand_locals(body["for_each"])))


def iam_members() -> dict[tuple[str, str], dict[str, Any]]:
    return {key: body for key, body in module().resources.items() if key[0].endswith("_iam_member")}


# --- the function's environment --------------------------------------------------------------------------------------


def operator_settings() -> set[str]:
    return (set(Settings.model_fields) - WIRING_ONLY) | PENDING_APP_SETTINGS


def test_wiring_only_settings_still_exist() -> None:
    # If one of these is renamed, the exclusion list above must follow, or a test knob could leak into production.
    assert set(Settings.model_fields) >= WIRING_ONLY


def test_every_operator_setting_is_wired_into_the_function_environment() -> None:
    service = block(resource(*FUNCTION), "service_config")
    assert service["environment_variables"] == "${local.responder_env}"

    # Unset toggles are dropped rather than exported empty: null means "let the policy file decide".
    assert re.fullmatch(
        r"\$\{\{for (\w+), (\w+) in local\.responder_env_candidates : \1 => \2 if \2 != null\}\}",
        module().locals["responder_env"],
    ), module().locals["responder_env"]

    candidates = module().locals["responder_env_candidates"]
    expected = {f"RESPONDER_{name.upper()}" for name in operator_settings()}
    assert set(candidates) == expected, (
        f"missing: {sorted(expected - set(candidates))}, not operator settings: {sorted(set(candidates) - expected)}"
    )


def test_wiring_only_settings_are_never_set_by_terraform() -> None:
    candidates = module().locals["responder_env_candidates"]
    for name in WIRING_ONLY:
        assert f"RESPONDER_{name.upper()}" not in candidates
    # Nowhere else either, with one exception: the replay environment (an output for a shell, never the function's)
    # turns Google APIs on, because their default, auto, is off outside Cloud Functions.
    for line in tf_text().splitlines():
        named = {name for name in WIRING_ONLY if f"RESPONDER_{name.upper()}" in line}
        if not named:
            continue
        assert named == {"google_apis"}, line
        stripped = line.strip()
        assert (
            stripped.startswith(("#", "description "))
            or '[for k, v in merge(local.responder_env, { RESPONDER_GOOGLE_APIS = "on" }) :' in stripped
        ), line


def test_optional_toggles_default_to_null_and_are_not_exported_when_unset() -> None:
    candidates = module().locals["responder_env_candidates"]
    variables = module().variables
    optional = 0
    for key, expr in candidates.items():
        refs = re.findall(r"\bvar\.([a-z0-9_]+)", expr)
        if not refs:
            continue
        var = variables[refs[0]]
        if var.get("default", "absent") is None:
            optional += 1
            # Either the bare variable (null stays null) or an explicit null guard around a conversion.
            assert expr == f"${{var.{refs[0]}}}" or expr.startswith(f"${{var.{refs[0]} == null ? null : "), (key, expr)
    assert optional >= 9, "the policy toggles should mostly be optional"


def test_safety_defaults() -> None:
    variables = module().variables
    assert variables["mode"]["default"] == "dry-run"
    assert variables["mode"].get("nullable") is False
    assert variables["action"]["default"] is None
    assert variables["min_instances"]["default"] == 0
    assert variables["manage_kubernetes_rbac"]["default"] is False
    assert variables["set_inactive"]["default"] is False
    assert variables["enable_process_capture"]["default"] is False  # no exec unless asked for
    assert variables["enable_admission_guard"]["default"] is True
    assert variables["enable_dead_letter"]["default"] is True
    assert variables["protected_namespaces"]["default"] == []  # the floor is not a default that can be replaced
    assert variables["gke_endpoint"]["default"] == "auto"
    assert variables["netpol_enforcement"]["default"] == "auto"  # the responder's own default
    assert variables["enable_monitoring"]["default"] is True  # a failure reaches a person unless switched off
    assert variables["rbac_cluster_endpoint"]["default"] == "ip"


def test_report_topic_is_wired_to_the_report_topic() -> None:
    candidates = module().locals["responder_env_candidates"]
    assert candidates["RESPONDER_REPORT_TOPIC"] == "${local.report_topic_id}"
    assert module().locals["report_topic_id"] == "projects/${var.project_id}/topics/${local.names.reports_topic}"
    reports = resource("google_pubsub_topic", "reports")
    assert reports["name"] == "${local.names.reports_topic}"
    assert reports["project"] == "${var.project_id}"


# --- build and trigger -----------------------------------------------------------------------------------------------


def test_function_is_gen2_python_with_the_right_entry_point() -> None:
    build = block(resource(*FUNCTION), "build_config")
    assert build["entry_point"] == "handle_finding"
    assert build["runtime"] == "${var.runtime}"
    assert module().variables["runtime"]["default"] in {"python311", "python312"}
    assert build["service_account"] == "${google_service_account.build.id}"
    storage = block(block(build, "source"), "storage_source")
    assert storage["bucket"] == "${google_storage_bucket.source.name}"
    assert storage["object"] == "${google_storage_bucket_object.source.name}"


def test_function_sizing_comes_from_variables() -> None:
    service = block(resource(*FUNCTION), "service_config")
    assert service["available_memory"] == "${var.memory}"
    assert service["timeout_seconds"] == "${var.timeout_s}"
    assert service["max_instance_count"] == "${var.max_instances}"
    assert service["min_instance_count"] == "${var.min_instances}"
    assert service["max_instance_request_concurrency"] == "${var.max_instance_request_concurrency}"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    assert service["service_account_email"] == "${google_service_account.function.email}"


def test_findings_are_pushed_to_the_function_with_oidc_and_no_eventarc() -> None:
    function = resource(*FUNCTION)
    assert "event_trigger" not in function  # no Eventarc trigger: the push subscription below delivers
    sub = resource("google_pubsub_subscription", "findings")
    assert sub["topic"] == "${google_pubsub_topic.findings.id}"
    push = block(sub, "push_config")
    uri = "${google_cloudfunctions2_function.responder.service_config[0].uri}"
    assert push["push_endpoint"] == uri
    oidc = block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.trigger.email}"
    assert oidc["audience"] == uri
    # Pub/Sub waits as long as the function may run before it counts a delivery as failed.
    assert sub["ack_deadline_seconds"] == "${var.timeout_s}"
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] == "${var.retry_min_backoff_s}s"
    assert retry["maximum_backoff"] == "${var.retry_max_backoff_s}s"
    # The identities the first delivery needs exist before the subscription does.
    for dep in (
        "${google_cloud_run_v2_service_iam_member.trigger_invoker}",
        "${google_service_account_iam_member.pubsub_agent_token_creator}",
    ):
        assert dep in sub["depends_on"]
    mod = module()
    assert not [key for key in mod.resources if key[0].startswith("google_eventarc")]
    assert "eventarc" not in repr([mod.resources, mod.data, mod.locals, mod.outputs]).lower()


def test_the_policy_check_is_the_only_command_run_outside_terraform() -> None:
    # Delivery, dead-lettering and every grant are Terraform resources: nothing depends on who the local gcloud is
    # logged in as, except the policy check, which can be switched off (tests/terraform/test_validate_policy.py).
    mod = module()
    assert ("terraform_data", "findings_dead_letter_policy") not in mod.resources
    assert "attach_dead_letter_policy" not in mod.variables
    with_provisioners = {key for key, body in mod.resources.items() if "provisioner" in body}
    assert with_provisioners == {("terraform_data", "validate_policy")}
    check = resource("terraform_data", "validate_policy")
    assert check["count"] == "${var.validate_policy_in_build ? 1 : 0}"
    (provisioner,) = check["provisioner"]
    assert set(provisioner) == {"local-exec"}
    others = {key: body for key, body in mod.resources.items() if key != ("terraform_data", "validate_policy")}
    text = repr([others, mod.data, mod.outputs, {k: v for k, v in mod.locals.items() if k != "validate_policy_argv"}])
    assert "local-exec" not in text
    assert "gcloud" not in text


def test_dead_letter_policy_is_on_the_push_subscription_and_switchable() -> None:
    sub = resource("google_pubsub_subscription", "findings")
    dynamic = block(sub, "dynamic")["dead_letter_policy"]
    assert dynamic["for_each"] == "${var.enable_dead_letter ? [1] : []}"
    content = block(dynamic, "content")
    assert content["dead_letter_topic"] == "${google_pubsub_topic.findings_dead_letter[0].id}"
    assert content["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    assert "${google_pubsub_topic_iam_member.dead_letter_publisher}" in sub["depends_on"]

    # Off means no dead-letter topic, subscription or grant at all.
    for key in (
        ("google_pubsub_topic", "findings_dead_letter"),
        ("google_pubsub_subscription", "findings_dead_letter"),
        ("google_pubsub_topic_iam_member", "dead_letter_publisher"),
        ("google_pubsub_subscription_iam_member", "dead_letter_subscriber"),
    ):
        assert resource(*key)["count"] == "${var.enable_dead_letter ? 1 : 0}", key
    keep = resource("google_pubsub_subscription", "findings_dead_letter")
    assert keep["topic"] == "${google_pubsub_topic.findings_dead_letter[0].id}"

    # The Pub/Sub service agent publishes to the dead-letter topic and acks on the findings subscription: nothing wider.
    publisher = resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert publisher["topic"] == "${google_pubsub_topic.findings_dead_letter[0].name}"
    assert publisher["role"] == "roles/pubsub.publisher"
    assert publisher["member"] == "serviceAccount:${local.pubsub_service_agent}"
    subscriber = resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert subscriber["subscription"] == "${google_pubsub_subscription.findings.name}"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert subscriber["member"] == "serviceAccount:${local.pubsub_service_agent}"
    for output in ("findings_dead_letter_topic", "findings_dead_letter_subscription"):
        assert module().outputs[output]["value"].startswith("${one("), output


def test_source_zip_is_an_allow_list_of_the_function_files() -> None:
    files = module().locals["source_files"]
    for required in ('"main.py"', '"requirements.txt"', '"policy.yaml"', '"responder/**"'):
        assert required in files, required
    assert "__pycache__" in files  # excluded

    archive = module().data[("archive_file", "source")]
    assert archive["type"] == "zip"
    dynamic = block(archive, "dynamic")["source"]
    assert dynamic["for_each"] == "${toset(local.source_files)}"
    content = block(dynamic, "content")
    assert content["filename"] == "${source.value}"
    assert content["content"] == '${file("${local.repo_root}/${source.value}")}'
    assert module().locals["repo_root"] == '${abspath("${path.module}/..")}'

    obj = resource("google_storage_bucket_object", "source")
    assert obj["source"] == "${data.archive_file.source.output_path}"
    assert obj["name"] == "${local.source_object}"
    # New source, new object, redeploy (and a new policy check, which names the same object).
    assert module().locals["source_object"] == "function-source-${data.archive_file.source.output_sha256}.zip"


def test_source_bucket_is_private_and_keeps_only_current_source() -> None:
    bucket = resource("google_storage_bucket", "source")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    # Archives are named by content hash, so an object is never overwritten: with versioning on, Terraform's delete of
    # the previous archive would only make it noncurrent, and no "newer versions" rule would ever match it.
    assert block(bucket, "versioning")["enabled"] is False
    (noncurrent, staged) = bucket["lifecycle_rule"]
    assert block(noncurrent, "condition") == {"with_state": "ARCHIVED", "days_since_noncurrent_time": 1}
    assert block(noncurrent, "action") == {"type": "Delete"}
    # The copies gcloud stages for the policy check, under their own prefix, for a day.
    assert block(staged, "condition") == {"age": 1, "matches_prefix": ["${local.validate_policy_staging}/"]}
    assert block(staged, "action") == {"type": "Delete"}
    sweep = block(bucket, "dynamic")["lifecycle_rule"]
    assert sweep["for_each"] == "${var.source_max_age_days == null ? [] : [var.source_max_age_days]}"
    assert block(block(sweep, "content"), "condition")["age"] == "${lifecycle_rule.value}"
    assert block(block(sweep, "content"), "action") == {"type": "Delete"}
    assert module().variables["source_max_age_days"]["default"] == 30


# --- SCC -------------------------------------------------------------------------------------------------------------


def test_scc_v2_notification_configs_filter_handled_active_findings() -> None:
    org = resource("google_scc_v2_organization_notification_config", "findings")
    project = resource("google_scc_v2_project_notification_config", "findings")
    assert org["count"] == '${var.scc_scope == "organization" ? 1 : 0}'
    # Project scope: one config per fleet project (or the one deprecated scc_project_id).
    assert project["for_each"] == "${toset(local.scc_projects)}"
    assert project["project"] == "${each.value}"
    assert "local.fleet_projects" in module().locals["scc_projects"]
    for config in (org, project):
        assert config["pubsub_topic"] == "${google_pubsub_topic.findings.id}"
        assert block(config, "streaming_config")["filter"] == "${local.notification_filter}"
    generated = module().locals["generated_filter"]
    assert generated.endswith(' AND state = "ACTIVE" AND (${join(" OR ", local.filter_fleet_terms)})'), generated
    assert "category = " in generated
    assert "var.categories" in module().locals["filter_categories"]
    assert "local.fleet_projects" in module().locals["filter_fleet_terms"]
    assert module().locals["notification_filter"] == "${coalesce(var.notification_filter, local.generated_filter)}"


def test_only_the_scc_service_accounts_may_publish_to_the_findings_topic() -> None:
    binding = resource("google_pubsub_topic_iam_binding", "findings_publishers")
    assert binding["topic"] == "${google_pubsub_topic.findings.name}"
    assert binding["role"] == "roles/pubsub.publisher"
    # Authoritative: exactly the notification configs' service accounts, and no sample or test publisher.
    assert binding["members"] == '${[for sa in local.scc_publishers : "serviceAccount:${sa}"]}'
    publishers = module().locals["scc_publishers"]
    assert publishers.startswith("${distinct(concat(")
    assert "google_scc_v2_organization_notification_config.findings[*].service_account" in publishers
    assert "config.service_account" in publishers
    assert "google_scc_v2_project_notification_config.findings :" in publishers
    assert "var." not in publishers and "local." not in publishers  # nothing but the configs' own accounts

    findings_topic = re.compile(r"google_pubsub_topic\.findings\.(name|id)\b")
    for (rtype, name), body in module().resources.items():
        # No additive grant, and no other policy resource, on the findings topic.
        if rtype.startswith("google_pubsub_topic_iam") and (rtype, name) != (
            "google_pubsub_topic_iam_binding",
            "findings_publishers",
        ):
            assert not findings_topic.search(json.dumps(body.get("topic", ""))), (rtype, name)
    # Nor a publish right that reaches the topic from above: no Pub/Sub role at project, folder or organization level.
    for (rtype, name), body in iam_members().items():
        if rtype.startswith(("google_project_", "google_organization_", "google_folder_")):
            assert not any(role.startswith("roles/pubsub.") for role in roles_of(body)), (rtype, name)
    assert not [key for key in module().resources if key[0] in {"google_pubsub_topic_iam_policy"}]


# --- IAM -------------------------------------------------------------------------------------------------------------


def test_function_service_account_roles_are_exactly_the_least_privilege_set() -> None:
    granted: set[str] = set()
    for (rtype, name), body in iam_members().items():
        if FUNCTION_SA_REF in body["member"]:
            granted |= roles_of(body)
            if rtype == "google_pubsub_topic_iam_member":
                # Publisher on the report topic only, never project-wide.
                assert body["topic"] == "${google_pubsub_topic.reports.name}", name
            if "roles/run.invoker" in roles_of(body):
                # Direct VPC egress: on the function's own service, and only when egress is configured.
                assert rtype == "google_cloud_run_v2_service_iam_member", name
                assert body["name"] == "${google_cloudfunctions2_function.responder.service_config[0].service}"
                assert body["count"] == "${local.vpc_egress_enabled ? 1 : 0}"
    assert granted == EXPECTED_FUNCTION_ROLES


def test_conditional_scc_roles_follow_their_toggles() -> None:
    scc_roles = module().locals["function_scc_roles"]
    assert re.search(r"var\.write_marks \? \[\"roles/securitycenter\.findingSecurityMarksWriter\"\]", scc_roles)
    assert re.search(r"var\.set_inactive \? \[\"roles/securitycenter\.findingsStateSetter\"\]", scc_roles)
    # The always-granted part is the viewer role only.
    unconditional = re.sub(r"var\.\w+ \? \[[^]]*\] : \[\]", "", scc_roles)
    assert set(ROLE.findall(unconditional)) == {"roles/securitycenter.findingsViewer"}


def test_function_roles_are_granted_at_the_right_scope() -> None:
    org = resource("google_organization_iam_member", "function_scc")
    assert org["org_id"] == "${var.organization_id}"
    assert 'var.scc_scope == "organization"' in org["for_each"]
    project = resource("google_project_iam_member", "function_scc")
    assert 'var.scc_scope == "project"' in project["for_each"]
    assert "local.function_scc_project_grants" in project["for_each"]
    assert project["project"] == "${each.value.project}"
    cluster = resource("google_project_iam_member", "function_cluster")
    assert cluster["project"] == "${each.value.project}"
    assert "local.cluster_projects" in expand_locals(cluster["for_each"])


def test_push_service_account_can_only_invoke_the_function() -> None:
    granted = {
        role
        for body in iam_members().values()
        if "google_service_account.trigger." in body["member"]
        for role in roles_of(body)
    }
    assert granted == {"roles/run.invoker"}
    invoker = resource("google_cloud_run_v2_service_iam_member", "trigger_invoker")
    assert invoker["name"] == "${google_cloudfunctions2_function.responder.service_config[0].service}"
    assert invoker["member"] == "serviceAccount:${google_service_account.trigger.email}"
    assert "eventarc" not in repr(iam_members()).lower()


def test_pubsub_agent_may_sign_tokens_for_the_push_identity_only() -> None:
    grant = resource("google_service_account_iam_member", "pubsub_agent_token_creator")
    assert grant["service_account_id"] == "${google_service_account.trigger.name}"
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert grant["member"] == "serviceAccount:${local.pubsub_service_agent}"
    # Never project-wide.
    for (rtype, name), body in iam_members().items():
        if "roles/iam.serviceAccountTokenCreator" in roles_of(body):
            assert (rtype, name) == ("google_service_account_iam_member", "pubsub_agent_token_creator")


def test_no_primitive_roles_anywhere() -> None:
    assert not PRIMITIVE_ROLE.search(tf_text())
    for key, body in iam_members().items():
        for role in roles_of(body):
            assert not PRIMITIVE_ROLE.fullmatch(role), key


# --- fresh project: APIs, ordering, providers -------------------------------------------------------------------------

REQUIRED_APIS = {
    "serviceusage.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
    "pubsub.googleapis.com",
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "securitycenter.googleapis.com",
    "logging.googleapis.com",
    "container.googleapis.com",
    "monitoring.googleapis.com",
}
CANARY_APIS = {"cloudscheduler.googleapis.com", "workflows.googleapis.com", "workflowexecutions.googleapis.com"}
SERVICES_READY = ("time_sleep", "services_ready")
RESOURCE_REF = re.compile(r"\b((?:google|time|terraform|kubernetes)_[a-z0-9_]+)\.([a-z0-9_]+)")


def test_every_api_is_enabled_and_never_disabled_on_destroy() -> None:
    services = resource("google_project_service", "enabled")
    assert services["for_each"] == "${local.required_services}"
    assert services["project"] == "${var.project_id}"
    assert services["disable_on_destroy"] is False
    assert services["disable_dependent_services"] is False
    listed = set(re.findall(r"[a-z]+\.googleapis\.com", module().locals["required_services"]))
    assert listed == REQUIRED_APIS | {"compute.googleapis.com"} | CANARY_APIS
    assert '"compute.googleapis.com"' in module().locals["required_services"].split("local.vpc_egress_enabled ?")[1]
    canary_part = module().locals["required_services"].split("local.canary_enabled ?")[1].split("]")[0]
    assert set(re.findall(r"[a-z]+\.googleapis\.com", canary_part)) == CANARY_APIS
    ready = resource(*SERVICES_READY)
    assert ready["depends_on"] == ["${google_project_service.enabled}"]
    # Waited for again whenever the set of APIs changes (VPC egress or the canary turned on later).
    assert ready["triggers"] == {"services": '${join(",", sort(local.required_services))}'}


def _dependencies(body: Any) -> set[tuple[str, str]]:
    """Resources `body` depends on: references (through locals too) and depends_on."""
    return {ref for ref in RESOURCE_REF.findall(expand_locals(body)) if ref in module().resources}


def test_every_google_resource_waits_for_the_apis() -> None:
    resources = module().resources
    graph = {key: _dependencies(body) for key, body in resources.items()}

    def reaches(start: tuple[str, str]) -> bool:
        seen, todo = set(), [start]
        while todo:
            key = todo.pop()
            if key == SERVICES_READY:
                return True
            if key not in seen:
                seen.add(key)
                todo.extend(graph[key])
        return False

    google = [key for key in resources if key[0].startswith("google_") and key[0] != "google_project_service"]
    assert len(google) > 20
    missing = [f"{t}.{n}" for t, n in google if not reaches((t, n))]
    assert not missing, f"created before the APIs are enabled: {missing}"


def test_nothing_is_read_through_the_quota_project_before_the_apis_exist() -> None:
    providers = module().providers
    google = [body for name, body in providers if name == "google"]
    (default,) = [body for body in google if "alias" not in body]
    (bootstrap,) = [body for body in google if body.get("alias") == "bootstrap"]
    assert default["user_project_override"] is True
    assert default["billing_project"] == "${var.project_id}"
    assert bootstrap["user_project_override"] is False
    assert "billing_project" not in bootstrap
    # Enabling the APIs and every data source that calls a Google API at plan time go through the bootstrap provider.
    assert resource("google_project_service", "enabled")["provider"] == "${google.bootstrap}"
    for (dtype, name), body in module().data.items():
        if dtype.startswith("google_") and dtype != "google_client_config":  # client_config calls no API
            assert body.get("provider") == "${google.bootstrap}", (dtype, name)
    for key, body in module().resources.items():
        if key[0] != "google_project_service":
            assert "provider" not in body, key


def test_first_build_waits_for_the_build_role() -> None:
    sleep = resource("time_sleep", "build_iam_propagation")
    assert "google_project_iam_member.build" in json.dumps(sleep)
    assert re.fullmatch(r"\d+s", sleep["create_duration"]) and int(sleep["create_duration"][:-1]) >= 60
    assert resource(*FUNCTION)["depends_on"] == [
        "${time_sleep.build_iam_propagation}",
        "${terraform_data.validate_policy}",  # and the policy check on the same archive
    ]
    build = resource("google_project_iam_member", "build")
    assert build["role"] == "roles/run.builder"
    assert build["member"] == "serviceAccount:${google_service_account.build.email}"


# --- network ---------------------------------------------------------------------------------------------------------


def test_direct_vpc_egress_is_wired_from_variables() -> None:
    service = block(resource(*FUNCTION), "service_config")
    assert service["direct_vpc_egress"] == '${local.vpc_egress_enabled ? "VPC_EGRESS_${var.vpc_egress}" : null}'
    interface = block(service, "dynamic")["direct_vpc_network_interface"]
    assert interface["for_each"] == "${local.vpc_egress_enabled ? [1] : []}"
    assert block(interface, "content") == {
        "network": "${var.vpc_network}",
        "subnetwork": "${var.vpc_subnetwork}",
        "tags": "${var.vpc_network_tags}",
    }
    assert module().locals["vpc_egress_enabled"] == "${var.vpc_network != null || var.vpc_subnetwork != null}"
    assert module().variables["vpc_egress"]["default"] == "PRIVATE_RANGES_ONLY"
    assert module().locals["responder_env_candidates"]["RESPONDER_GKE_ENDPOINT"] == "${var.gke_endpoint}"


# --- protected namespaces ---------------------------------------------------------------------------------------------


def test_protected_namespaces_floor_is_always_exported() -> None:
    locals_ = module().locals
    assert set(locals_["protected_namespaces_floor"]) == PROTECTED_FLOOR
    assert locals_["protected_namespaces"] == (
        "${distinct(concat(local.protected_namespaces_floor, var.protected_namespaces))}"
    )
    assert (
        locals_["responder_env_candidates"]["RESPONDER_PROTECTED_NAMESPACES"]
        == '${join(",", local.protected_namespaces)}'
    )
    variable = module().variables["protected_namespaces"]
    assert variable["nullable"] is False
    # Terraform never exports less than the floor the responder enforces itself.
    import responder.policy.rules

    app_floor = responder.policy.rules.PROTECTED_FLOOR
    assert set(app_floor) <= PROTECTED_FLOOR


# --- Kubernetes RBAC -------------------------------------------------------------------------------------------------


def access_locals() -> dict[str, Any]:
    """The locals of modules/cluster-access."""
    (locals_,) = _load(ACCESS_DIR / "locals.tf")["locals"]
    return locals_


def test_rbac_is_rendered_from_the_manifest_not_copied() -> None:
    assert RBAC_MANIFEST.exists()
    assert "${responder_identity}" in RBAC_MANIFEST.read_text()
    # One rendering: modules/cluster-access, from deploy/kubernetes/ (the root applies rbac_cluster through it).
    access = access_locals()
    assert access["manifests_dir"] == '${coalesce(var.manifests_dir, "${path.module}/../../../deploy/kubernetes")}'
    assert (ACCESS_DIR / "../../../deploy/kubernetes/rbac.yaml").resolve() == RBAC_MANIFEST.resolve()
    assert 'templatefile("${local.manifests_dir}/rbac.yaml", local.template_vars)' in access["rbac_documents"]
    assert access["template_vars"] == {"responder_identity": "${var.responder_identity}"}
    # The root hands it the function's service account, computed so that it is known at plan time.
    assert module().modules["rbac_cluster"]["responder_identity"] == "${local.function_sa_email}"
    assert (
        module().locals["function_sa_email"]
        == "${local.service_accounts.function}@${var.project_id}.iam.gserviceaccount.com"
    )
    assert resource("google_service_account", "function")["account_id"] == "${local.service_accounts.function}"

    # The root reads rbac.yaml for one thing only: where the budget Leases may live (the budget_namespace check).
    locals_ = module().locals
    assert locals_["rbac_manifest_path"] == "${path.module}/../deploy/kubernetes/rbac.yaml"
    assert (TF_DIR / "../deploy/kubernetes/rbac.yaml").resolve() == RBAC_MANIFEST.resolve()
    assert (
        "templatefile(local.rbac_manifest_path, {responder_identity = local.function_sa_email})"
        in locals_["rbac_documents"]
    )
    readers = {name for name, value in locals_.items() if "rbac_documents" in local_refs(value)}
    assert readers == {"rbac_lease_namespaces"}
    assert not {name for name in locals_ if name.endswith("_manifests") or name.endswith("_manifest_path")} - {
        "rbac_manifest_path"
    }

    # No second copy of the RBAC objects anywhere in the module's code (comments may name them), nor in the access
    # module's: both read deploy/kubernetes/.
    mod = module()
    text = repr([mod.resources, mod.data, mod.locals, mod.outputs, access])
    for marker in ("rbac.authorization.k8s.io", "ClusterRoleBinding", "coordination.k8s.io", "pods/exec"):
        assert marker not in text, marker


def test_optional_manifests_are_applied_behind_their_toggles() -> None:
    # The root passes its toggles to the module unchanged, and instantiates it only when Terraform manages the RBAC.
    rbac = module().modules["rbac_cluster"]
    assert rbac["count"] == "${var.manage_kubernetes_rbac ? 1 : 0}"
    for toggle in ("enable_process_capture", "enable_admission_guard", "enable_cluster_quarantine_policy"):
        assert rbac[toggle] == f"${{var.{toggle}}}", toggle
    assert rbac["cluster_quarantine_priority"] == "${var.cluster_quarantine_priority}"
    # The module reads each optional file only when its toggle is on, rendered for the identity like rbac.yaml.
    access = access_locals()
    for name, paths, toggle in (
        ("capture_manifests", '["${local.manifests_dir}/rbac-capture.yaml"]', "var.enable_process_capture"),
        # The identity quarantine is shipped with the guard: same toggle, same map, same resource.
        (
            "admission_guard_manifests",
            '["${local.manifests_dir}/admission-guard.yaml", "${local.manifests_dir}/identity-guard.yaml"]',
            "var.enable_admission_guard",
        ),
        (
            "cluster_quarantine_manifests",
            '["${local.manifests_dir}/cluster-quarantine.yaml"]',
            "var.enable_cluster_quarantine_policy",
        ),
    ):
        assert f"({toggle} ? {paths} : [])" in access[name], access[name]
    assert "templatefile(path, local.template_vars)" in access["capture_manifests"]
    assert "templatefile(path, local.template_vars)" in access["admission_guard_manifests"]
    # identity-guard.yaml has no resource of its own: the guard's applies its objects, from the same map.
    main = [name for b in _load(ACCESS_DIR / "main.tf")["resource"] for name in b["kubernetes_manifest"]]
    assert sorted(main) == [
        "admission_guard",
        "cluster_quarantine",
        "process_capture",
        "rbac_cluster_scoped",
        "rbac_namespaced",
    ]
    # Nothing of the kind left in the root: its objects are the module's.
    assert not [key for key in module().resources if key[0] == "kubernetes_manifest"]
    # Listed for kubectl right after admission-guard.yaml, under the same toggle.
    files = ", ".join(f'"{f}"' for f in GUARD_FILES)
    assert f"var.enable_admission_guard ? [{files}] : []" in module().locals["kubernetes_manifest_files"]
    env = module().locals["responder_env_candidates"]
    assert env["RESPONDER_PROCESS_CAPTURE"] == "${tostring(var.enable_process_capture)}"


def test_kubernetes_provider_keeps_its_cluster_when_rbac_management_is_switched_off() -> None:
    # The provider's host comes from the cluster data whenever a cluster is named, not from manage_kubernetes_rbac:
    # objects still in state after the toggle goes off can be destroyed.
    for key in (("google_container_cluster", "rbac"), ("google_client_config", "current")):
        assert module().data[key]["count"] == "${var.rbac_cluster != null ? 1 : 0}", key
    (kubernetes,) = [body for name, body in module().providers if name == "kubernetes"]
    assert kubernetes["host"] == "${local.rbac_cluster_host}"
    for name in ("rbac_cluster_host", "rbac_cluster_ca", "rbac_cluster_token", "rbac_cluster_dns_host"):
        assert "manage_kubernetes_rbac" not in expand_locals(module().locals[name]), name
    assert "manage_kubernetes_rbac" not in json.dumps(kubernetes)


def test_kubernetes_provider_can_reach_the_cluster_by_its_dns_endpoint() -> None:
    # A private-endpoint or DNS-only cluster cannot be reached on Cluster.endpoint from outside its VPC; its DNS-based
    # endpoint with the OAuth token can, with a publicly trusted certificate (no cluster CA).
    locals_ = module().locals
    assert locals_["rbac_cluster_host"] == (
        '${var.rbac_cluster_endpoint == "dns" ? local.rbac_cluster_dns_host : local.rbac_cluster_ip_host}'
    )
    assert "control_plane_endpoints_config[0].dns_endpoint_config[0].endpoint" in locals_["rbac_cluster_dns_host"]
    assert "c.endpoint" in locals_["rbac_cluster_ip_host"]
    assert locals_["rbac_cluster_ca"].startswith('${var.rbac_cluster_endpoint == "dns" ? null : ')
    (kubernetes,) = [body for name, body in module().providers if name == "kubernetes"]
    assert kubernetes["token"] == "${local.rbac_cluster_token}"
    assert kubernetes["cluster_ca_certificate"] == "${local.rbac_cluster_ca}"


def test_rbac_alternative_is_documented_and_output() -> None:
    readme = (TF_DIR / "README.md").read_text()
    assert "sed 's/${responder_identity}/SA_EMAIL/' deploy/kubernetes/rbac.yaml | kubectl apply -f -" in readme
    for file in GUARD_FILES:
        assert f'sed "s/\\${{responder_identity}}/$SA_EMAIL/" {file} | kubectl apply -f -' in readme, file
    output = module().outputs["rbac_apply_command"]
    assert "sed -e 's/$${responder_identity}/" in output["value"]
    assert "-e 's/$${priority}/${var.cluster_quarantine_priority}/'" in output["value"]
    assert "for file in local.kubernetes_manifest_files" in output["value"]
    assert "admission-guard.yaml + identity-guard.yaml" in output["description"]


# --- variables, versions, checkov hygiene ----------------------------------------------------------------------------


def test_every_variable_has_a_description_and_a_type() -> None:
    for name, var in module().variables.items():
        assert var.get("description"), f"variable {name} has no description"
        assert var.get("type"), f"variable {name} has no type"


@pytest.mark.parametrize(
    ("variable", "fragment"),
    [
        ("mode", '"dry-run", "enforce"'),
        ("action", '"isolate", "delete", "none"'),
        ("categories", "length(var.categories) > 0"),
        ("budget_max", "var.budget_max >= 0"),
        ("budget_window_s", "var.budget_window_s >= 60"),
        ("log_window_min", "var.log_window_min >= 1 && var.log_window_min <= 1440"),
        ("memory", '"256Mi", "512Mi"'),
        ("project_id", "regex("),
        ("organization_id", 'var.scc_scope != "organization"'),
        ("netpol_enforcement", '"auto", "established", "new-only", "none"'),
        ("live_session", '"escalate", "report"'),
        ("identity", '"report", "revoke"'),
        ("rbac_cluster_endpoint", '"ip", "dns"'),
        ("notification_channels", "notificationChannels"),
        ("unanswered_after_min", "var.unanswered_after_min >= 2"),
    ],
)
def test_validation_rules_exist(variable: str, fragment: str) -> None:
    validations = module().variables[variable].get("validation", [])
    assert validations, f"variable {variable} has no validation"
    assert any(fragment in v["condition"] for v in validations), (variable, [v["condition"] for v in validations])


def test_versions_are_pinned() -> None:
    (terraform,) = module().terraform
    assert terraform["required_version"].startswith(">= 1.9")
    (providers,) = terraform["required_providers"]
    assert {"google", "kubernetes", "archive"} <= set(providers)
    for name, spec in providers.items():
        assert spec["source"] == f"hashicorp/{name}"
        assert re.fullmatch(r"~> \d+\.\d+", spec["version"]), f"{name} is not pinned to a major: {spec['version']}"
    assert {"google", "kubernetes", "archive", "time"} == set(providers)
    # direct_vpc_network_interface / direct_vpc_egress of the function exist from google 7.21.0 only: "~> 7.0" would
    # admit 7.0.0-7.20.0, where `terraform validate` fails even with VPC egress off.
    assert providers["google"]["version"] == "~> 7.21"
    assert "direct_vpc_network_interface" in json.dumps(resource(*FUNCTION))


def test_readme_documents_every_variable_and_only_init_and_apply() -> None:
    readme = (TF_DIR / "README.md").read_text()
    undocumented = [name for name in module().variables if f"`{name}`" not in readme]
    assert not undocumented, f"variables missing from terraform/README.md: {undocumented}"
    # No step outside Terraform on a fresh project.
    assert "gcloud services enable" not in readme
    assert "attach_dead_letter_policy =" not in readme  # named only in the upgrade notes
    assert "roles/eventarc.viewer" not in readme  # the deployer no longer reads Eventarc


def test_every_checkov_skip_is_justified_inline() -> None:
    skips = re.findall(r"#\s*checkov:skip=([^\n]*)", tf_text())
    for skip in skips:
        assert re.fullmatch(r"CKV2?_[A-Z]+_\d+:.{20,}", skip), f"unjustified skip: {skip!r}"


# --- real Terraform, offline ------------------------------------------------------------------------------------------


def _find_terraform() -> str | None:
    """`terraform` on PATH, else the OpenTofu that `make terraform` builds into the cache when there is none (the same
    language and CLI; see mk/terraform.mk for why not Terraform itself)."""
    found = shutil.which("terraform")
    if found:
        return found
    cache = Path(os.environ.get("RSR_CACHE_DIR") or Path.home() / ".cache" / "rsr")
    cached = sorted(cache.glob("tofu-*/tofu"))
    return str(cached[-1]) if cached else None


TERRAFORM = _find_terraform()
MISSING_TERRAFORM = "terraform is not on PATH and not in the cache: run `make terraform` (mk/terraform.mk installs it)"


def require_terraform() -> str:
    """The terraform binary. Without one, a developer's run skips the test; a CI run (CI=true) fails it, because a check
    that silently did not run must never look like a pass there."""
    if TERRAFORM is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING_TERRAFORM)
        pytest.skip(MISSING_TERRAFORM)
    return TERRAFORM


@pytest.fixture
def _terraform_bin() -> None:
    require_terraform()


needs_terraform = pytest.mark.usefixtures("_terraform_bin")


def _tf_env(tmp_path: Path) -> dict[str, str]:
    rc = tmp_path / "terraformrc"
    rc.write_text("")
    return {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


@needs_terraform
def test_terraform_fmt_check(tmp_path: Path) -> None:
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        env=_tf_env(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


ACCESS_DIR = TF_DIR / "modules" / "cluster-access"
# The maps modules/cluster-access renders and applies, one kubernetes_manifest resource each.
ACCESS_MAPS = (
    "rbac_cluster_scoped",
    "rbac_namespaced",
    "capture_manifests",
    "admission_guard_manifests",
    "cluster_quarantine_manifests",
)


def top_level_blocks(text: str, header: str) -> list[str]:
    """The top-level blocks of a .tf text that open with ``header {`` (``moved``, ``module "rbac_cluster"``), verbatim."""
    return re.findall(rf"^{re.escape(header)} \{{\n.*?^\}}\n", text, re.M | re.S)


def rbac_module_block() -> str:
    """The root's ``module "rbac_cluster"`` block without its provider mapping: offline there is no kubernetes provider
    to pass, and the rendering (the arguments, the count) is what the scratch roots evaluate."""
    (found,) = top_level_blocks((TF_DIR / "kubernetes.tf").read_text(), 'module "rbac_cluster"')
    mapping = re.compile(r"^  providers += \{ kubernetes = kubernetes \}\n", re.M)
    assert mapping.search(found), found
    return mapping.sub("", found)


def pure_access_module(dest: Path, *, resources: bool = False) -> None:
    """modules/cluster-access at ``dest`` without its provider requirement: variables, locals, outputs, and an output per
    rendered map. With ``resources``, also its main.tf with every kubernetes_manifest turned into a terraform_data
    (built into Terraform: no provider to download) holding the manifest as its input, names and keys unchanged."""
    dest.mkdir(parents=True)
    for name in ("variables.tf", "locals.tf", "outputs.tf"):
        shutil.copy(ACCESS_DIR / name, dest / name)
    (dest / "maps.tf").write_text("".join(f'output "{n}" {{\n  value = local.{n}\n}}\n' for n in ACCESS_MAPS))
    if resources:
        main = (ACCESS_DIR / "main.tf").read_text()
        assert main.count("manifest = each.value") == main.count('resource "kubernetes_manifest"') == len(ACCESS_MAPS)
        main = main.replace("kubernetes_manifest", "terraform_data").replace(
            "manifest = each.value", "input = each.value"
        )
        (dest / "main.tf").write_text(main)


FAKE_SOURCE_OBJECT = f"function-source-{'0' * 64}.zip"


def write_stubs(work: Path) -> None:
    """Stand-ins for the values locals.tf takes from resources and data sources (known only after apply or with a
    provider): the canary's SCC source name (canary.tf) and the archive's object name (function.tf)."""
    (work / "stubs.tf").write_text(
        'variable "fake_canary_source" {\n  type    = string\n  default = null\n}\n\n'
        f'variable "fake_source_object" {{\n  type    = string\n  default = "{FAKE_SOURCE_OBJECT}"\n}}\n\n'
        "locals {\n  canary_source_name = local.canary_enabled ? var.fake_canary_source : null\n"
        "  source_object      = var.fake_source_object\n}\n"
    )


def terraform_init(work: Path, root: Path) -> None:
    """``terraform init`` in ``work`` with the providers this machine has (``_tf_env``), no backend."""
    assert TERRAFORM is not None
    init = subprocess.run(
        [TERRAFORM, f"-chdir={work}", "init", "-input=false", "-no-color", "-backend=false"],
        capture_output=True,
        text=True,
        env=_tf_env(root),
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr


@pytest.fixture(scope="module")
def pure_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf + locals.tf (no providers needed) in a scratch root beside the real deploy/ and responder/, with the
    root's own module "rbac_cluster" block over the provider-free part of modules/cluster-access: its rendered maps
    are outputs under the same names (empty when Terraform does not manage the RBAC)."""
    require_terraform()
    assert TERRAFORM is not None
    root = tmp_path_factory.mktemp("tfpure")
    work = root / "terraform"
    work.mkdir()
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(TF_DIR / name, work / name)
    write_stubs(work)
    (root / "deploy").symlink_to(ROOT / "deploy")
    (root / "responder").symlink_to(ROOT / "responder")
    pure_access_module(work / "modules" / "cluster-access")
    (work / "rbac_module.tf").write_text(
        rbac_module_block()
        + "".join(f'\noutput "{n}" {{\n  value = try(module.rbac_cluster[0].{n}, {{}})\n}}\n' for n in ACCESS_MAPS)
    )
    # The real rbac_apply_command output, with the function's e-mail from locals.tf instead of its resource.
    apply_command = re.search(
        r'^output "rbac_apply_command" \{\n.*?^\}\n', (TF_DIR / "outputs.tf").read_text(), re.M | re.S
    )
    assert apply_command, "outputs.tf has no rbac_apply_command output"
    (work / "apply_command.tf").write_text(
        apply_command.group(0).replace("google_service_account.function.email", "local.function_sa_email")
    )
    (work / "outputs.tf").write_text(
        "\n".join(
            f'output "{name}" {{\n  value = local.{name}\n}}'
            for name in (
                "responder_env",
                "notification_filter",
                "fleet_projects",
                "fleet_clusters",
                "scc_projects",
                "function_scc_project_grants",
                "filter_override_misses",
                "canary_enabled",
                "canary_resource",
                "canary_schedule",
                "canary_absent_after_s",
                "canary_filter",
                "outside_fleet_filter",
                "rbac_lease_namespaces",
                "function_scc_roles",
                "function_cluster_grants",
                "source_files",
                "required_services",
                "protected_namespaces",
                "kubernetes_manifest_files",
                "decision_filter",
                "containment_filter",
                "failure_filter",
                "not_contained_filter",
                "metric_names",
                "replay_environment",
                "validate_policy_file",
                "validate_policy_image",
                "validate_policy_argv",
            )
        )
        + "\n"
    )
    terraform_init(work, root)
    return work


REQUIRED_VARS = ["-var=project_id=shop-sec-123", "-var=region=europe-west1", "-var=organization_id=123456789012"]
MANAGED_RBAC = [
    "-var=manage_kubernetes_rbac=true",
    '-var=rbac_cluster={project="shop-prod",location="europe-west1",name="gke"}',
]


def _evaluate(work: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`terraform apply` of the provider-free module: it only computes outputs, into a state file of its own."""
    state = work / f"state-{uuid.uuid4().hex}.tfstate"
    result = subprocess.run(
        [TERRAFORM, f"-chdir={work}", "apply", "-auto-approve", "-input=false", "-no-color", f"-state={state}", *args],
        capture_output=True,
        text=True,
        env=_tf_env(work.parent),
        check=False,
    )
    return result, state


def _outputs(work: Path, *args: str) -> dict[str, Any]:
    applied, state = _evaluate(work, *args)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    shown = subprocess.run(
        [TERRAFORM, f"-chdir={work}", "output", "-json", f"-state={state}"],
        capture_output=True,
        text=True,
        env=_tf_env(work.parent),
        check=True,
    )
    return {k: v["value"] for k, v in json.loads(shown.stdout).items()}


@needs_terraform
def test_defaults_export_only_what_is_set(pure_module: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS)
    assert out["responder_env"] == {
        "RESPONDER_MODE": "dry-run",
        "RESPONDER_CATEGORIES": "Reverse Shell",
        "RESPONDER_WRITE_MARKS": "true",
        "RESPONDER_SET_INACTIVE": "false",
        "RESPONDER_REPORT_TOPIC": "projects/shop-sec-123/topics/rs-responder-reports",
        "RESPONDER_PROTECTED_NAMESPACES": ",".join(out["protected_namespaces"]),
        "RESPONDER_GKE_ENDPOINT": "auto",
        "RESPONDER_PROCESS_CAPTURE": "false",
        "RESPONDER_NETPOL_ENFORCEMENT": "auto",
    }
    assert set(out["protected_namespaces"]) == PROTECTED_FLOOR
    assert "compute.googleapis.com" not in out["required_services"]  # only with Direct VPC egress
    assert out["capture_manifests"] == {} and out["admission_guard_manifests"] == {}  # not read unless applied
    assert out["cluster_quarantine_manifests"] == {}  # opt-in: GKE's ClusterNetworkPolicy is a Preview
    assert out["kubernetes_manifest_files"] == ["deploy/kubernetes/rbac.yaml", *GUARD_FILES]
    sed = "sed -e 's/${responder_identity}/rs-responder-fn@shop-sec-123.iam.gserviceaccount.com/' -e 's/${priority}/1/'"
    assert out["rbac_apply_command"] == " && ".join(
        f"{sed} {file} | kubectl apply -f -" for file in ["deploy/kubernetes/rbac.yaml", *GUARD_FILES]
    )
    # Restricted to the fleet, here the function's own project (no clusters, no cluster_projects).
    assert out["notification_filter"] == (
        '(category = "Reverse Shell" OR category = "REVERSE_SHELL") AND state = "ACTIVE" '
        'AND (resource_name : "//container.googleapis.com/projects/shop-sec-123/")'
    )
    assert out["fleet_projects"] == ["shop-sec-123"]
    assert out["function_scc_roles"] == [
        "roles/securitycenter.findingsViewer",
        "roles/securitycenter.findingSecurityMarksWriter",
    ]
    assert {g["role"] for g in out["function_cluster_grants"].values()} == {
        "roles/container.clusterViewer",
        "roles/logging.viewer",
    }
    # The filters tests/terraform/test_monitoring.py runs against real records, as Terraform itself renders them.
    service = 'resource.type="cloud_run_revision" AND resource.labels.service_name="rs-responder"'
    decisions = (
        f'{service} AND logName="projects/shop-sec-123/logs/run.googleapis.com%2Fstdout" AND jsonPayload.verdict:* '
        "AND jsonPayload.outcome:*"
    )
    assert out["decision_filter"] == decisions
    assert out["containment_filter"] == f"{decisions} AND jsonPayload.contained_ms>0"
    assert out["failure_filter"] == (
        f'{service} AND ((severity>=ERROR AND NOT jsonPayload.outcome="not_contained") OR jsonPayload.outcome="retry")'
    )
    assert out["not_contained_filter"] == f'{decisions} AND jsonPayload.outcome="not_contained"'
    assert out["metric_names"] == {
        "decisions": "rs-responder-decisions",
        "time_to_containment": "rs-responder-time-to-containment",
        "canary": "rs-responder-canary",
    }
    assert {"main.py", "requirements.txt", "policy.yaml", "responder/config.py"} <= set(out["source_files"])
    assert not [f for f in out["source_files"] if "__pycache__" in f or f.startswith(("tests/", "terraform/"))]


@needs_terraform
def test_every_toggle_reaches_the_environment(pure_module: Path) -> None:
    out = _outputs(
        pure_module,
        *REQUIRED_VARS,
        "-var=mode=enforce",
        "-var=action=isolate",
        '-var=categories=["Reverse Shell","Unexpected Child Shell"]',
        '-var=protected_namespaces=["istio-*","kube-system","payments"]',
        "-var=exempt_label=security.example.com/exempt",
        "-var=verify_finding=true",
        "-var=write_marks=false",
        "-var=set_inactive=true",
        "-var=budget_max=3",
        "-var=budget_window_s=3600",
        "-var=log_window_min=30",
        "-var=policy_file=policy.yaml",
        "-var=budget_namespace=responder-system",
        "-var=enrichment_timeout_s=12.5",
        "-var=gke_endpoint=dns",
        "-var=enable_process_capture=true",
        "-var=netpol_enforcement=new-only",
        "-var=live_session=report",
        "-var=identity=revoke",
        '-var=clusters=[{project="shop-prod",location="europe-west1",name="gke-a"}]',
        "-var=fake_canary_source=organizations/123456789012/sources/4242",
    )
    env = out["responder_env"]
    assert set(env) == {f"RESPONDER_{name.upper()}" for name in operator_settings()}
    assert env["RESPONDER_CATEGORIES"] == "Reverse Shell,Unexpected Child Shell"
    # Floor + extras, floor first, each once: the variable adds to the floor and cannot shorten it.
    protected = env["RESPONDER_PROTECTED_NAMESPACES"].split(",")
    assert set(protected) == PROTECTED_FLOOR | {"istio-*", "payments"}
    assert len(protected) == len(set(protected))
    assert env["RESPONDER_GKE_ENDPOINT"] == "dns"
    assert env["RESPONDER_PROCESS_CAPTURE"] == "true"
    assert env["RESPONDER_VERIFY_FINDING"] == "true"
    assert env["RESPONDER_ENRICHMENT_TIMEOUT_S"] == "12.5"
    assert env["RESPONDER_NETPOL_ENFORCEMENT"] == "new-only"
    assert env["RESPONDER_LIVE_SESSION"] == "report"
    assert out["function_scc_roles"] == [
        "roles/securitycenter.findingsViewer",
        "roles/securitycenter.findingsStateSetter",
    ]
    # The responder itself accepts what Terraform exports.
    fields = {k.removeprefix("RESPONDER_").lower(): v for k, v in env.items()}
    settings = Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
    assert settings.mode == "enforce"
    assert settings.categories == ["Reverse Shell", "Unexpected Child Shell"]


@needs_terraform
def test_rbac_rendering_targets_the_function_identity(pure_module: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, *MANAGED_RBAC)
    email = "rs-responder-fn@shop-sec-123.iam.gserviceaccount.com"
    cluster_scoped, namespaced = out["rbac_cluster_scoped"], out["rbac_namespaced"]
    kinds = {doc["kind"] for doc in [*cluster_scoped.values(), *namespaced.values()]}
    assert kinds == {"Namespace", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    subjects = [s for doc in [*cluster_scoped.values(), *namespaced.values()] for s in doc.get("subjects", [])]
    assert subjects
    assert {s["name"] for s in subjects} == {email}
    assert out["rbac_lease_namespaces"] == ["responder-system"]
    # Without manage_kubernetes_rbac, no module instance: nothing is rendered, and no optional file is read.
    unmanaged = _outputs(pure_module, *REQUIRED_VARS, "-var=enable_process_capture=true")
    assert all(unmanaged[name] == {} for name in ACCESS_MAPS)
    assert unmanaged["rbac_lease_namespaces"] == ["responder-system"]  # the budget_namespace check still knows


@needs_terraform
def test_example_tfvars_is_valid(pure_module: Path) -> None:
    tfvars = pure_module / "example.tfvars"
    shutil.copy(TF_DIR / "terraform.tfvars.example", tfvars)
    out = _outputs(pure_module, f"-var-file={tfvars}")
    assert out["responder_env"]["RESPONDER_MODE"] == "dry-run"


@needs_terraform
@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["-var=mode=on"], "mode"),
        (["-var=action=kill"], "action"),
        (["-var=categories=[]"], "categories"),
        (["-var=budget_max=-1"], "budget_max"),
        (["-var=budget_window_s=59"], "budget_window_s"),
        (["-var=log_window_min=0"], "log_window_min"),
        (["-var=log_window_min=1441"], "log_window_min"),
        (["-var=memory=64Mi"], "memory"),
        (["-var=project_id=My_Project"], "project_id"),
        (["-var=organization_id=example.com"], "organization_id"),
        (["-var=manage_kubernetes_rbac=true"], "rbac_cluster"),
        (['-var=protected_namespaces=[""]'], "protected_namespaces"),
        (['-var=protected_namespaces=["kube system"]'], "protected_namespaces"),
        (['-var=protected_namespaces=[" payments"]'], "protected_namespaces"),
        (['-var=protected_namespaces=["Payments"]'], "protected_namespaces"),
        (['-var=protected_namespaces=["pay_ments"]'], "protected_namespaces"),
        (['-var=protected_namespaces=["a,b"]'], "protected_namespaces"),
        (['-var=protected_namespaces=["gke-[a]"]'], "protected_namespaces"),
        ([f'-var=protected_namespaces=["{"a" * 64}"]'], "protected_namespaces"),
        (["-var=vpc_egress=SOME_TRAFFIC"], "vpc_egress"),
        (["-var=gke_endpoint=internal"], "gke_endpoint"),
        (["-var=gke_endpoint=private"], "gke_endpoint"),  # private needs Direct VPC egress
        (["-var=source_max_age_days=0"], "source_max_age_days"),
        (["-var=live_session=kill"], "live_session"),
        (["-var=netpol_enforcement=strict"], "netpol_enforcement"),
        (["-var=netpol_enforcement=new_only"], "netpol_enforcement"),
        (["-var=rbac_cluster_endpoint=private"], "rbac_cluster_endpoint"),
        (['-var=notification_channels=["secops@example.com"]'], "notification_channels"),
        (["-var=unanswered_after_min=1"], "unanswered_after_min"),
    ],
)
def test_invalid_values_are_rejected(pure_module: Path, args: list[str], variable: str) -> None:
    result, _ = _evaluate(pure_module, *REQUIRED_VARS, *args)
    assert result.returncode != 0
    assert "Invalid value for variable" in result.stderr
    assert f"var.{variable}" in result.stderr


@needs_terraform
def test_protected_namespace_globs_at_the_limits_are_accepted(pure_module: Path) -> None:
    longest = "a" * 63
    out = _outputs(pure_module, *REQUIRED_VARS, f'-var=protected_namespaces=["{longest}","team-*","0"]')
    assert {longest, "team-*", "0"} <= set(out["responder_env"]["RESPONDER_PROTECTED_NAMESPACES"].split(","))


@needs_terraform
def test_vpc_egress_enables_compute_and_allows_the_private_endpoint(pure_module: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, "-var=vpc_subnetwork=responder-egress", "-var=gke_endpoint=private")
    assert "compute.googleapis.com" in out["required_services"]
    assert out["responder_env"]["RESPONDER_GKE_ENDPOINT"] == "private"


@needs_terraform
def test_optional_manifests_are_listed_for_kubectl_when_enabled(pure_module: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, "-var=enable_process_capture=true", "-var=enable_admission_guard=false")
    assert out["kubernetes_manifest_files"] == ["deploy/kubernetes/rbac.yaml", "deploy/kubernetes/rbac-capture.yaml"]
    assert "guard" not in out["rbac_apply_command"]  # neither guard file without the toggle
    assert out["responder_env"]["RESPONDER_PROCESS_CAPTURE"] == "true"


@needs_terraform
@pytest.mark.parametrize(
    ("toggle", "manifest", "output"),
    [
        ("enable_process_capture", CAPTURE_MANIFEST, "capture_manifests"),
        ("enable_admission_guard", ADMISSION_GUARD_MANIFEST, "admission_guard_manifests"),
        ("enable_admission_guard", IDENTITY_GUARD_MANIFEST, "admission_guard_manifests"),
    ],
)
def test_optional_manifest_is_rendered_for_the_function_identity(
    pure_module: Path, toggle: str, manifest: Path, output: str
) -> None:
    # Coordinated by file name only: the file's content belongs to deploy/kubernetes/ and is not asserted here.
    if not manifest.exists():
        pytest.skip(f"{manifest.relative_to(ROOT)} does not exist yet")
    out = _outputs(
        pure_module,
        *REQUIRED_VARS,
        "-var=manage_kubernetes_rbac=true",
        '-var=rbac_cluster={project="shop-prod",location="europe-west1",name="gke"}',
        f"-var={toggle}=true",
    )
    assert out[output], f"{manifest.name} rendered no object"
    assert "${responder_identity}" not in json.dumps(out[output])


def _guard_keys(path: Path) -> list[str]:
    """The admission_guard_manifests keys of one file's objects, split the way locals.tf splits it."""
    chunks = [yaml.safe_load(chunk) for chunk in f"\n{path.read_text()}\n".split("\n---\n")]
    return [f"{doc['kind']}/{doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}" for doc in chunks if doc]


def test_identity_guard_splits_into_its_policy_and_binding() -> None:
    # No template variable (templatefile renders it unchanged) and no "\n---\n" but the one between its two objects.
    text = IDENTITY_GUARD_MANIFEST.read_text()
    assert "${" not in text and "%{" not in text
    chunks = f"\n{text}\n".split("\n---\n")
    assert [yaml.safe_load(chunk)["kind"] for chunk in chunks] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert _guard_keys(IDENTITY_GUARD_MANIFEST) == [
        "ValidatingAdmissionPolicy//reverse-shell-responder-identity",
        "ValidatingAdmissionPolicyBinding//reverse-shell-responder-identity",
    ]
    assert not set(_guard_keys(IDENTITY_GUARD_MANIFEST)) & set(_guard_keys(ADMISSION_GUARD_MANIFEST))


@needs_terraform
@pytest.mark.parametrize("enabled", [True, False])
def test_both_guard_files_are_read_only_when_the_toggle_is_on(pure_module: Path, enabled: bool) -> None:
    out = _outputs(
        pure_module,
        *REQUIRED_VARS,
        "-var=manage_kubernetes_rbac=true",
        '-var=rbac_cluster={project="shop-prod",location="europe-west1",name="gke"}',
        f"-var=enable_admission_guard={str(enabled).lower()}",
    )
    manifests = out["admission_guard_manifests"]
    if not enabled:
        assert manifests == {}
        assert not [f for f in out["kubernetes_manifest_files"] if f in GUARD_FILES]
        return
    # One map, keyed like the guard's: the guard's objects, then the identity quarantine's.
    assert list(manifests) == sorted(_guard_keys(ADMISSION_GUARD_MANIFEST) + _guard_keys(IDENTITY_GUARD_MANIFEST))
    identity = [manifests[key] for key in _guard_keys(IDENTITY_GUARD_MANIFEST)]
    assert [doc["kind"] for doc in identity] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert identity[1]["spec"]["paramRef"] == {
        "name": "rsr-quarantined-identities",
        "namespace": "responder-system",
        "parameterNotFoundAction": "Allow",
    }
    assert out["kubernetes_manifest_files"][-2:] == GUARD_FILES


@needs_terraform
@pytest.mark.parametrize("value", NETPOL_ENFORCEMENT)
def test_every_netpol_enforcement_value_the_responder_knows_is_exported(pure_module: Path, value: str) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, f"-var=netpol_enforcement={value}")
    assert out["responder_env"]["RESPONDER_NETPOL_ENFORCEMENT"] == value
    assert Settings(netpol_enforcement=value).netpol_enforcement == value  # type: ignore[arg-type]


def test_terraform_accepts_exactly_the_values_the_responder_accepts() -> None:
    # The Literal types of Settings are the source of truth; each Terraform validation lists the same values.
    for variable, setting in (
        ("netpol_enforcement", "netpol_enforcement"),
        ("live_session", "live_session"),
        ("identity", "identity"),
    ):
        allowed = set(re.findall(r"[a-z-]+", str(Settings.model_fields[setting].annotation).split("Literal[", 1)[1]))
        condition = module().variables[variable]["validation"][0]["condition"]
        listed = set(re.findall(r'"([a-z-]+)"', condition.split("contains([", 1)[1].split("]", 1)[0]))
        assert listed == allowed, (variable, listed, allowed)


@needs_terraform
def test_project_scope_needs_no_organization(pure_module: Path) -> None:
    out = _outputs(pure_module, "-var=project_id=shop-sec-123", "-var=region=europe-west1", "-var=scc_scope=project")
    assert out["responder_env"]["RESPONDER_MODE"] == "dry-run"


# --- checkov (its own virtualenv) -------------------------------------------------------------------------------------


def test_checkov_reports_no_failed_checks() -> None:
    checkov = ROOT / ".venv-checkov" / "bin" / "checkov"
    if not checkov.exists():
        message = f"{checkov} is missing: run `make checkov` (it creates .venv-checkov)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(checkov), "-d", str(TF_DIR), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    report = json.loads(result.stdout)
    failed = report["results"]["failed_checks"]
    assert report["summary"]["failed"] == 0, [(c["check_id"], c["resource"]) for c in failed]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for skipped in report["results"]["skipped_checks"]:
        assert skipped["check_result"].get("suppress_comment"), f"unjustified skip {skipped['check_id']}"
    assert result.returncode == 0, result.stderr


@needs_terraform
def test_the_static_admin_tier_policy_is_opt_in_and_rendered_with_its_priority(pure_module: Path) -> None:
    on = [
        "-var=manage_kubernetes_rbac=true",
        '-var=rbac_cluster={project="shop-prod",location="europe-west1",name="gke"}',
        "-var=enable_cluster_quarantine_policy=true",
    ]
    out = _outputs(pure_module, *REQUIRED_VARS, *on, "-var=cluster_quarantine_priority=7")
    (doc,) = out["cluster_quarantine_manifests"].values()
    assert (doc["kind"], doc["spec"]["tier"], doc["spec"]["priority"]) == ("ClusterNetworkPolicy", "Admin", 7)
    assert doc["spec"]["subject"]["pods"]["podSelector"] == {"matchLabels": {"responder.rsr.dev/quarantine": "true"}}
    assert out["kubernetes_manifest_files"][-1] == "deploy/kubernetes/cluster-quarantine.yaml"
    assert "-e 's/${priority}/7/' deploy/kubernetes/cluster-quarantine.yaml" in out["rbac_apply_command"]
    assert "var.enable_cluster_quarantine_policy ?" in access_locals()["cluster_quarantine_manifests"]
    # Opt-in: not rendered (nor read) without the toggle, even where Terraform manages the RBAC.
    off = _outputs(pure_module, *REQUIRED_VARS, *on[:2])
    assert off["cluster_quarantine_manifests"] == {}
    refused, _ = _evaluate(pure_module, *REQUIRED_VARS, *on, "-var=cluster_quarantine_priority=1001")
    assert refused.returncode != 0 and "cluster_quarantine_priority must be a whole number" in refused.stderr
