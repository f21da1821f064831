"""`welcome` is always a connection's first frame (docs/protocol.md), even when a direct
message reaches its name while the rest of its first step is still under way: the
name is claimed (and the connection indexed by it, so nothing sent to it is lost), then
its first room entered, one Redis round trip more with ?since= or on a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio
from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, JsonPeer, join_json
from tooling.redis import RedisServer
from tooling.tcp_proxy import TcpProxy

REPLY_DELAY = 0.5  # seconds each reply to the slow node's commands is held


async def evalshas_naming(monitor: Any, word: str, count: int) -> None:
    """Return once clients (not scripts) sent `count` EVALSHAs naming `word`."""
    seen = 0
    while seen < count:
        command = await monitor.next_command()
        words = command["command"].split(" ")
        if command["client_type"] != "lua" and words[0] == "EVALSHA":
            seen += any(word in w for w in words)


async def test_a_direct_message_during_the_entry_comes_after_the_welcome(
    own_redis: RedisServer, node_on: Callable[..., Awaitable[TestClient]]
) -> None:
    """Guards against a connection indexed by its name (right after its claim) getting
    a direct message before its `welcome`, while its first room's entry still waits for
    Redis: the client's first frame must be `welcome`."""
    proxy = await TcpProxy(own_redis.port).start()
    try:
        slow = await node_on(proxy.redis_url, "slow")
        quick = await node_on(own_redis.url, "quick")
        alice = await join_json(quick, "alice")
        sent = await alice.request("send", room="lobby", text="before")
        since = sent["offset"]
        await join_json(slow, "warmup")  # the slow node's subscription is up and marked
        proxy.command_delay = REPLY_DELAY  # the slow node's replies, not what it hears
        watcher = redis.asyncio.Redis.from_url(own_redis.url)
        async with watcher.monitor() as monitor:
            ws = await slow.ws_connect(
                "/ws",
                params={"name": "dora", "room": "lobby", "since": since},
                protocols=(JSON_PROTOCOL,),
            )
            dora = JsonPeer(ws)
            # The claim, then the presence entry: once Redis has the latter, the claim's
            # answer came back and the name is dora's, its connection indexed by it.
            async with asyncio.timeout(10):
                await evalshas_naming(monitor, "dora", 2)
        await watcher.aclose()
        answer = await alice.request("dm", to="dora", text="early")
        assert answer["type"] == "ack", answer  # dora is online: it was published
        first = await dora.recv(timeout=10)
        assert first["type"] == "welcome", dora.frames
        await dora.expect("subscribed", room="lobby", timeout=10)
        dms = [f["text"] for f in dora.frames if f["type"] == "dm"]
        assert dms == ["early"], dora.frames  # held until the welcome, then sent
    finally:
        proxy.command_delay = 0.0
        await proxy.close()
