"""The test tiers are the folders, and everything that names a tier agrees: the markers pyproject.toml declares,
tests/conftest.py's list, tests/README.md's table and a make target per tier (tests/terraform's is ``tf-test``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.conftest import TIERS

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TARGET = {"terraform": "tf-test"}  # `make terraform` builds the Terraform CLI (mk/terraform.mk)


def test_every_folder_with_tests_is_a_tier() -> None:
    folders = {p.parent.relative_to(TESTS).parts[0] for p in TESTS.rglob("test_*.py")}
    assert folders == set(TIERS)


def test_pyproject_declares_exactly_the_tier_markers() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    markers = [m.split(":", 1)[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]]
    assert sorted(markers) == sorted(TIERS)


def test_the_readme_of_the_tests_has_a_row_per_tier() -> None:
    rows = re.findall(r"^\| `([a-z0-9]+)` \|", (TESTS / "README.md").read_text(), re.MULTILINE)
    assert rows == list(TIERS)


def test_each_tier_has_a_make_target_that_runs_it() -> None:
    makefiles = "\n".join(p.read_text() for p in [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))])
    for tier in TIERS:
        target = TARGET.get(tier, tier)
        recipe = re.search(rf"^{re.escape(target)}:[^\n]*\n\t([^\n]*)", makefiles, re.MULTILINE)
        assert recipe is not None, f"no make target {target}"
        assert recipe.group(1).endswith(f"pytest -q -m {tier}"), (target, recipe.group(1))
