"""Start-up failures are one clear line and exit 2, and the node says where it listens
only once it does (issue: a busy port printed 36 lines of traceback after "on http://")."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess

import aiohttp
import pytest

from gateway.serving import YOUNG_COLLECTION_THRESHOLD
from tests.conftest import poll_until
from tests.plugins.redis import REDIS_SERVER
from tests.plugins.spawn import (
    MODULE,
    STARTUP,
    Node,
    Spawn,
    assert_refused,
    flat,
    serving_or_exit_code,
)
from tooling.gateway import GatewayProcess
from tooling.ports import free_port


def one_error_line(node: Node) -> str:
    """The refusal: exit 2, no traceback, no "on http://" line; its one line."""
    assert_refused(node)
    lines = [line for line in node.output().splitlines() if line.strip()]
    assert not any("on http://" in line for line in lines), lines
    assert len(lines) == 1, lines
    return lines[0]


def test_a_busy_port_is_one_line_and_exit_2(spawn: Spawn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(spawn("--port", str(port)))
    assert line.startswith(f"chat-gateway: cannot listen on 127.0.0.1:{port}: "), line
    assert "address already in use" in line


async def test_a_port_taken_while_the_node_starts_is_one_line_and_exit_2(spawn: Spawn) -> None:
    """Guards against a traceback when another process listens on the port after the
    node bound it: the node listens only once it has started (until then its port
    refuses connections, so a balancer tries another node), and that listen fails.

    Its "Redis" accepts connections and never answers: the node's start-up commands
    wait for their socket timeout, and meanwhile the port is taken."""
    port = free_port()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(STARTUP)
        redis_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        node = spawn("--port", str(port), "--redis-url", redis_url)
        connection, _ = await asyncio.to_thread(silent.accept)  # the node is starting
        with connection, socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", port))
            taken.listen()
            code = node.exit_code(timeout=STARTUP)  # it tries to listen once it has started
    output = node.output()
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert not any("on http://" in line for line in lines), lines
    assert lines[-1] == f"chat-gateway: cannot listen on 127.0.0.1:{port}: address already in use"


def test_an_unknown_host_is_one_line_and_exit_2(spawn: Spawn) -> None:
    line = one_error_line(spawn("--host", "no-such-host.invalid", "--port", str(free_port())))
    assert "cannot listen on no-such-host.invalid" in line and "unknown host" in line, line


async def test_the_listening_line_comes_once_it_listens(spawn: Spawn) -> None:
    port = free_port()
    node = spawn("--port", str(port))
    node.port = port
    assert await serving_or_exit_code(node) is None
    assert f"on http://127.0.0.1:{port}" in node.output()


@pytest.mark.parametrize(
    ("args", "env", "named", "says"),
    [
        ([], {"CHAT_RATE_PER_SECOND": "-1"}, "CHAT_RATE_PER_SECOND='-1'", "not negative"),
        (["--rate-per-second", "-1"], {}, "--rate-per-second", "not negative"),
        (["--port", "-5"], {}, "--port", "from 1 to 65535"),
        ([], {"CHAT_PORT": "0"}, "CHAT_PORT='0'", "from 1 to 65535"),
        ([], {"CHAT_JWT_SECRET": "short-secret"}, "CHAT_JWT_SECRET", "at least 32 bytes"),
    ],
    ids=["env-negative", "flag-negative", "negative-port", "env-port", "env-secret"],
)
def test_a_bad_setting_names_where_it_came_from(
    spawn: Spawn, args: list[str], env: dict[str, str], named: str, says: str
) -> None:
    """Guards against a bad CHAT_* variable reported as the flag the user never typed, and
    --port -5 reported as "not a finite number"."""
    node = spawn(*args, env=env)
    assert_refused(node, named, says)
    assert "short-secret" not in node.output()  # a secret is never echoed


def test_help_lists_the_token_subcommand() -> None:
    result = subprocess.run(
        [*MODULE, "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "chat-gateway token NAME" in flat(result.stdout)


@pytest.mark.skipif(REDIS_SERVER is None, reason="needs a redis-server binary for a real URL")
async def test_an_unreachable_redis_at_start_is_not_a_lost_subscription(spawn: Spawn) -> None:
    """Guards against "subscription lost" logged by a node that never had one."""
    port = free_port()
    node = spawn("--port", str(port), "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    node.port = port
    assert await serving_or_exit_code(node) is None  # it serves (not ready) and retries
    output = node.output()
    assert "cannot subscribe yet" in output, output
    assert "subscription lost" not in output, output


@pytest.mark.skipif(REDIS_SERVER is None, reason="needs a redis-server binary for a real URL")
async def test_an_unreachable_redis_at_start_listens_at_once_and_says_not_ready(
    spawn: Spawn,
) -> None:
    """Guards against a node whose port stayed closed for 5 s (its wait for a
    subscription to an unreachable Redis), /healthz refused meanwhile, and against a
    start-up line and /readyz that did not say why the node is not ready."""
    port = free_port()
    node = spawn("--port", str(port), "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    node.port = port
    assert await serving_or_exit_code(node) is None
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/readyz") as response:
        assert response.status == 503
        assert await response.text() == "not ready: Redis unreachable\n"
    await poll_until(lambda: "on http://" in node.output())
    before, line = node.output().split("on http://", 1)
    assert "; not ready: Redis unreachable" in line.splitlines()[0], node.output()
    # Listening came right after the first heartbeat failed, not after the subscriber's
    # retries (0.1 s, 0.2 s, 0.4 s, ... apart) used up a wait for the subscription.
    assert before.count("cannot subscribe yet") <= 2, node.output()


def test_the_start_up_objects_are_frozen_and_collections_spaced_before_listening() -> None:
    """Guards against every garbage collection walking what start-up made (modules, the
    app, the broker) again, and against a collection every few handshakes: in a burst
    of connections both cost tens of microseconds a connection (issue 25)."""
    node = GatewayProcess(None, "--log-level", "DEBUG")
    try:
        node.start()
        node.stop()
        found = re.search(r"froze (\d+) start-up objects", node.log())
        assert found is not None and int(found.group(1)) > 0, node.log()[-2000:]
        spaced = f"garbage collection thresholds: ({YOUNG_COLLECTION_THRESHOLD}, 10, 10)"
        assert spaced in node.log(), node.log()[-2000:]
    finally:
        node.close()
