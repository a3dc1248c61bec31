"""The dead-letter runbook of docs/operations.md works as written.

The commands are taken from the document itself, not copied here: every ``terraform output`` they read must exist in
terraform/outputs.tf, the ``python -m responder`` command must be one the real CLI parses, and the whole block is run
in bash with ``terraform``, ``gcloud`` and ``python`` stand-ins on PATH. The stand-in ``terraform`` prints the
``replay_environment`` value that real Terraform renders from variables.tf + locals.tf, and the stand-in ``python``
parses its arguments with the real parser and loads the real settings from the environment the runbook gave it: so
the replay runs with the function's own settings and Google APIs on, and the exit code reaches the operator.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import hcl2
import pytest

from responder.cli import build_parser
from tests.notifications import dead_letter_pulled, notification
from tests.support.common import environ_without_settings
from tests.terraform.test_terraform_module import REQUIRED_VARS, _outputs, pure_module

__all__ = ["pure_module"]  # the module-scoped fixture, shared with test_terraform_module

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
OPERATIONS = ROOT / "docs" / "operations.md"
SUBSCRIPTION = "projects/shop-sec-123/subscriptions/rs-responder-findings-dead-letter"
# A category may hold anything but a comma, a double quote or a backslash (variables.tf): here, everything a shell
# would expand or split on, and a newline.
HOSTILE_CATEGORY = "Bob's $(touch PWNED) `touch PWNED2` ${HOME} ; | & *\nsecond line"


def _section(title: str) -> str:
    text = OPERATIONS.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _sh_blocks(section: str) -> list[str]:
    """The ```sh blocks of a section, dedented (they sit inside a numbered list)."""
    return [textwrap.dedent(b) for b in re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", section, re.M | re.S)]


def runbook() -> tuple[str, str]:
    """The dead-letter runbook's two blocks: pull + replay, and the acknowledgement."""
    blocks = _sh_blocks(_section("What to do with a dead letter"))
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def output_names() -> set[str]:
    with (TF_DIR / "outputs.tf").open() as f:
        doc = hcl2.load(f)
    return {name.strip('"') for block in doc.get("output", []) for name in block}


# --- the commands, read -------------------------------------------------------------------------------------------------


def test_the_runbook_reads_only_outputs_the_module_has() -> None:
    replay, ack = runbook()
    read = re.findall(r"terraform -chdir=terraform output -raw ([a-z_]+)", replay + ack)
    assert set(read) == {"findings_dead_letter_subscription", "replay_environment"}
    assert set(read) <= output_names()


def test_the_runbook_replays_with_a_command_the_cli_parses() -> None:
    replay, _ = runbook()
    (line,) = [line for line in replay.splitlines() if "python -m responder" in line]
    command = re.search(r"python -m responder ([^;)&|]+)", line)
    assert command, line
    args = build_parser().parse_args(shlex.split(command.group(1)))
    assert args.command == "replay"
    # It replays the file the pull wrote, with the settings file the output was written to.
    pulled = re.search(r"subscriptions pull \"\$SUB\" .*--format=json > (\S+)", replay)
    assert pulled and args.file == pulled.group(1)
    written = re.search(r"output -raw replay_environment > (\S+)", replay)
    assert written and f". ./{written.group(1)} && python -m responder" in line
    # The settings stay in a subshell, and the exit code is shown.
    assert line.lstrip().startswith("( ") and 'echo "replay exited $?"' in line


def test_the_runbook_is_valid_bash() -> None:
    for block in runbook():
        checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr


def test_the_runbook_says_what_each_exit_code_means_and_when_to_acknowledge() -> None:
    from responder import cli

    section = _section("What to do with a dead letter")
    rows = dict(re.findall(r"^\s*\| (\d) \| (.+?) \|", section, re.M))
    codes = {
        cli.EXIT_OK: "done",
        cli.EXIT_ERROR: "retry",
        cli.EXIT_REJECT: "reject",
        cli.EXIT_NOT_CONTAINED: "not_contained",
    }
    assert set(rows) == {str(code) for code in codes}
    for code, word in codes.items():
        assert f"`{word}`" in rows[str(code)], (code, rows[str(code)])
    assert "never acknowledged blindly" in section
    _, ack = runbook()
    assert 'gcloud pubsub subscriptions ack "$SUB"' in ack


# --- the commands, run ------------------------------------------------------------------------------------------------

STUB_PYTHON = """
import json, os, sys
sys.path.insert(0, os.environ["STUB_REPO"])
from responder.cli import build_parser
from responder.config import load_settings

args = build_parser().parse_args(sys.argv[3:])
settings = load_settings()
with open(os.environ["STUB_RECORD"], "w") as f:
    json.dump(
        {
            "argv": sys.argv[1:],
            "file": args.file,
            "file_holds": json.load(open(args.file)),
            "env": {k: v for k, v in os.environ.items() if k.startswith("RESPONDER_")},
            "settings": json.loads(settings.model_dump_json()),
        },
        f,
    )
sys.exit(int(os.environ["STUB_EXIT"]))
"""


def _stub_bin(tmp: Path, rendered_env: str, pulled: Any, outputs: set[str]) -> Path:
    """terraform, gcloud and python stand-ins that answer only what the runbook asks."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (tmp / "replay_environment.out").write_text(rendered_env)
    (tmp / "pulled.json").write_text(json.dumps(pulled))
    (tmp / "stub_python.py").write_text(STUB_PYTHON)
    terraform = f"""#!/bin/bash
[ "$1" = -chdir=terraform ] && [ "$2" = output ] && [ "$3" = -raw ] || {{ echo "unexpected: $*" >&2; exit 64; }}
case " {" ".join(sorted(outputs))} " in *" $4 "*) ;; *) echo "Error: Output \\"$4\\" not found" >&2; exit 1;; esac
case "$4" in
  findings_dead_letter_subscription) printf %s {shlex.quote(SUBSCRIPTION)} ;;
  replay_environment) cat {shlex.quote(str(tmp / "replay_environment.out"))} ;;
  *) exit 65 ;;
esac
"""
    gcloud = f"""#!/bin/bash
[ "$*" = "pubsub subscriptions pull {SUBSCRIPTION} --limit=1 --format=json" ] || {{ echo "unexpected: $*" >&2; exit 64; }}
cat {shlex.quote(str(tmp / "pulled.json"))}
"""
    python = f"""#!/bin/bash
[ "$1 $2" = "-m responder" ] || {{ echo "unexpected: $*" >&2; exit 64; }}
exec {shlex.quote(sys.executable)} {shlex.quote(str(tmp / "stub_python.py"))} "$@"
"""
    for name, text in (("terraform", terraform), ("gcloud", gcloud), ("python", python)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return bin_dir


def _sourced(work: Path, env_text: str, **preset: str) -> dict[str, str]:
    """``set -a; . ./replay.env; env`` in bash: the RESPONDER_* variables it leaves."""
    (work / "replay.env").write_text(env_text)
    done = subprocess.run(
        ["bash", "-c", "set -a; . ./replay.env; env -0"],
        cwd=work,
        env={**environ_without_settings(), **preset},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    pairs = (item.split("=", 1) for item in done.stdout.split("\0") if item)
    return {k: v for k, v in pairs if k.startswith("RESPONDER_")}


# A JSON variables file: its strings are taken literally (a -var value is an HCL expression, where ${HOME} is a
# template).
SAMPLE_TFVARS = {
    "mode": "enforce",
    "action": "isolate",
    "categories": ["Reverse Shell", HOSTILE_CATEGORY],
    "protected_namespaces": ["istio-*", "payments"],
    "exempt_label": "security.example.com/exempt",
    "verify_finding": True,
    "budget_max": 3,
    "live_session": "escalate",
    # The fleet and the canary's source reach the replay as they reach the function.
    "clusters": [{"project": "shop-prod", "location": "europe-west1", "name": "gke-a"}],
    "fake_canary_source": "organizations/123456789012/sources/4242",
}


def sample_outputs(work: Path, tmp_path: Path) -> dict[str, Any]:
    tfvars = tmp_path / "sample.tfvars.json"
    tfvars.write_text(json.dumps(SAMPLE_TFVARS))
    return _outputs(work, *REQUIRED_VARS, f"-var-file={tfvars}")


def test_the_replay_environment_sources_cleanly_into_the_function_settings(pure_module: Path, tmp_path: Path) -> None:
    out = sample_outputs(pure_module, tmp_path)
    expected = {**out["responder_env"], "RESPONDER_GOOGLE_APIS": "on"}
    assert "RESPONDER_GOOGLE_APIS" not in out["responder_env"]  # the function keeps auto: it runs in Cloud Functions
    assert out["responder_env"]["RESPONDER_CATEGORIES"] == f"Reverse Shell,{HOSTILE_CATEGORY}"
    # Stale values in the operator's shell: the function leaves these to the policy file, so the replay does too.
    stale = {"RESPONDER_BUDGET_WINDOW_S": "1", "RESPONDER_POLICY_FILE": "other.yaml", "RESPONDER_MODE": "dry-run"}
    got = _sourced(tmp_path, out["replay_environment"], **stale)
    assert got == expected
    assert not list(tmp_path.glob("PWNED*")), "a value was executed"
    # One line per setting: a comment, the exports, the unsets.
    lines = out["replay_environment"].splitlines()
    assert lines[0].startswith("# rs-responder:")
    assert {line.split()[1] for line in lines if line.startswith("unset ")} == {
        "RESPONDER_BUDGET_WINDOW_S",
        "RESPONDER_LOG_WINDOW_MIN",
        "RESPONDER_POLICY_FILE",
        "RESPONDER_BUDGET_NAMESPACE",
        "RESPONDER_ENRICHMENT_TIMEOUT_S",
        "RESPONDER_IDENTITY",
    }


def test_the_replay_environment_with_the_defaults(pure_module: Path, tmp_path: Path) -> None:
    out = _outputs(pure_module, *REQUIRED_VARS)
    got = _sourced(tmp_path, out["replay_environment"], RESPONDER_ACTION="delete")
    assert got == {**out["responder_env"], "RESPONDER_GOOGLE_APIS": "on"}
    assert "RESPONDER_ACTION" not in got  # the function leaves it to the policy file


@pytest.mark.parametrize("replay_exit", [0, 1, 2, 3])
def test_the_runbook_runs_as_written(pure_module: Path, tmp_path: Path, replay_exit: int) -> None:
    out = sample_outputs(pure_module, tmp_path)
    pulled = dead_letter_pulled(notification(name_suffix="deadletter0001"))
    bin_dir = _stub_bin(tmp_path, out["replay_environment"], pulled, output_names())
    work = tmp_path / "checkout"
    work.mkdir()
    record = tmp_path / "record.json"
    replay, _ = runbook()
    # The operator's shell: a stale setting, which neither the replay nor the shell afterwards may see changed.
    script = f'{replay}\necho "after: ${{RESPONDER_GOOGLE_APIS-unset}} ${{RESPONDER_ACTION-unset}}"\n'
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env={
            **environ_without_settings(),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RESPONDER_ACTION": "delete",
            "STUB_REPO": str(ROOT),
            "STUB_RECORD": str(record),
            "STUB_EXIT": str(replay_exit),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"replay exited {replay_exit}", "after: unset delete"]
    assert not list(work.glob("PWNED*")), "a value was executed"
    seen = json.loads(record.read_text())
    assert seen["argv"][:3] == ["-m", "responder", "replay"]
    assert seen["file_holds"] == pulled  # what gcloud pulled, untouched
    assert seen["env"] == {**out["responder_env"], "RESPONDER_GOOGLE_APIS": "on"}
    settings = seen["settings"]
    assert settings["google_apis"] == "on"
    assert settings["mode"] == "enforce"
    assert settings["categories"] == ["Reverse Shell", HOSTILE_CATEGORY]
    assert settings["action"] == "isolate"


# --- without a Terraform CLI: the wiring, read --------------------------------------------------------------------------


def test_the_replay_environment_is_derived_from_the_function_environment() -> None:
    text = (TF_DIR / "locals.tf").read_text()
    (expression,) = re.findall(r"^  replay_environment = (.*?)\n  \)\)\n", text, re.M | re.S)
    assert 'merge(local.responder_env, { RESPONDER_GOOGLE_APIS = "on" })' in expression
    assert "local.responder_env_candidates" in expression and "unset " in expression
    assert "replace(v, \"'\", \"'\\\\''\")" in expression  # ' -> '\'' inside single quotes
    assert "environment_variables          = local.responder_env" in (TF_DIR / "function.tf").read_text()
    outputs = (TF_DIR / "outputs.tf").read_text()
    assert re.search(r'output "replay_environment" \{[^}]*value\s*=\s*local\.replay_environment\n', outputs)
