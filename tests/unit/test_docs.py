"""The README stays true: every setting is documented, and the first commands are the two make targets."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from responder.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    names: list[str] = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.extend(str(choice) for choice in alias.choices)
        else:
            names.append(str(alias or f"RESPONDER_{name.upper()}"))
    missing = [name for name in names if f"`{name}`" not in README]
    assert missing == []


def test_first_commands_are_demo_then_test() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split()[1] for line in first_block[:2]] == ["demo", "test"]
