"""The docs match the code: the configuration table is Settings, links stay inside the repo."""

from __future__ import annotations

import re
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


def test_the_docs_point_at_nothing_outside_the_repository() -> None:
    """Guards against docs that send a reader to files only the developers have (the
    protocol page once pointed at the steering repository's shared/PROTOCOL.md)."""
    root = Path(__file__).parent.parent
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        assert "shared/PROTOCOL.md" not in text and "../shared" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)", text):  # relative markdown links
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}"
