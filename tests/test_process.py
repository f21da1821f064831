"""The real program: `python -m gateway` and the `chat-gateway` script as subprocesses.

Settings come from flags over CHAT_* variables over defaults; a bad value exits 2 with a
message; SIGTERM closes every client with 1001 and exits 0. Every process a test starts
is killed in the fixture's teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import JSON_PROTOCOL, WAIT

MODULE = [sys.executable, "-m", "gateway"]
SCRIPT = [str(Path(sys.executable).parent / "chat-gateway")]
STARTUP = 15.0  # the most a node may take from spawn to a healthy /healthz, in seconds
POLL_PAUSE = 0.02  # between two connection attempts while the node starts


class Node:
    """One gateway process, its port and its captured output."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def exit_code(self, timeout: float = WAIT) -> int:
        """Wait (bounded) for the process to end; its exit code."""
        return self.proc.wait(timeout=timeout)


Spawn = Callable[..., Node]


def free_port() -> int:
    """A port nobody listens on right now (bind 0, read it, let it go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start gateway processes; all of them are killed at teardown."""
    nodes: list[Node] = []

    def start(*args: str, env: dict[str, str] | None = None, command: list[str] = MODULE) -> Node:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
        log = tmp_path / f"node-{len(nodes)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, *args],
                env={**clean, "COLUMNS": "200", **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(proc, 0, log)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.kill()
        node.proc.wait(timeout=WAIT)


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


async def welcome_of(node: Node, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Connect in JSON mode and return the `welcome` frame."""
    async with http.ws_connect(
        f"{node.url}/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL,)
    ) as ws:
        frame: dict[str, Any] = await ws.receive_json(timeout=WAIT)
        return frame


def flat(text: str) -> str:
    """`text` with every run of whitespace as one space (help output is wrapped)."""
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("command", [MODULE, SCRIPT], ids=["python-m", "console-script"])
def test_help_names_every_flag_and_its_variable(spawn: Spawn, command: list[str]) -> None:
    """Guards against a flag or its CHAT_* variable missing from --help, or a broken script."""
    node = spawn("--help", command=command)
    assert node.exit_code() == 0
    text = flat(node.output())
    assert "chat-gateway" in text
    for flag in (
        "host",
        "port",
        "redis-url",
        "node-id",
        "max-message-chars",
        "max-frame-bytes",
        "rate-per-second",
        "rate-burst",
        "rate-strikes",
        "max-rooms-per-connection",
        "history-size",
        "replay-limit",
        "grace-period",
        "send-queue-limit",
        "idempotency-ttl",
        "heartbeat",
        "api-key",
        "log-level",
    ):
        variable = "CHAT_" + flag.upper().replace("-", "_")
        assert f"--{flag}" in text, f"--{flag} missing from --help"
        assert f"[{variable}]" in text, f"{variable} missing from --help"


async def test_environment_variables_configure_the_node(spawn: Spawn) -> None:
    """Guards against CHAT_* variables being ignored (node id and port from the environment)."""
    port = free_port()
    node = spawn(env={"CHAT_NODE_ID": "n7", "CHAT_PORT": str(port)}, command=SCRIPT)
    node.port = port
    await wait_healthy(node)
    async with aiohttp.ClientSession() as http:
        welcome = await welcome_of(node, http)
    assert (welcome["type"], welcome["node"], welcome["name"]) == ("welcome", "n7", "alice")


async def test_a_flag_wins_over_its_environment_variable(spawn: Spawn) -> None:
    """Guards against the environment overriding an explicit flag."""
    port, unused = free_port(), free_port()
    node = spawn(
        "--node-id",
        "n8",
        "--port",
        str(port),
        env={"CHAT_NODE_ID": "n7", "CHAT_PORT": str(unused)},
    )
    node.port = port
    await wait_healthy(node)
    async with aiohttp.ClientSession() as http:
        welcome = await welcome_of(node, http)
    assert welcome["node"] == "n8"


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


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["--port", "abc"], {}, ["--port", "'abc'"]),
        ([], {"CHAT_PORT": "abc"}, ["CHAT_PORT", "'abc'"]),
        (["--rate-burst", "1.5"], {}, ["--rate-burst", "'1.5'"]),
        ([], {"CHAT_RATE_PER_SECOND": "fast"}, ["CHAT_RATE_PER_SECOND", "'fast'"]),
        (["--max-rooms-per-connection", "-1"], {}, ["--max-rooms-per-connection", "negative"]),
        (["--max-frame-bytes", "10"], {}, ["--max-frame-bytes"]),
        ([], {"CHAT_REDIS_URL": "nope://x"}, ["nope://x"]),
    ],
    ids=[
        "port-flag",
        "port-env",
        "int-flag-float",
        "float-env",
        "negative",
        "frame-too-small",
        "broker-url",
    ],
)
def test_a_bad_value_exits_2_with_a_message(
    spawn: Spawn, args: list[str], env: dict[str, str], fragments: list[str]
) -> None:
    """Guards against a bad setting starting a node anyway, or dying with a traceback."""
    assert_refused(spawn(*args, "--port", str(free_port()), env=env), *fragments)


def test_a_bad_log_level_exits_2_with_a_message(spawn: Spawn) -> None:
    """Guards against a typo in --log-level crashing with a traceback instead of a usage error."""
    assert_refused(spawn("--log-level", "loud", "--port", str(free_port())), "--log-level")


def test_a_port_out_of_range_exits_2_with_a_message(spawn: Spawn) -> None:
    """Guards against --port 70000 crashing with a traceback instead of a usage error."""
    assert_refused(spawn("--port", "70000"), "--port")


async def test_nan_is_not_a_rate(spawn: Spawn) -> None:
    """Guards against --rate-per-second nan silently switching the rate limit off."""
    port = free_port()
    node = spawn("--rate-per-second", "nan", "--port", str(port))
    node.port = port
    code = await serving_or_exit_code(node)
    assert code is not None, "the node started with --rate-per-second nan"
    assert code == 2
    assert "--rate-per-second" in node.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_closes_clients_with_1001_and_exits_0(
    spawn: Spawn, signum: signal.Signals
) -> None:
    """Guards against a stop that drops clients without 'going away' or hangs or fails."""
    port = free_port()
    node = spawn("--port", str(port), "--node-id", "stopping")
    node.port = port
    await wait_healthy(node)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{node.url}/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL,)
        ) as ws,
    ):
        welcome = await ws.receive_json(timeout=WAIT)
        assert welcome["type"] == "welcome"
        subscribed = await ws.receive_json(timeout=WAIT)
        assert subscribed["type"] == "subscribed"
        node.proc.send_signal(signum)
        async with asyncio.timeout(WAIT):
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        assert ws.close_code == 1001
    code = await asyncio.to_thread(node.exit_code, 2 * WAIT)
    assert code == 0, node.output()
    assert "Traceback" not in node.output()
