"""Acked means replicated: with a replica, `ack` comes only once the replica has the message.

A real primary and a real replica (`redis-server --replicaof`); the replica is frozen
with SIGSTOP to play a replica that has fallen behind or is cut off.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.broker.redis.keys import Keys
from tests.conftest import TEST_SETTINGS, join_json
from tests.plugins.auth import SECRET
from tests.plugins.moderation import MODERATOR, user
from tests.plugins.redis import REDIS_SERVER
from tests.plugins.redis_faults import request_until_acked, send_until_acked
from tests.plugins.sharded import nodes_on, room_on, send_until_acked_in, stored_offsets
from tooling.redis import RedisServer
from tooling.redis_cluster import RedisCluster

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs a real redis-server (CI installs one)"
)
PREFIX = "acks:"
SYNC_TIMEOUT = 15.0


@pytest.fixture
async def primary_and_replica() -> AsyncIterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica, in sync (online)."""
    primary = RedisServer().start()
    replica = RedisServer(replica_of=primary.port).start()
    try:
        deadline = time.monotonic() + SYNC_TIMEOUT
        while primary.client().info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica never connected"
            await asyncio.sleep(0.05)
        # "online" comes a moment before the replica acknowledges writes (WAIT answers
        # 0 for about half a second): wait until one write is acknowledged.
        client = primary.client()
        while client.set("acked", "1") and client.execute_command("WAIT", 1, 100) < 1:
            assert time.monotonic() < deadline, "the replica never acknowledged a write"
        yield primary, replica
    finally:
        replica.signal(signal.SIGCONT)
        replica.close()
        primary.close()


@pytest.fixture
def node(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    async def start(url: str, **overrides: Any) -> TestClient:
        settings = replace(
            TEST_SETTINGS, node_id="n0", redis_url=url, redis_prefix=PREFIX, **overrides
        )
        client: TestClient = await aiohttp_client(create_app(settings))
        return client

    return start


async def test_a_replica_that_falls_behind_turns_acks_into_unavailable(
    primary_and_replica: tuple[RedisServer, RedisServer], node: Any
) -> None:
    """Guards against acking a message no replica has; a retry with the same id, once
    the replica is back, is acked and stored once."""
    primary, replica = primary_and_replica
    alice = await join_json(await node(primary.url, redis_ack_timeout=0.3), "alice")
    assert (await alice.request("send", room="lobby", text="before"))["type"] == "ack"
    replica.signal(signal.SIGSTOP)
    answer = await alice.request("send", room="lobby", text="held", id="held")
    assert answer["type"] == "error" and answer["code"] == "unavailable", answer
    assert "replica" in answer["message"]
    replica.signal(signal.SIGCONT)
    await send_until_acked(alice, "held")
    history = await alice.request("history", room="lobby", limit=10)
    assert [m["text"] for m in history["messages"]] == ["before", "held"]


async def test_a_kick_or_delete_a_replica_lacks_is_answered_unavailable(
    primary_and_replica: tuple[RedisServer, RedisServer], node: Any
) -> None:
    """Guards against a moderator told that a kick (its ban) or a delete succeeded while
    no replica has it: a failover would bring the member, the ban's victim or the
    deleted text back. The primary did it: the members are told all the same, and the
    moderator's retry, once the replica is back, is acked."""
    primary, replica = primary_and_replica
    gateway = await node(primary.url, redis_ack_timeout=0.3, jwt_secret=SECRET)
    mod = await user(gateway, "mod", moderates=MODERATOR)
    victim = await user(gateway, "vic")
    spam = await victim.request("send", room="team-a", text="spam")
    assert spam["type"] == "ack", spam
    replica.signal(signal.SIGSTOP)
    delete = {"room": "team-a", "offset": spam["offset"]}
    kick = {"room": "team-a", "name": "vic", "seconds": 60}
    for frame_type, fields in (("delete", delete), ("kick", kick)):
        answer = await mod.request(frame_type, **fields)
        assert answer["type"] == "error" and answer["code"] == "unavailable", answer
        assert "replicas confirmed" in answer["message"] and "same id" not in answer["message"]
    await victim.expect("deleted", offset=spam["offset"])
    await victim.expect("removed", room="team-a")
    replica.signal(signal.SIGCONT)
    await request_until_acked(mod, "delete", **delete)
    await request_until_acked(mod, "kick", **kick)
    assert replica.client().exists(Keys(PREFIX).ban("team-a", "vic"))
    refused = await victim.request("join", room="team-a")
    assert refused["code"] == "banned", refused


async def test_a_required_replica_that_is_missing_acks_nothing(node: Any) -> None:
    """Guards against `--redis-ack-replicas 1` acking on a primary with no replica."""
    server = RedisServer().start()
    try:
        alice = await join_json(
            await node(server.url, redis_ack_replicas="1", redis_ack_timeout=0.1), "alice"
        )
        answer = await alice.request("send", room="lobby", text="alone")
        assert answer["code"] == "unavailable", answer
        auto = await join_json(await node(server.url), "bob")  # auto: no replica, no wait
        assert (await auto.request("send", room="lobby", text="fine"))["type"] == "ack"
    finally:
        server.close()


async def test_what_a_lagging_replica_lacks_is_never_acked_and_survives_its_failover(
    aiohttp_client: Any, redis_cluster: RedisCluster
) -> None:
    """The issue's failover, made certain: the room's replica is frozen (it takes no
    writes), a message is sent, the primary is SIGKILLed and the frozen replica takes
    over with what it had. Guards against an ack for a message only the dead primary
    had: such a message must not be acked before the failover, and its retry (same id)
    after it is acked and kept."""
    servers = RedisCluster().start()  # of this test's own: it breaks it
    try:
        (node,) = await nodes_on(aiohttp_client, servers)(1, redis_ack_timeout=0.3)
        victim = next(iter(servers.primaries()))
        room = room_on(servers, victim)
        alice = await join_json(node, "alice", room=room)
        first = await send_until_acked_in(alice, room, "first")
        replica = servers.replica_of(victim)
        servers.signal(replica, signal.SIGSTOP)
        answer = await alice.request("send", room=room, text="held", id="held")
        assert answer["type"] == "error" and answer["code"] == "unavailable", answer
        servers.kill(victim)
        servers.signal(replica, signal.SIGCONT)
        await asyncio.to_thread(servers.wait_ok, servers.live_ports())  # it took over
        held = await send_until_acked_in(alice, room, "held")
        assert {first["offset"], held["offset"]} <= await stored_offsets(alice, room)
    finally:
        servers.close()
