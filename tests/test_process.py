"""The real program: `python -m gateway` and the `chat-gateway` script as subprocesses.

Settings come from flags over CHAT_* variables over defaults; a bad value exits 2 with a
message; SIGTERM closes every client with 1001 and exits 0. Every process a test starts
is killed in the fixture's teardown, whatever happened.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import pytest

from tests.conftest import JSON_PROTOCOL, WAIT
from tests.plugins.spawn import (
    MODULE,
    SCRIPT,
    Node,
    Spawn,
    assert_refused,
    flat,
    serving_or_exit_code,
    wait_healthy,
)
from tooling.ports import free_port


async def welcome_of(node: Node, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Connect in JSON mode and return the `welcome` frame."""
    async with http.ws_connect(
        f"{node.url}/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL,)
    ) as ws:
        frame: dict[str, Any] = await ws.receive_json(timeout=WAIT)
        return frame


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
