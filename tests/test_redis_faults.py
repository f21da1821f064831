"""Faults on the Redis path: each ends with no acked message lost and none delivered twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.broker.redis import RedisBroker
from gateway.broker.redis.keys import Keys
from tests.conftest import TEST_SETTINGS, WAIT, BareListener, JsonPeer, join_json, read_metric
from tests.plugins.redis import RedisBackend
from tests.plugins.redis_faults import (
    delivered,
    needs_redis_server,
    send_until_acked,
    wait_ready,
)
from tooling.redis import RedisServer
from tooling.tcp_proxy import TcpProxy

StartNode = Callable[..., Awaitable[TestClient]]


@needs_redis_server
async def test_redis_stopped_and_restarted(
    own_redis: RedisServer, node_on: Callable[..., Awaitable[TestClient]]
) -> None:
    """Guards against a node that loses its clients, acks what it did not store, or stays
    deaf after Redis comes back (Socket.IO's adapter loses every packet meanwhile)."""
    a = await node_on(own_redis.url, "n0")
    b = await node_on(own_redis.url, "n1")
    alice = await join_json(a, "alice")
    bob = await join_json(b, "bob")
    before = await send_until_acked(alice, "before")
    await bob.expect("message", text="before")

    own_redis.stop()
    refused = await alice.request("send", room="lobby", text="during")
    assert refused["type"] == "error" and refused["code"] == "unavailable"
    await wait_ready(a, False)
    assert (await alice.request("ping"))["type"] == "pong"  # the connection stays open

    own_redis.start()
    await wait_ready(b, True)
    first = await send_until_acked(bob, "first after")  # maybe before n0 is back: gap fill
    await wait_ready(a, True)
    after = await send_until_acked(alice, "after")
    await bob.expect("message", text="after")
    assert delivered(bob) == [before["offset"], first["offset"], after["offset"]]
    await alice.expect("message", text="after")
    assert delivered(alice) == [before["offset"], first["offset"], after["offset"]]
    assert (await bob.request("who", room="lobby"))["members"] == ["alice", "bob"]
    stranger = await b.ws_connect("/ws", params={"name": "alice"}, protocols=("chat.v1.json",))
    assert (await JsonPeer(stranger).recv())["code"] == "name_taken"  # names re-registered


@needs_redis_server
async def test_killed_pubsub_connections_lose_and_repeat_nothing(
    own_redis: RedisServer, node_on: Callable[..., Awaitable[TestClient]]
) -> None:
    """Guards against messages lost in the gap while a node resubscribes, or delivered
    twice when the gap fill and the live stream overlap."""
    a = await node_on(own_redis.url, "n0", rate_per_second=0)
    b = await node_on(own_redis.url, "n1", rate_per_second=0)
    sender = await join_json(a, "sender")
    receivers = [await join_json(a, "r0"), await join_json(b, "r1")]
    total = 1000

    async def flood() -> None:  # pipelined: publishes go on while a node reconnects
        for i in range(total):
            await sender.send(type="send", room="lobby", text=str(i))

    flooding = asyncio.create_task(flood())
    killer = own_redis.client()
    acked: list[str] = []
    try:
        while len(acked) < total:
            answer = await sender.expect("ack")
            acked.append(answer["offset"])
            if len(acked) in (100, 400, 401, 700):
                killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        killer.close()
        await flooding
    for peer in receivers:
        async with asyncio.timeout(WAIT * 3):
            while len(delivered(peer)) < total:
                await peer.expect("message")
        assert delivered(peer) == acked


@needs_redis_server
async def test_a_deaf_subscription_is_caught_by_the_probe(
    own_redis: RedisServer, node_on: Callable[..., Awaitable[TestClient]]
) -> None:
    """Guards against a node that stays 'ready' while its subscription hears nothing
    (Centrifugo's health stayed green after a failover)."""
    proxy = await TcpProxy(own_redis.port).start()
    try:
        deaf = await node_on(proxy.redis_url, "n0", probe_interval=0.2)
        other = await node_on(own_redis.url, "n1")
        listener = await join_json(deaf, "listener")
        talker = await join_json(other, "talker")
        first = await send_until_acked(talker, "first")
        await listener.expect("message", text="first")

        proxy.silence_subscribers()  # connected, but nothing reaches the node any more
        during = await send_until_acked(talker, "during")
        await wait_ready(deaf, False, timeout=5)
        await wait_ready(deaf, True, timeout=10)  # it reconnected by itself
        after = await send_until_acked(talker, "after")
        await listener.expect("message", text="after")
        assert delivered(listener) == [first["offset"], during["offset"], after["offset"]]
    finally:
        await proxy.close()


@needs_redis_server
async def test_a_probe_slower_than_its_interval_still_counts(
    own_redis: RedisServer,
    node_on: Callable[..., Awaitable[TestClient]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guards against a subscription judged deaf while it hears every probe, only late:
    when only the newest probe counted, one round trip longer than the probe interval
    made the node drop and resubscribe again and again (a storm that fed itself on a
    loaded machine: CI saw hundreds in a failover test)."""
    proxy = await TcpProxy(own_redis.port).start()
    try:
        node = await node_on(proxy.redis_url, "n0", probe_interval=0.5)
        listener = await join_json(node, "listener")
        proxy.subscriber_delay = 0.8  # longer than the interval, well within the deaf limit
        async with asyncio.timeout(WAIT * 2):
            while await read_metric(node, "chat_broker_probe_rtt_seconds") < 0.8:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert "deaf" not in caplog.text
        assert (await node.get("/readyz")).status == 200
        talker = await join_json(node, "talker")
        await send_until_acked(talker, "still heard")
        await listener.expect("message", text="still heard")
    finally:
        await proxy.close()


@pytest.fixture
def fake_node(aiohttp_client: Any) -> Callable[..., Awaitable[tuple[TestClient, Any]]]:
    """A node on fakeredis, with the FakeServer to switch off (`connected = False`)."""
    server = fakeredis.FakeServer()

    async def start(node_id: str) -> tuple[TestClient, Any]:
        settings = replace(
            TEST_SETTINGS, node_id=node_id, redis_url="redis://fakeredis", redis_prefix="f:"
        )
        broker = RedisBroker(settings, fakeredis.FakeAsyncRedis(server=server))
        client: TestClient = await aiohttp_client(create_app(settings, broker))
        return client, server

    return start


async def test_sends_during_an_outage_are_refused_not_lost(
    fake_node: Callable[..., Awaitable[tuple[TestClient, Any]]],
) -> None:
    """Guards against acking a message the backend never stored, or dropping the client."""
    a, server = await fake_node("n0")
    b, _ = await fake_node("n1")
    alice = await join_json(a, "alice")
    bob = await join_json(b, "bob")
    server.connected = False
    answer = await alice.request("send", room="lobby", text="lost?")
    assert answer["code"] == "unavailable"
    assert (await alice.request("ping"))["type"] == "pong"
    assert (await (await a.get("/api/rooms")).json())["error"]["code"] == "unavailable"
    server.connected = True
    ack = await send_until_acked(alice, "kept")
    await bob.expect("message", text="kept")
    assert delivered(bob) == [ack["offset"]]


async def test_a_connection_refused_during_an_outage_is_told_to_retry(
    fake_node: Callable[..., Awaitable[tuple[TestClient, Any]]],
) -> None:
    """Guards against closing a client for 'policy' when the backend is merely down."""
    a, server = await fake_node("n0")
    server.connected = False
    ws = await a.ws_connect("/ws", params={"name": "alice"}, protocols=("chat.v1.json",))
    peer = JsonPeer(ws)
    assert (await peer.recv())["code"] == "unavailable"
    assert await peer.close_code() == 1011


async def test_a_dead_nodes_members_leave_once(
    redis_backend: RedisBackend, aiohttp_client: Any
) -> None:
    """Guards against a crashed node's users staying 'online' forever, or their leave
    announced by every surviving node.

    The dead node is stopped without any cleanup (its heartbeat simply stops), which
    is what the other nodes see of a kill -9; test_redis_processes does the real kill.
    """
    prefix = redis_backend.new_prefix()
    nodes = []
    for i in range(3):
        settings = replace(TEST_SETTINGS, node_id=f"n{i}", presence_timeout=0.6)
        settings, broker = redis_backend.broker(settings, prefix)
        nodes.append((await aiohttp_client(create_app(settings, broker)), broker))
    doomed = await join_json(nodes[0][0], "doomed")
    watchers = [await join_json(nodes[i][0], f"w{i}") for i in (1, 2)]
    for watcher in watchers:
        await watcher.expect("presence", event="join", name="w2")
    await nodes[0][1].close()  # heartbeat and subscription stop; nothing is cleaned up
    for watcher in watchers:
        await watcher.expect("presence", event="leave", name="doomed", timeout=5)
    await watchers[0].send(type="send", room="lobby", text="marker", ref="m")
    for watcher in watchers:
        await watcher.expect("message", text="marker")
        leaves = [f for f in watcher.frames if f.get("event") == "leave"]
        assert len(leaves) == 1
    assert (await watchers[0].request("who", room="lobby"))["members"] == ["w1", "w2"]
    again = await join_json(nodes[1][0], "doomed")  # the name was freed too
    assert again.welcome["name"] == "doomed"
    del doomed


@needs_redis_server
async def test_a_former_runs_reaped_mark_does_not_make_a_data_loss_a_reap(
    redis_backend: RedisBackend, aiohttp_client: Any
) -> None:
    """Guards against a node that, started where a former run of its id was reaped,
    later takes Redis losing its data for a reap of its own and announces every user
    as joining again (the others never saw them leave)."""
    prefix = redis_backend.new_prefix()
    redis_backend.client().set(Keys(prefix).node("n0") + ":reaped", "1")  # a former run's
    nodes = []
    for i in range(2):
        settings = replace(TEST_SETTINGS, node_id=f"n{i}", presence_timeout=0.6)
        settings, broker = redis_backend.broker(settings, prefix)
        nodes.append(await aiohttp_client(create_app(settings, broker)))
    watcher = await join_json(nodes[1], "watcher")
    await join_json(nodes[0], "alice")
    await watcher.expect("presence", event="join", name="alice")
    plain = redis_backend.client()
    for key in plain.scan_iter(match=f"{prefix}*"):  # Redis lost everything of ours
        plain.delete(key)
    async with asyncio.timeout(WAIT):  # both nodes put their entries back by themselves
        while True:
            if (await watcher.request("who", room="lobby"))["members"] == ["alice", "watcher"]:
                break
            await asyncio.sleep(0.05)
    await watcher.send(type="send", room="lobby", text="marker", ref="m")
    await watcher.expect("message", text="marker")
    joins = [f["name"] for f in watcher.frames if f.get("event") == "join"]
    assert joins == ["watcher", "alice"], joins  # no second join for alice


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
async def test_what_leaves_while_the_node_reregisters_stays_gone(
    redis_backend: RedisBackend, shared: bool
) -> None:
    """Guards against re-registration (after every resubscription) putting back a name
    or a presence released meanwhile: the user would stay online for good, their name
    taken and their DMs acked into the void, until the node restarts.

    Re-registration walks its tables one round trip per entry; the release starts while
    it is at the first of a hundred users, so a walk over a copy would re-add bob."""
    settings, broker = redis_backend.broker(TEST_SETTINGS, redis_backend.new_prefix())
    await broker.start(BareListener())
    try:
        others = [f"user{i}" for i in range(100)]
        for name in others:
            await broker.presence_add("a", name)
            await broker.claim_name(name, f"conn-{name}", None, shared=shared)
        await broker.presence_add("b", "bob")
        await broker.claim_name("bob", "conn-b", None, shared=shared)
        walk = asyncio.create_task(broker.reregister())
        await asyncio.sleep(0)  # the walk now waits on Redis for user0's presence
        assert await broker.presence_remove("b", "bob")
        await broker.release_name("bob", "conn-b")
        await walk
        redis = redis_backend.client()
        assert await broker.members("b") == []
        assert not redis.exists(Keys(settings.redis_prefix).name("bob"))
        assert await broker.members("a") == sorted(others)  # the others are still there
        assert redis.exists(Keys(settings.redis_prefix).name("user99"))
    finally:
        await broker.close()


@needs_redis_server
async def test_scripts_flushed_from_redis_are_loaded_again(
    own_redis: RedisServer, node_on: Callable[..., Awaitable[TestClient]]
) -> None:
    """Guards against sends refused for good once Redis forgets the scripts (SCRIPT
    FLUSH, or a restart between two calls): NOSCRIPT loads the script again."""
    a = await node_on(own_redis.url, "n0")
    alice = await join_json(a, "alice")
    plain = redis.Redis(port=own_redis.port)
    try:
        await plain.script_flush()
    finally:
        await plain.aclose()
    ack = await alice.request("send", room="lobby", text="after a flush")
    assert ack["type"] == "ack", ack
    assert (await alice.expect("message", text="after a flush"))["offset"] == ack["offset"]
