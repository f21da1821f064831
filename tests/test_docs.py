"""The docs match the code: the settings table is Settings, links stay inside the repo,
the README stays a user's page, and its operator curl lines work against a node."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from tests.conftest import JSON_PROTOCOL, JsonPeer, join_json

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
README_MAX_LINES = 250  # a user's page: the reference lives in docs/


def test_every_setting_is_in_the_settings_table() -> None:
    """Guards against a setting docs/operations.md does not document, or one it lists
    but the code lost."""
    documented = {
        line.split("`")[1] for line in OPERATIONS.splitlines() if line.startswith("| `--")
    }
    expected = {f"--{f.name.replace('_', '-')}" for f in fields(Settings)}
    assert documented == expected
    for f in fields(Settings):
        assert f"`CHAT_{f.name.upper()}`" in OPERATIONS


def test_the_docs_point_at_nothing_outside_the_repository() -> None:
    """Guards against docs that send a reader to files only the developers have (the
    protocol page once pointed at the steering repository's shared/PROTOCOL.md)."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        assert "shared/PROTOCOL.md" not in text and "../shared" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)", text):  # relative markdown links
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}"


def _shell_lines(text: str) -> list[str]:
    """The command lines of the ```sh blocks of `text`, continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line.split("  #")[0].strip())
    return [line for line in lines if line]


def test_the_readme_is_a_users_page() -> None:
    """Guards against the README growing back into the reference (issue 22: 411
    lines in the developers' order), and against commands a new user cannot run as
    written: a bare `chat-gateway` or `chat` (not on the PATH unless the venv is
    activated), or `python` (stock systems have `python3`)."""
    assert len(README.splitlines()) <= README_MAX_LINES
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Quick start", "## Chatting", "## Running a cluster"]
    for line in _shell_lines(README):
        for word in re.findall(r"(?:^|[\s(\"'$])((?:python|chat-gateway|chat)\b)(?![-.\w])", line):
            assert word not in ("python", "chat-gateway", "chat"), line


def _curl_lines() -> list[list[str]]:
    return [shlex.split(line) for line in _shell_lines(README) if line.startswith("curl ")]


async def _curl(argv: list[str], key: str, base: str, offset: str) -> tuple[int, str]:
    """Run one README curl line against `base` with the key and offset filled in."""
    args = [a.replace("$KEY", key).replace("OFFSET", offset) for a in argv[1:]]
    args = [a.replace("http://127.0.0.1:8080", base) for a in args]
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 15)
    body, _, status = out.decode().rpartition("\n")
    assert process.returncode == 0, err.decode()
    return int(status), body


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_the_readmes_operator_curl_lines_work(gateway: Any) -> None:
    """Guards against README operator examples that do not work as written (issue 22:
    a ban without its `{"seconds": S}` body, a message deleted by the number `chat`
    shows instead of its offset)."""
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    key = "the-readme-api-key"
    node = await gateway(api_key=key)
    base = str(node.make_url("")).rstrip("/")
    bob = await join_json(node, "bob", room="team-a")
    alice = await join_json(node, "alice", room="team-a")
    await alice.request("send", room="team-a", text="to be deleted")
    lines = _curl_lines()
    assert [line[1:3] for line in lines if line[1] == "-X"] == [
        ["-X", "POST"], ["-X", "PUT"], ["-X", "DELETE"], ["-X", "DELETE"]
    ]  # fmt: skip
    offset = "no-offset-yet"
    for argv in lines:
        status, body = await _curl(argv, key, base, offset)
        assert 200 <= status < 300, (argv, status, body)
        if "/messages?" in " ".join(argv):
            offset = json.loads(body)["messages"][-1]["offset"]
    assert offset != "no-offset-yet"
    assert await bob.close_code() == 4001  # disconnected by the operator
    assert (await alice.expect("deleted", offset=offset))["by"] == "operator"
    again = await node.ws_connect(
        "/ws", params={"name": "bob", "room": "team-a"}, protocols=(JSON_PROTOCOL,)
    )
    await JsonPeer(again).expect("welcome")  # the ban was lifted: bob may enter again
