"""Gateway nodes on a Redis Cluster: rooms placed on a chosen primary, sends retried
across a failover, a room's stored offsets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient
from redis.crc import key_slot

from gateway.app import create_app
from gateway.broker.redis import RedisBroker
from gateway.broker.redis_scripts import Keys
from tests.conftest import TEST_SETTINGS, JsonPeer
from tooling.redis_cluster import RedisCluster


def room_on(servers: RedisCluster, port: int, taken: frozenset[str] = frozenset()) -> str:
    """A room name whose keys live on the primary at `port`."""
    ranges = servers.primaries()[port]
    for index in itertools.count():
        room = f"room{index}"
        slot = key_slot(Keys(PREFIX).meta(room).encode())
        if room not in taken and any(start <= slot <= end for start, end in ranges):
            return room
    raise AssertionError("unreachable")


def nodes_on(aiohttp_client: Any, servers: RedisCluster) -> StartNodes:
    async def start(n: int = 2, **overrides: Any) -> list[TestClient]:
        clients = []
        for i in range(n):
            settings = replace(
                TEST_SETTINGS, node_id=f"s{i}", redis_url=servers.url, redis_prefix=PREFIX,
                rate_per_second=0, history_size=100_000, **overrides,
            )  # fmt: skip
            clients.append(await aiohttp_client(create_app(settings, RedisBroker(settings))))
        return clients

    return start


async def send_until_acked_in(peer: JsonPeer, room: str, text: str) -> dict[str, Any]:
    async with asyncio.timeout(FAILOVER_WAIT):
        while True:
            answer = await peer.request("send", room=room, text=text, id=text)
            if answer["type"] == "ack":
                return answer
            assert answer["code"] == "unavailable", answer
            await asyncio.sleep(0.05)  # the client's retry pause


async def stored_offsets(peer: JsonPeer, room: str) -> set[str]:
    """The offsets of every message in the room's history, paged back 100 at a time."""
    kept: set[str] = set()
    before: dict[str, str] = {}
    for _ in range(50):  # bounded: 5,000 messages, far more than a test sends
        messages = (await peer.request("history", room=room, limit=100, **before))["messages"]
        kept.update(m["offset"] for m in messages)
        if len(messages) < 100:
            return kept
        before = {"before": messages[0]["offset"]}
    raise AssertionError("history does not end")


StartNodes = Callable[..., Awaitable[list[TestClient]]]


PREFIX = "sharded:"


FAILOVER_WAIT = 30.0  # seconds: node timeout (2 s), election, and the nodes following
