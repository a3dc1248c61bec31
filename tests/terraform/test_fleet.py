"""The fleet (issue 32): one deployment for many clusters in many projects, a per-cluster access module, an SCC scope
that covers exactly the fleet, and the canary.

What an operator relies on, evaluated by real Terraform on the provider-free part of the module (variables.tf +
locals.tf, the ``pure_module`` fixture) and on the provider-free part of modules/cluster-access: the worked example's
three clusters in two projects give both projects the function's roles and the SCC scope, and exactly those clusters
in RESPONDER_FLEET; a project scope that would leave a project out is refused at plan time; the root module applies
rbac_cluster through the per-cluster module, and its moved blocks carry every object an existing state holds into it
(real Terraform plans the move with terraform_data in place of kubernetes_manifest); the canary's identities hold one
grant each.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.terraform.test_terraform_module import (
    ACCESS_MAPS,
    MANAGED_RBAC,
    REQUIRED_VARS,
    TERRAFORM,
    _evaluate,
    _load,
    _outputs,
    _terraform_bin,
    _tf_env,
    block,
    iam_members,
    module,
    needs_terraform,
    pure_access_module,
    pure_module,
    rbac_module_block,
    require_terraform,
    resource,
    roles_of,
    terraform_init,
    top_level_blocks,
    write_stubs,
)

__all__ = ["_terraform_bin", "pure_module"]  # fixtures shared with test_terraform_module

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
EXAMPLE = TF_DIR / "examples" / "fleet" / "main.tf"
ACCESS = TF_DIR / "modules" / "cluster-access"
IDENTITY = "rs-responder-fn@shop-sec-123.iam.gserviceaccount.com"


def example() -> dict[str, Any]:
    return _load(EXAMPLE)


def example_clusters() -> list[dict[str, str]]:
    (locals_,) = [b for b in example()["locals"] if "clusters" in b]
    clusters: list[dict[str, str]] = locals_["clusters"]
    return clusters


def example_modules() -> dict[str, dict[str, Any]]:
    return {name: body for b in example()["module"] for name, body in b.items()}


def fleet_vars(tmp_path: Path, **extra: Any) -> str:
    """The example's module arguments that matter here, as a -var-file."""
    responder = example_modules()["responder"]
    assert responder["clusters"] == "${local.clusters}"
    path = tmp_path / f"fleet-{len(list(tmp_path.iterdir()))}.tfvars.json"
    path.write_text(json.dumps({"clusters": example_clusters(), **extra}))
    return f"-var-file={path}"


# --- the worked example ------------------------------------------------------------------------------------------------


def test_the_example_is_three_clusters_in_two_projects_each_with_its_own_access_module() -> None:
    clusters = example_clusters()
    assert len(clusters) == 3
    assert len({c["project"] for c in clusters}) == 2
    modules = example_modules()
    assert modules["responder"]["source"] == "../.."
    access = {name: body for name, body in modules.items() if body["source"] == "../../modules/cluster-access"}
    assert len(access) == len(clusters)
    providers = {name: body for b in example()["provider"] for name, body in b.items() if name == "kubernetes"}
    aliases = {}
    for b in example()["provider"]:
        for name, body in b.items():
            if name == "kubernetes":
                aliases[body["alias"]] = body
    assert providers and len(aliases) == len(clusters)
    # Each access module gets its own provider, and each provider reaches its own cluster.
    keys = {f"projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}" for c in clusters}
    used = set()
    for body in access.values():
        (mapping,) = body["providers"] if isinstance(body["providers"], list) else [body["providers"]]
        alias = re.fullmatch(r"\$\{kubernetes\.([a-z_]+)\}", mapping["kubernetes"]).group(1)  # type: ignore[union-attr]
        host = re.search(r'local\.host\["([^"]+)"\]', aliases[alias]["host"]).group(1)  # type: ignore[union-attr]
        used.add(host)
        # The identity is known at plan time, so every manifest (and the for_each keys) is too.
        assert body["responder_identity"] == "${module.responder.responder_identity}"
    assert used == keys
    assert module().outputs["responder_identity"]["value"] == "${local.function_sa_email}"


@needs_terraform
def test_the_example_fleet_gets_iam_in_both_projects_and_exactly_its_clusters(
    pure_module: Path, tmp_path: Path
) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, fleet_vars(tmp_path))
    projects = {c["project"] for c in example_clusters()}
    assert out["fleet_projects"] == sorted(projects)
    grants = {(g["project"], g["role"]) for g in out["function_cluster_grants"].values()}
    assert grants == {(p, r) for p in projects for r in ("roles/container.clusterViewer", "roles/logging.viewer")}
    fleet = out["responder_env"]["RESPONDER_FLEET"].split(",")
    assert fleet == sorted(
        f"projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}" for c in example_clusters()
    )
    assert len(fleet) == 3
    # Organization scope: one filter naming both projects, and nothing else (no project scope configs, roles).
    assert out["scc_projects"] == [] and out["function_scc_project_grants"] == {}
    for project in projects:
        assert f'resource_name : "//container.googleapis.com/projects/{project}/"' in out["notification_filter"]
    assert out["notification_filter"].count("resource_name :") == 2
    # The canary names the first cluster, so it passes that filter.
    assert out["canary_resource"] == f"//container.googleapis.com/{fleet[0]}" or out["canary_resource"] in {
        f"//container.googleapis.com/{name}" for name in fleet
    }
    assert out["canary_resource"].removeprefix("//container.googleapis.com/") in fleet


@needs_terraform
def test_project_scope_puts_a_notification_config_and_the_scc_roles_in_every_fleet_project(
    pure_module: Path, tmp_path: Path
) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, "-var=scc_scope=project", fleet_vars(tmp_path))
    projects = sorted({c["project"] for c in example_clusters()})
    assert out["scc_projects"] == projects
    grants = {(g["project"], g["role"]) for g in out["function_scc_project_grants"].values()}
    assert grants == {(p, r) for p in projects for r in out["function_scc_roles"]}


@needs_terraform
def test_project_scope_that_would_miss_a_fleet_project_is_refused(pure_module: Path, tmp_path: Path) -> None:
    result, _ = _evaluate(
        pure_module, *REQUIRED_VARS, "-var=scc_scope=project", "-var=scc_project_id=shop-prod", fleet_vars(tmp_path)
    )
    assert result.returncode != 0
    assert "var.scc_project_id" in result.stderr
    assert "would never arrive" in result.stderr.replace("\n", " ").replace("│", "").replace("  ", " ")
    # One project, named explicitly: accepted.
    one = [c for c in example_clusters() if c["project"] == "shop-prod"]
    path = tmp_path / "one.tfvars.json"
    path.write_text(json.dumps({"clusters": one}))
    out = _outputs(
        pure_module, *REQUIRED_VARS, "-var=scc_scope=project", "-var=scc_project_id=shop-prod", f"-var-file={path}"
    )
    assert out["scc_projects"] == ["shop-prod"]


@needs_terraform
def test_legacy_cluster_projects_still_work_and_cannot_be_combined_with_clusters(
    pure_module: Path, tmp_path: Path
) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, '-var=cluster_projects=["shop-prod","shop-staging"]')
    assert out["fleet_projects"] == ["shop-prod", "shop-staging"]
    assert "RESPONDER_FLEET" not in out["responder_env"]  # no cluster list: every cluster is handled
    assert {g["project"] for g in out["function_cluster_grants"].values()} == {"shop-prod", "shop-staging"}
    result, _ = _evaluate(pure_module, *REQUIRED_VARS, '-var=cluster_projects=["shop-prod"]', fleet_vars(tmp_path))
    assert result.returncode != 0
    assert "var.cluster_projects" in result.stderr and "deprecated" in result.stderr


@needs_terraform
@pytest.mark.parametrize(
    "cluster",
    [
        {"project": "123456789", "location": "europe-west1", "name": "a"},
        {"project": "shop-prod", "location": "Europe", "name": "a"},
        {"project": "shop-prod", "location": "europe-west1", "name": "A_b"},
        {"project": "shop-prod", "location": "europe-west1", "name": "a", "dataplane": "calico"},
        {"project": "shop-prod", "location": "europe-west1", "name": "a", "endpoint": "private"},
    ],
)
def test_invalid_clusters_are_rejected(pure_module: Path, tmp_path: Path, cluster: dict[str, str]) -> None:
    path = tmp_path / "bad.tfvars.json"
    path.write_text(json.dumps({"clusters": [cluster]}))
    result, _ = _evaluate(pure_module, *REQUIRED_VARS, f"-var-file={path}")
    assert result.returncode != 0
    assert "var.clusters" in result.stderr


@needs_terraform
def test_the_same_cluster_twice_is_rejected(pure_module: Path, tmp_path: Path) -> None:
    path = tmp_path / "twice.tfvars.json"
    path.write_text(json.dumps({"clusters": [example_clusters()[0], example_clusters()[0]]}))
    result, _ = _evaluate(pure_module, *REQUIRED_VARS, f"-var-file={path}")
    assert result.returncode != 0
    assert "twice" in result.stderr


# --- SCC: one authoritative publisher binding over every config -------------------------------------------------------


def test_every_notification_config_account_publishes_and_no_one_else() -> None:
    binding = resource("google_pubsub_topic_iam_binding", "findings_publishers")
    assert binding["members"] == '${[for sa in local.scc_publishers : "serviceAccount:${sa}"]}'
    publishers = module().locals["scc_publishers"]
    for config in ("google_scc_v2_organization_notification_config", "google_scc_v2_project_notification_config"):
        assert config in publishers


# --- the per-cluster access module ------------------------------------------------------------------------------------


def test_the_access_module_takes_its_provider_from_the_caller() -> None:
    for path in ACCESS.glob("*.tf"):
        doc = _load(path)
        assert "provider" not in doc, f"{path.name} configures a provider"
        for b in doc.get("resource", []):
            for rtype, named in b.items():
                assert rtype == "kubernetes_manifest", rtype
                for body in named.values():
                    assert "provider" not in body
    (terraform,) = _load(ACCESS / "versions.tf")["terraform"]
    (providers,) = terraform["required_providers"]
    assert set(providers) == {"kubernetes"}
    assert providers["kubernetes"] == block(module().terraform[0], "required_providers")["kubernetes"]


@pytest.fixture(scope="module")
def access_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """modules/cluster-access without its resources (no provider), at the same depth below deploy/ as in the repo."""
    require_terraform()
    assert TERRAFORM is not None
    root = tmp_path_factory.mktemp("access")
    work = root / "terraform" / "modules" / "cluster-access"
    pure_access_module(work)
    (root / "deploy").symlink_to(ROOT / "deploy")
    terraform_init(work, root)
    return work


def test_the_root_applies_rbac_cluster_through_the_access_module() -> None:
    rbac = module().modules["rbac_cluster"]
    assert rbac["source"] == "./modules/cluster-access"
    assert (TF_DIR / rbac["source"]).resolve() == ACCESS.resolve()
    # The root's own kubernetes provider, configured from rbac_cluster (whatever manage_kubernetes_rbac says).
    assert rbac["providers"] == {"kubernetes": "kubernetes"}
    assert rbac["count"] == "${var.manage_kubernetes_rbac ? 1 : 0}"
    # Every input of the module but manifests_dir (its default is this repository's deploy/kubernetes), each from the
    # root's variable of the same name; the identity is the function's, computed at plan time.
    (variables,) = [set().union(*_load(ACCESS / "variables.tf")["variable"])]
    passed = set(rbac) - {"source", "count", "providers"}
    assert passed == variables - {"manifests_dir"}
    assert rbac["responder_identity"] == "${local.function_sa_email}"
    for name in passed - {"responder_identity"}:
        assert rbac[name] == f"${{var.{name}}}", name
    # No rendering and no kubernetes_manifest of its own left in the root.
    assert not [key for key in module().resources if key[0].startswith("kubernetes_")]
    assert not set(module().locals) & set(ACCESS_MAPS)
    # One moved block per resource of the module, from the root resource of the same name to instance 0.
    manifests = [name for b in _load(ACCESS / "main.tf")["resource"] for name in b["kubernetes_manifest"]]
    assert sorted(module().moved, key=lambda m: m["from"]) == sorted(
        (
            {
                "from": f"${{kubernetes_manifest.{name}}}",
                "to": f"${{module.rbac_cluster[0].kubernetes_manifest.{name}}}",
            }
            for name in manifests
        ),
        key=lambda m: m["from"],
    )


@needs_terraform
@pytest.mark.parametrize(
    "toggles",
    [
        {},
        {"process_capture": True, "cluster_quarantine_policy": True, "admission_guard": True},
        {"admission_guard": False},
    ],
)
def test_the_root_passes_its_identity_and_toggles_to_the_access_module(
    pure_module: Path, access_module: Path, toggles: dict[str, bool]
) -> None:
    flags = [f"-var=enable_{k}={str(v).lower()}" for k, v in toggles.items()]
    root = _outputs(pure_module, *REQUIRED_VARS, *MANAGED_RBAC, "-var=cluster_quarantine_priority=7", *flags)
    access = _outputs(
        access_module, f"-var=responder_identity={IDENTITY}", "-var=cluster_quarantine_priority=7", *flags
    )
    for name in ACCESS_MAPS:
        assert root[name] == access[name], name
    assert access["rbac_cluster_scoped"] and access["rbac_namespaced"]
    subjects = {s["name"] for doc in access["rbac_cluster_scoped"].values() for s in doc.get("subjects", [])}
    assert subjects == {IDENTITY}
    assert bool(access["capture_manifests"]) is toggles.get("process_capture", False)
    assert bool(access["admission_guard_manifests"]) is toggles.get("admission_guard", True)


# The root module's own resources before it applied rbac_cluster through modules/cluster-access, each with the map it
# applied and that map's key format: the addresses every existing state holds. (The keys were the module's: a test
# kept the two renderings equal.) Written out here, not read from the module, so that a change of the module's keys
# shows up as a move that no longer matches.
FORMER_ROOT_RESOURCES = {
    "rbac_cluster_scoped": ("rbac_cluster_scoped", "{kind}/{name}"),
    "rbac_namespaced": ("rbac_namespaced", "{kind}/{namespace}/{name}"),
    "process_capture": ("capture_manifests", "{kind}/{namespace}/{name}"),
    "admission_guard": ("admission_guard_manifests", "{kind}/{namespace}/{name}"),
    "cluster_quarantine": ("cluster_quarantine_manifests", "{kind}//{name}"),
}
MANIFESTS = ROOT / "deploy" / "kubernetes"


def _former_keys(resource_name: str) -> set[str]:
    """The keys the former root resource had with every toggle on, from the manifest files themselves."""
    files = {
        "rbac_cluster_scoped": ["rbac.yaml"],
        "rbac_namespaced": ["rbac.yaml"],
        "process_capture": ["rbac-capture.yaml"],
        "admission_guard": ["admission-guard.yaml", "identity-guard.yaml"],
        "cluster_quarantine": ["cluster-quarantine.yaml"],
    }[resource_name]
    docs = [
        doc for name in files for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc and doc.get("kind")
    ]
    if resource_name == "rbac_cluster_scoped":
        docs = [d for d in docs if "namespace" not in d["metadata"]]
    elif resource_name == "rbac_namespaced":
        docs = [d for d in docs if "namespace" in d["metadata"]]
    _, key = FORMER_ROOT_RESOURCES[resource_name]
    return {
        key.format(kind=d["kind"], namespace=d["metadata"].get("namespace", ""), name=d["metadata"]["name"])
        for d in docs
    }


def _tf(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    result = subprocess.run(
        [TERRAFORM, f"-chdir={work}", *args],
        capture_output=True,
        text=True,
        env=_tf_env(work.parent),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_terraform
def test_moved_blocks_carry_every_object_of_an_existing_state_into_the_module(tmp_path: Path) -> None:
    """An apply of the former root (its five resources, every toggle on), then a plan of the current root over that
    state: every object moves to module.rbac_cluster[0] under its key and stays as it is; nothing is created or
    destroyed. kubernetes_manifest needs a cluster at plan time, so both sides use terraform_data (built into
    Terraform) under the same names, with the manifest as its input; the moved blocks are the root's, renamed alike."""
    root = tmp_path
    (root / "deploy").symlink_to(ROOT / "deploy")
    work = root / "terraform"
    work.mkdir()
    state = root / "existing.tfstate"
    identity = "rs-responder-fn@shop-sec-123.iam.gserviceaccount.com"  # the function's, from REQUIRED_VARS' project
    every_toggle = {"process_capture": True, "admission_guard": True, "cluster_quarantine_policy": True}

    # The former root: its resources over the same rendering, in a state of their own.
    former = work / "former"
    former.mkdir()
    pure_access_module(work / "modules" / "render")
    inputs = "".join(f"  enable_{k} = {str(v).lower()}\n" for k, v in every_toggle.items())
    (former / "main.tf").write_text(
        f'module "render" {{\n  source = "../modules/render"\n  responder_identity = "{identity}"\n{inputs}'
        "  cluster_quarantine_priority = 7\n}\n"
        + "".join(
            f'\nresource "terraform_data" "{name}" {{\n  for_each = module.render.{rendered}\n  input    = each.value\n}}\n'
            for name, (rendered, _) in FORMER_ROOT_RESOURCES.items()
        )
    )
    terraform_init(former, root)
    _tf(former, "apply", "-auto-approve", "-input=false", "-no-color", f"-state={state}")
    existing = set(_tf(former, "state", "list", f"-state={state}").stdout.split())
    expected = {f'terraform_data.{name}["{key}"]' for name in FORMER_ROOT_RESOURCES for key in _former_keys(name)}
    assert existing == expected  # the module renders under the former keys
    assert len(existing) >= 9

    # The current root: its module block and moved blocks, verbatim but for the resource type.
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(TF_DIR / name, work / name)
    write_stubs(work)
    pure_access_module(work / "modules" / "cluster-access", resources=True)
    kubernetes_tf = (TF_DIR / "kubernetes.tf").read_text()
    moved = top_level_blocks(kubernetes_tf, "moved")
    assert len(moved) == len(FORMER_ROOT_RESOURCES)
    (work / "rbac.tf").write_text(
        rbac_module_block() + "\n" + "\n".join(moved).replace("kubernetes_manifest", "terraform_data")
    )
    terraform_init(work, root)
    flags = [f"-var=enable_{k}={str(v).lower()}" for k, v in every_toggle.items()]
    plan = root / "moved.tfplan"
    _tf(
        work,
        "plan",
        "-input=false",
        "-no-color",
        f"-state={state}",
        f"-out={plan}",
        *REQUIRED_VARS,
        *MANAGED_RBAC,
        "-var=cluster_quarantine_priority=7",
        *flags,
    )
    changes = json.loads(_tf(work, "show", "-json", str(plan)).stdout)["resource_changes"]
    assert {c["change"]["actions"][0] for c in changes} == {"no-op"}, [
        (c["address"], c["change"]["actions"]) for c in changes if c["change"]["actions"] != ["no-op"]
    ]
    assert {c.get("previous_address") for c in changes} == existing
    assert {c["address"] for c in changes} == {f"module.rbac_cluster[0].{address}" for address in existing}


def test_the_access_module_applies_every_rendered_map() -> None:
    resources = {
        name: body for b in _load(ACCESS / "main.tf")["resource"] for name, body in b["kubernetes_manifest"].items()
    }
    assert {name: body["for_each"] for name, body in resources.items()} == {
        "rbac_cluster_scoped": "${local.rbac_cluster_scoped}",
        "rbac_namespaced": "${local.rbac_namespaced}",
        "process_capture": "${local.capture_manifests}",
        "admission_guard": "${local.admission_guard_manifests}",
        "cluster_quarantine": "${local.cluster_quarantine_manifests}",
    }
    assert all(body["manifest"] == "${each.value}" for body in resources.values())
    assert resources["rbac_namespaced"]["depends_on"] == ["${kubernetes_manifest.rbac_cluster_scoped}"]


# --- the canary --------------------------------------------------------------------------------------------------------


def test_the_canary_writes_under_its_own_source_and_each_identity_holds_one_grant() -> None:
    source = resource("google_scc_source", "canary")
    assert source["organization"] == "${var.organization_id}"
    assert source["count"] == "${local.canary_enabled ? 1 : 0}"
    writer = resource("google_scc_source_iam_member", "canary_writer")
    assert writer["source"] == "${google_scc_source.canary[0].name}"
    assert writer["role"] == "roles/securitycenter.findingsEditor"
    assert writer["member"] == "serviceAccount:${google_service_account.canary[0].email}"
    invoker = resource("google_project_iam_member", "canary_cron_invoker")
    assert invoker["role"] == "roles/workflows.invoker"
    assert invoker["member"] == "serviceAccount:${google_service_account.canary_cron[0].email}"
    granted: dict[str, set[str]] = {"canary[0]": set(), "canary_cron[0]": set()}
    for body in iam_members().values():
        for sa in granted:
            if f"google_service_account.{sa}." in body["member"]:
                granted[sa] |= roles_of(body)
    assert granted == {
        "canary[0]": {"roles/securitycenter.findingsEditor"},
        "canary_cron[0]": {"roles/workflows.invoker"},
    }
    # The workflow runs as the writer; the schedule calls the Workflows executions API as the cron identity.
    workflow = resource("google_workflows_workflow", "canary")
    assert workflow["service_account"] == "${google_service_account.canary[0].id}"
    job = resource("google_cloud_scheduler_job", "canary")
    target = block(job, "http_target")
    assert (
        target["uri"]
        == "https://workflowexecutions.googleapis.com/v1/${google_workflows_workflow.canary[0].id}/executions"
    )
    assert block(target, "oauth_token")["service_account_email"] == "${google_service_account.canary_cron[0].email}"
    assert job["schedule"] == "${local.canary_schedule}"
    assert module().locals["responder_env_candidates"]["RESPONDER_CANARY_SOURCE"] == "${local.canary_source_name}"


def test_the_canary_workflow_upserts_a_finding_with_a_fresh_event_time() -> None:
    text = (TF_DIR / "workflows" / "canary.yaml").read_text()
    # Render as templatefile would with sample values ($${ is a literal ${ for Workflows).
    values = {
        "finding": "organizations/1/sources/2/findings/rsrcanary",
        "category": "Reverse Shell",
        "resource": "//container.googleapis.com/projects/p/locations/l/clusters/c",
        "deployment": "rs-responder",
        "description": "canary",
    }
    rendered = re.sub(
        r"(?<!\$)\$\{jsonencode\(\"https://securitycenter.googleapis.com/v1/\$\{finding\}\"\)\}",
        json.dumps(f"https://securitycenter.googleapis.com/v1/{values['finding']}"),
        text,
    )
    rendered = re.sub(r"(?<!\$)\$\{jsonencode\((\w+)\)\}", lambda m: json.dumps(values[m.group(1)]), rendered)
    rendered = rendered.replace("$${", "${")

    doc = yaml.safe_load(rendered)
    (upsert, _done) = doc["main"]["steps"]
    call = upsert["upsert"]
    assert call["call"] == "http.patch"  # SCC's patch creates the finding when it does not exist
    assert call["args"]["url"] == f"https://securitycenter.googleapis.com/v1/{values['finding']}"
    assert call["args"]["auth"] == {"type": "OAuth2"}
    body = call["args"]["body"]
    assert body["eventTime"] == "${time.format(sys.now())}"
    assert body["state"] == "ACTIVE"
    assert body["category"] == values["category"] and body["resourceName"] == values["resource"]
    for field in ("state", "category", "resourceName", "eventTime"):
        assert field in call["args"]["query"]["updateMask"].split(",")
    workflow = resource("google_workflows_workflow", "canary")
    assert "var.categories[0]" in workflow["source_contents"]
    assert "local.canary_resource" in workflow["source_contents"]


@needs_terraform
@pytest.mark.parametrize(
    ("minutes", "schedule"),
    [(5, "*/5 * * * *"), (30, "*/30 * * * *"), (60, "0 */1 * * *"), (360, "0 */6 * * *")],
)
def test_the_canary_schedule_and_its_alert_window(pure_module: Path, minutes: int, schedule: str) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS, f"-var=canary_interval_min={minutes}")
    assert out["canary_schedule"] == schedule
    assert out["canary_absent_after_s"] == minutes * 60 * 3
    assert "cloudscheduler.googleapis.com" in out["required_services"]


@needs_terraform
def test_no_canary_without_an_organization(pure_module: Path) -> None:
    out = _outputs(pure_module, "-var=project_id=shop-sec-123", "-var=region=europe-west1", "-var=scc_scope=project")
    assert out["canary_enabled"] is False
    assert "RESPONDER_CANARY_SOURCE" not in out["responder_env"]
    assert not {"cloudscheduler.googleapis.com", "workflows.googleapis.com"} & set(out["required_services"])
    result, _ = _evaluate(pure_module, *REQUIRED_VARS, "-var=canary_interval_min=45")
    assert result.returncode != 0 and "var.canary_interval_min" in result.stderr


def test_plan_time_checks_say_what_is_wrong() -> None:
    checks = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        for b in _load(path).get("check", []):
            checks.update(b)
    assert set(checks) == {
        "notification_filter_covers_the_fleet",
        "canary_has_an_organization",
        "enforce_mode_pages_someone",
    }
    enforce = checks["enforce_mode_pages_someone"]["assert"][0]
    assert enforce["condition"] == '${var.mode != "enforce" || length(var.notification_channels) > 0}'


def test_the_dead_letter_subscription_description_says_what_switching_it_off_destroys() -> None:
    description = module().variables["enable_dead_letter"]["description"]
    for said in ("destroys the dead-letter topic and subscription", "still waiting", "replay them first"):
        assert said in description, said
