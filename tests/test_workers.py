"""`--workers N`: N worker processes on one port (SO_REUSEPORT), each a node of its own,
sharing the chat through Redis; the supervisor passes signals on and stops with them."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import JSON_PROTOCOL, WAIT
from tests.plugins.redis import REDIS_SERVER
from tests.plugins.spawn import Spawn, assert_refused, wait_healthy
from tooling.ports import free_port
from tooling.redis import RedisServer

START_WAIT = 30.0  # seconds, at most, until both workers have taken a connection


@pytest.fixture
def redis_url() -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server: the workers share the chat through it")
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def worker_pids(supervisor: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


async def test_two_workers_share_one_port_and_one_chat(spawn: Spawn, redis_url: str) -> None:
    """Guards against workers that do not all get connections (a supervisor listening in
    their SO_REUSEPORT group took some and never answered), or do not share the chat."""
    port = free_port()
    node = spawn("--port", str(port), "--workers", "2", "--redis-url", redis_url,
                 "--node-id", "n", "--max-connections-per-ip", "0")  # fmt: skip
    node.port = port
    await wait_healthy(node)
    url = f"{node.url}/ws"
    by_node: dict[str, aiohttp.ClientWebSocketResponse] = {}
    opened = []
    async with aiohttp.ClientSession() as http:
        # Until both workers have answered one: the second may still be starting.
        async with asyncio.timeout(START_WAIT):
            for index in itertools.count():
                ws = await http.ws_connect(
                    url, params={"name": f"u{index}"}, protocols=(JSON_PROTOCOL,)
                )
                opened.append(ws)
                welcome = await ws.receive_json(timeout=WAIT)
                by_node.setdefault(welcome["node"], ws)
                if len(by_node) == 2:
                    break
                await asyncio.sleep(0.05)  # a retry interval, bounded by START_WAIT
        assert sorted(by_node) == ["n-w0", "n-w1"], sorted(by_node)
        first, second = by_node["n-w0"], by_node["n-w1"]
        for ws in (first, second):  # in the room on both workers before anything is sent
            subscribed = await ws.receive_json(timeout=WAIT)
            assert subscribed["type"] == "subscribed", subscribed
        await first.send_str(json.dumps({"type": "send", "room": "lobby", "text": "across"}))
        async with asyncio.timeout(WAIT):
            while True:
                frame = await second.receive_json()
                if frame["type"] == "message":
                    break
        assert frame["text"] == "across"
        workers = worker_pids(node.proc.pid)
        assert len(workers) == 2
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node.exit_code, 20.0) == 0
        for ws in opened:
            await ws.close()
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_worker_that_dies_stops_the_node(spawn: Spawn, redis_url: str) -> None:
    """Guards against a node that runs on with a dead worker (a share of new connections
    refused) instead of exiting so that whatever restarts it restarts all."""
    port = free_port()
    node = spawn("--port", str(port), "--workers", "2", "--redis-url", redis_url)
    node.port = port
    await wait_healthy(node)
    workers = worker_pids(node.proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    assert await asyncio.to_thread(node.exit_code, 20.0) == 1
    assert "ended on its own" in node.output()


def test_workers_without_redis_are_refused(spawn: Spawn) -> None:
    assert_refused(spawn("--workers", "2", "--port", str(free_port())), "--workers", "--redis-url")
