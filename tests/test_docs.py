"""The README's configuration table is the Settings dataclass, row for row."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from gateway.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table() -> None:
    """Guards against a setting the README does not document, or one it lists but lost."""
    documented = {line.split("`")[1] for line in README.splitlines() if line.startswith("| `--")}
    expected = {f"--{f.name.replace('_', '-')}" for f in fields(Settings)}
    assert documented == expected
    for f in fields(Settings):
        assert f"`CHAT_{f.name.upper()}`" in README
