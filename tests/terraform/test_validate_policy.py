"""`validate-policy` runs in the build (issue 32): a bad policy fails the apply, not the first real finding.

Cloud Functions gen2 builds Python with buildpacks that run no step of ours, so the module submits a Cloud Build of its
own (terraform/build/validate-policy.yaml) on the archive it uploaded, from a terraform_data's local-exec, and the
function depends on it. Proved here without Google:

- real Terraform evaluates the command (locals.tf) and runs the real terraform_data block with a stand-in `gcloud` on
  PATH that records its argv: exactly the expected argv, no shell on the way (the config's path holds a space and a
  `$`), a failing check fails the apply before the resource that stands for the function, and the check runs again
  only when the archive changes;
- the config's own validate-policy step, read from the YAML with the substitutions Terraform passes, runs on the
  source files Terraform zips: the repository's policy passes, a bad one fails and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.terraform.test_terraform_module import (
    FAKE_SOURCE_OBJECT,
    REQUIRED_VARS,
    TERRAFORM,
    _outputs,
    _terraform_bin,
    _tf_env,
    iam_members,
    module,
    needs_terraform,
    pure_module,
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
CONFIG = TF_DIR / "build" / "validate-policy.yaml"
BUCKET = "shop-sec-123-rs-responder-source"  # local.names.source_bucket for REQUIRED_VARS
POLICY_SA = "rs-responder-policy@shop-sec-123.iam.gserviceaccount.com"
WORKSPACE = "/workspace"  # where Cloud Build unpacks the source and runs every step


def expected_argv(config: Path, *, policy: str = "policy.yaml", image: str = "python:3.11-slim") -> list[str]:
    return [
        "gcloud",
        "builds",
        "submit",
        f"gs://{BUCKET}/{FAKE_SOURCE_OBJECT}",
        f"--config={config}",
        "--project=shop-sec-123",
        "--region=europe-west1",
        f"--service-account=projects/shop-sec-123/serviceAccounts/{POLICY_SA}",
        f"--gcs-source-staging-dir=gs://{BUCKET}/validate-policy",
        f"--substitutions=_POLICY_FILE={policy},_PYTHON_IMAGE={image}",
        "--quiet",
    ]


def build_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def step(step_id: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = build_config()["steps"]
    (found,) = [s for s in steps if s.get("id") == step_id]
    return found


def substitutions(argv: list[str]) -> dict[str, str]:
    """The config's defaults overridden by what the command passes (--substitutions=K=V,K=V), as Cloud Build merges them."""
    (flag,) = [a for a in argv if a.startswith("--substitutions=")]
    passed = dict(pair.split("=", 1) for pair in flag.removeprefix("--substitutions=").split(","))
    return {**build_config()["substitutions"], **passed}


def substitute(value: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution of user variables (${_NAME} and $_NAME) in a step's fields."""
    done = re.sub(r"\$\{(_[A-Z0-9_]+)\}|\$(_[A-Z0-9_]+)", lambda m: values[m.group(1) or m.group(2)], value)
    assert "$" not in done, done
    return done


# --- the Terraform side ------------------------------------------------------------------------------------------------


def test_the_function_is_built_only_after_the_check_of_its_archive() -> None:
    function = resource("google_cloudfunctions2_function", "responder")
    assert "${terraform_data.validate_policy}" in function["depends_on"]
    check = resource("terraform_data", "validate_policy")
    assert check["count"] == "${var.validate_policy_in_build ? 1 : 0}"
    # The archive is uploaded and the build identity's grants have propagated before the check starts.
    assert check["depends_on"] == ["${google_storage_bucket_object.source}", "${time_sleep.policy_iam_propagation}"]
    assert check["triggers_replace"] == {
        "source": "${local.source_object}",
        "policy_file": "${local.validate_policy_file}",
        "image": "${local.validate_policy_image}",
        "config": "${filesha256(local.validate_policy_config)}",
    }
    # The function is built from the object the check names.
    assert resource("google_storage_bucket_object", "source")["name"] == "${local.source_object}"
    assert "gs://${local.names.source_bucket}/${local.source_object}" in module().locals["validate_policy_argv"]
    # One argv, split into Terraform's interpreter + command: no shell, no environment or directory of its own.
    (provisioner,) = check["provisioner"]
    assert provisioner["local-exec"] == {
        "interpreter": "${slice(local.validate_policy_argv, 0, length(local.validate_policy_argv) - 1)}",
        "command": "${local.validate_policy_argv[length(local.validate_policy_argv) - 1]}",
    }
    assert module().locals["validate_policy_config"] == "${abspath(path.module)}/build/validate-policy.yaml"


def test_the_switch_defaults_on_and_says_what_it_needs() -> None:
    variable = module().variables["validate_policy_in_build"]
    assert variable["default"] is True and variable["nullable"] is False
    for needed in ("gcloud CLI on PATH", "roles/cloudbuild.builds.editor", "Cloud Build API", "false: no check"):
        assert needed in variable["description"], needed
    assert '"cloudbuild.googleapis.com"' in module().locals["required_services"]  # always enabled: the function builds
    # Everything the check creates goes with the switch.
    for key in (
        ("google_service_account", "policy"),
        ("google_storage_bucket_iam_member", "policy_source_reader"),
        ("google_project_iam_member", "policy_log_writer"),
        ("time_sleep", "policy_iam_propagation"),
    ):
        assert resource(*key)["count"] == "${var.validate_policy_in_build ? 1 : 0}", key


def test_the_check_identity_may_read_the_source_and_write_its_log_only() -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for key, body in iam_members().items():
        if "google_service_account.policy[" in body["member"]:
            granted[key] = roles_of(body)
    assert granted == {
        ("google_storage_bucket_iam_member", "policy_source_reader"): {"roles/storage.objectViewer"},
        ("google_project_iam_member", "policy_log_writer"): {"roles/logging.logWriter"},
    }
    assert resource("google_storage_bucket_iam_member", "policy_source_reader")["bucket"] == (
        "${google_storage_bucket.source.name}"
    )
    assert resource("google_service_account", "policy")["account_id"] == "${local.service_accounts.policy}"
    # Its build log goes to Cloud Logging: a user-managed build identity cannot use the default logs bucket.
    assert build_config()["options"]["logging"] == "CLOUD_LOGGING_ONLY"


@needs_terraform
def test_terraform_builds_the_command_for_the_policy_the_function_loads(pure_module: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS)
    config = pure_module / "build" / "validate-policy.yaml"  # abspath(path.module) of the scratch copy
    assert out["validate_policy_argv"] == expected_argv(config)
    assert (out["validate_policy_file"], out["validate_policy_image"]) == ("policy.yaml", "python:3.11-slim")
    # Another policy file (shipped through extra_source_files) and the other runtime.
    out = _outputs(
        pure_module,
        *REQUIRED_VARS,
        "-var=policy_file=policies/strict.yaml",
        "-var=runtime=python312",
        '-var=extra_source_files=["policies/strict.yaml"]',
    )
    assert out["validate_policy_argv"] == expected_argv(config, policy="policies/strict.yaml", image="python:3.12-slim")
    assert out["responder_env"]["RESPONDER_POLICY_FILE"] == "policies/strict.yaml"  # the file the function loads


def test_every_substitution_passed_is_used_by_the_config_and_given_a_default() -> None:
    # Cloud Build refuses a build whose substitutions the config does not use.
    text = CONFIG.read_text()
    passed = set(substitutions(expected_argv(CONFIG)))
    assert passed == set(build_config()["substitutions"]) == {"_POLICY_FILE", "_PYTHON_IMAGE"}
    for name in passed:
        assert f"${{{name}}}" in text.split("\nsubstitutions:")[0], name


# --- the real terraform_data, with a stand-in gcloud ----------------------------------------------------------------


@pytest.fixture
def check_root(tmp_path: Path) -> Path:
    """variables.tf + locals.tf and the real terraform_data block, in a directory whose path a shell would split and
    expand, with a resource standing for the function (the real one's depends_on is asserted above)."""
    require_terraform()
    root = tmp_path / "check dir $HOME"
    work = root / "terraform"
    work.mkdir(parents=True)
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(TF_DIR / name, work / name)
    write_stubs(work)
    (work / "build").symlink_to(TF_DIR / "build")
    (root / "deploy").symlink_to(ROOT / "deploy")
    (root / "responder").symlink_to(ROOT / "responder")
    (check,) = top_level_blocks(
        (TF_DIR / "validate_policy.tf").read_text(), 'resource "terraform_data" "validate_policy"'
    )
    depends = "  depends_on = [google_storage_bucket_object.source, time_sleep.policy_iam_propagation]\n"
    assert depends in check
    (work / "check.tf").write_text(
        check.replace(depends, "")
        + '\nresource "terraform_data" "function" {\n  depends_on = [terraform_data.validate_policy]\n}\n'
    )
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.parent.mkdir()
    gcloud.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['FAKE_GCLOUD_LOG'], 'a') as log:\n"
        "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(int(os.environ['FAKE_GCLOUD_EXIT']))\n"
    )
    gcloud.chmod(0o755)
    assert TERRAFORM is not None
    terraform_init(work, root)
    return work


def _apply(work: Path, state: Path, exit_code: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    env = _tf_env(work.parent)
    env["PATH"] = f"{work.parent.parent / 'bin'}{os.pathsep}{env['PATH']}"
    env["FAKE_GCLOUD_LOG"] = str(work.parent.parent / "gcloud.log")
    env["FAKE_GCLOUD_EXIT"] = str(exit_code)
    command = [TERRAFORM, f"-chdir={work}", "apply", "-auto-approve", "-input=false", "-no-color", f"-state={state}"]
    return subprocess.run([*command, *REQUIRED_VARS, *args], capture_output=True, text=True, env=env, check=False)


def _calls(work: Path) -> list[list[str]]:
    log = work.parent.parent / "gcloud.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _resources(work: Path, state: Path) -> dict[str, dict[str, Any]]:
    assert TERRAFORM is not None
    shown = subprocess.run(
        [TERRAFORM, f"-chdir={work}", "show", "-json", str(state)],
        capture_output=True,
        text=True,
        env=_tf_env(work.parent),
        check=True,
    )
    values = json.loads(shown.stdout).get("values") or {}
    return {r["address"]: r for r in values.get("root_module", {}).get("resources", [])}


@needs_terraform
def test_a_failing_check_fails_the_apply_before_the_function(check_root: Path) -> None:
    work, state = check_root, check_root.parent / "check.tfstate"
    argv = expected_argv(work / "build" / "validate-policy.yaml")
    assert "$HOME" in argv[4] and " " in argv[4]  # a shell would have split and expanded this one

    failed = _apply(work, state, 1)
    assert failed.returncode != 0
    assert "local-exec provisioner error" in failed.stderr, failed.stderr
    assert _calls(work) == [argv[1:]]  # exactly this argv, through no shell
    resources = _resources(work, state)
    assert "terraform_data.function" not in resources  # the function is not rebuilt
    assert resources["terraform_data.validate_policy[0]"].get("tainted") is True  # checked again on the next apply

    passed = _apply(work, state, 0)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert _calls(work) == [argv[1:]] * 2
    assert "terraform_data.function" in _resources(work, state)

    # Nothing changed: no new check. A new archive: a new check, of that archive.
    assert _apply(work, state, 0).returncode == 0
    assert len(_calls(work)) == 2
    other = f"function-source-{'1' * 64}.zip"
    assert _apply(work, state, 0, f"-var=fake_source_object={other}").returncode == 0
    assert _calls(work)[-1][2] == f"gs://{BUCKET}/{other}"
    assert len(_calls(work)) == 3


@needs_terraform
def test_a_policy_file_missing_from_the_source_is_refused_at_plan_time(check_root: Path) -> None:
    result = _apply(check_root, check_root.parent / "missing.tfstate", 0, "-var=policy_file=policies/strict.yaml")
    assert result.returncode != 0
    assert "is not in the function source: list it in extra_source_files" in " ".join(result.stderr.split())
    # No gcloud ran.
    assert _calls(check_root) == []


# --- the Cloud Build config's own step, on the files Terraform zips ---------------------------------------------------

BAD_POLICIES = {
    "an unknown mode": ("mode: dry-run ", "mode: destroy "),
    "broken YAML": ("rules:\n", "rules: [\n"),
}


def _run_validate_step(workspace: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The validate-policy step as Cloud Build runs it: its entrypoint and args after substitution, its env, in the
    workspace. The python of the image is this interpreter; the install step's directory is empty here (this
    interpreter has requirements.txt installed already)."""
    validate = step("validate-policy")
    values = substitutions(argv)
    assert substitute(validate["name"], values) == values["_PYTHON_IMAGE"]
    assert validate["entrypoint"] == "python"
    args = [substitute(a, values) for a in validate["args"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for entry in validate.get("env", []):
        key, value = substitute(entry, values).split("=", 1)
        env[key] = value.replace(WORKSPACE, str(workspace))
    cwd = Path(validate.get("dir", WORKSPACE).replace(WORKSPACE, str(workspace)))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _workspace(tmp_path: Path, source_files: list[str], written: dict[str, str]) -> Path:
    """The build's /workspace: the archive's files (Terraform's allow-list), from the repository or written here."""
    workspace = tmp_path / "workspace"
    for name in source_files:
        target = workspace / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in written:
            target.write_text(written[name])
        else:
            shutil.copy(ROOT / name, target)
    return workspace


def test_the_install_step_installs_the_requirements_where_the_validate_step_looks() -> None:
    install, validate = step("install"), step("validate-policy")
    assert [s["id"] for s in build_config()["steps"]] == ["install", "validate-policy"]  # in order, one after the other
    assert install["name"] == validate["name"] == "${_PYTHON_IMAGE}"
    assert install["entrypoint"] == "python" and install["args"][:3] == ["-m", "pip", "install"]
    assert "--requirement=requirements.txt" in install["args"]
    (target,) = [a.removeprefix("--target=") for a in install["args"] if a.startswith("--target=")]
    assert target.startswith(f"{WORKSPACE}/")  # the workspace is shared by every step
    assert validate["env"] == [f"PYTHONPATH={target}"]
    # No shell anywhere: each step runs python with its arguments.
    for s in build_config()["steps"]:
        assert s["entrypoint"] == "python" and "-c" not in s["args"], s["id"]


@needs_terraform
def test_the_build_step_passes_the_repository_policy(pure_module: Path, tmp_path: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS)
    assert "policy.yaml" in out["source_files"] and "tests/" not in " ".join(out["source_files"])
    workspace = _workspace(tmp_path, out["source_files"], {})
    result = _run_validate_step(workspace, out["validate_policy_argv"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: policy.yaml: "), result.stdout


@needs_terraform
@pytest.mark.parametrize("defect", sorted(BAD_POLICIES))
def test_the_build_step_fails_a_bad_policy_and_says_why(pure_module: Path, tmp_path: Path, defect: str) -> None:
    old, new = BAD_POLICIES[defect]
    policy = (ROOT / "policy.yaml").read_text()
    assert old in policy
    out = _outputs(
        pure_module, *REQUIRED_VARS, "-var=policy_file=bad-policy.yaml", '-var=extra_source_files=["bad-policy.yaml"]'
    )
    assert "bad-policy.yaml" in out["source_files"]
    workspace = _workspace(tmp_path, out["source_files"], {"bad-policy.yaml": policy.replace(old, new, 1)})
    result = _run_validate_step(workspace, out["validate_policy_argv"])
    assert result.returncode == 1
    assert result.stderr.startswith("invalid: bad-policy.yaml: "), result.stderr
    why = {"an unknown mode": "defaults.mode: Input should be 'dry-run' or 'enforce'", "broken YAML": "not valid YAML"}
    assert why[defect] in result.stderr, result.stderr
