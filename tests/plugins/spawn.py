"""Gateway processes started the way an operator starts them (`python -m gateway` or the
`chat-gateway` script, with flags and a clean environment): the `spawn` fixture, and the
checks on how they start or refuse to (tests/test_process.py, test_startup.py,
test_workers.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import WAIT
from tooling.processes import Process

MODULE = [sys.executable, "-m", "gateway"]
SCRIPT = [str(Path(sys.executable).parent / "chat-gateway")]
STARTUP = 15.0  # the most a node may take from spawn to a healthy /healthz, in seconds
POLL_PAUSE = 0.02  # between two connection attempts while the node starts


class Node:
    """One gateway process, its port and its captured output."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The running process (its pid, signals)."""
        assert self.process.proc is not None
        return self.process.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.process.output()

    def exit_code(self, timeout: float = WAIT) -> int:
        """Wait (bounded) for the process to end; its exit code."""
        return self.proc.wait(timeout=timeout)


Spawn = Callable[..., Node]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start gateway processes; all of them are killed at teardown."""
    nodes: list[Node] = []

    def start(*args: str, env: dict[str, str] | None = None, command: list[str] = MODULE) -> Node:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        log = tmp_path / f"node-{len(nodes)}.log"
        process = Process(
            f"node {len(nodes)}",
            [*command, *args],
            env={**clean, "COLUMNS": "200", **(env or {})},
            inherit_env=False,
            log=log,
        )
        node = Node(process.start(), 0)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.process.kill()


async def serving_or_exit_code(node: Node) -> int | None:
    """Poll /healthz (each try bounded) until it answers 200 (None) or the process exits
    (its exit code); fail when neither happens within STARTUP seconds."""
    deadline = time.monotonic() + STARTUP
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                return node.proc.returncode
            try:
                async with http.get(f"{node.url}/healthz") as response:
                    if response.status == 200:
                        return None
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(POLL_PAUSE)  # a pause between polls; the deadline bounds them
    pytest.fail(f"/healthz did not answer within {STARTUP} s:\n{node.output()}")


async def wait_healthy(node: Node) -> None:
    """Wait until the node serves; fail if it exits instead."""
    code = await serving_or_exit_code(node)
    if code is not None:
        pytest.fail(f"the node exited {code}:\n{node.output()}")


def assert_refused(node: Node, *fragments: str) -> None:
    """The node exited 2, without a traceback, with a message naming each fragment."""
    try:
        code = node.exit_code()
    except subprocess.TimeoutExpired:
        pytest.fail(f"the node accepted the bad value and kept running:\n{node.output()}")
    output = node.output()
    assert code == 2, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


def flat(text: str) -> str:
    """`text` with every run of whitespace as one space (help output is wrapped)."""
    return re.sub(r"\s+", " ", text)
