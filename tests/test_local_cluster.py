"""`make cluster REDIS=cluster`: the local topology on a Redis Cluster of three primaries
and three replicas, run as `make cluster` runs it (deploy/cluster.py, a real process),
chatted through nginx, and stopped with Ctrl-C (SIGINT) leaving nothing behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis

from gateway.broker.redis_scripts import Keys
from tests.conftest import JSON_PROTOCOL, JsonPeer
from tests.plugins.deploy import nginx_or_skip
from tooling.ports import free_port
from tooling.processes import ROOT, find_tool

START = 90.0  # seconds: six redis-servers, their join, three nodes and nginx
BANNER = re.compile(r"redis cluster \(3 primaries, 1 replica each\)((?: :\d+){6})")


@pytest.fixture
async def running() -> AsyncIterator[tuple[asyncio.subprocess.Process, int, list[int]]]:
    """deploy/cluster.py --redis cluster on a free port: (process, port, redis ports)."""
    nginx_or_skip()
    if find_tool("redis-server") is None or find_tool("redis-cli") is None:
        if os.environ.get("CHAT_TEST_NGINX") == "require":
            pytest.fail("CHAT_TEST_NGINX=require, but redis-server or redis-cli is missing")
        pytest.skip("needs redis-server and redis-cli (apt-get install redis-server)")
    port = free_port()
    script = str(ROOT / "deploy" / "cluster.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, script, "--port", str(port), "--redis", "cluster",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        async with asyncio.timeout(START):
            assert process.stdout is not None
            while not (found := BANNER.search("".join(output))):
                line = (await process.stdout.readline()).decode()
                assert line, f"deploy/cluster.py exited:\n{''.join(output)}"
                output.append(line)
        redis_ports = [int(p) for p in found.group(1).split(" :")[1:]]
        yield process, port, redis_ports
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                await process.wait()
        print("".join(output))  # shown when the test fails


async def test_make_cluster_with_redis_cluster_chats_through_nginx(running: Any) -> None:
    """Guards against `make cluster REDIS=cluster` starting the nodes on one Redis (or
    not at all), against rooms not spread as sharded channels, and against a Ctrl-C
    that leaves redis-servers running."""
    process, port, redis_ports = running
    assert len(set(redis_ports)) == 6
    async with aiohttp.ClientSession() as http:
        peers = []
        for name in ("alice", "bob", "carol"):
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{port}/ws", params={"name": name}, protocols=(JSON_PROTOCOL,)
            )
            peer = JsonPeer(ws)
            peer.welcome = await peer.expect("welcome")
            await peer.expect("subscribed", room="lobby")
            peers.append(peer)
        alice, bob, carol = peers
        assert len({p.welcome["node"] for p in peers}) > 1, "nginx sent everyone to one node"
        ack = await alice.request("send", room="lobby", text="on a redis cluster")
        for peer in (bob, carol):
            await peer.expect("message", text="on a redis cluster", offset=ack["offset"])
        channel = Keys("chat:").room_channel("lobby").encode()
        sharded = [p for p in redis_ports if channel in _client(p).pubsub_shardchannels()]
        assert sharded, "the lobby's channel is on no shard (not sharded pub/sub?)"
        assert all(channel not in _client(p).pubsub_channels() for p in redis_ports)

    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        assert await process.wait() == 0
    for redis_port in redis_ports:
        with pytest.raises(redis.ConnectionError):
            _client(redis_port).ping()


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_connect_timeout=1.0)
