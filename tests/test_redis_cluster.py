"""Three nodes on one Redis are one chat server (issue: Redis broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.broker.redis_scripts import Keys
from gateway.node import NODE
from tests.conftest import TEST_SETTINGS, JsonPeer, join_json, join_text
from tests.plugins.redis import RedisBackend

Cluster = Callable[..., Awaitable[list[TestClient]]]


@pytest.fixture
async def cluster(aiohttp_client: Any, redis_backend: RedisBackend) -> Cluster:
    """Start `n` nodes sharing one Redis (and one key prefix), node ids n0, n1, ..."""
    prefix = redis_backend.new_prefix()

    async def start(n: int = 3, **overrides: Any) -> list[TestClient]:
        clients = []
        for i in range(n):
            settings = replace(TEST_SETTINGS, node_id=f"n{i}", **overrides)
            settings, broker = redis_backend.broker(settings, prefix)
            clients.append(await aiohttp_client(create_app(settings, broker)))
        return clients

    return start


async def test_a_message_reaches_members_on_every_node(cluster: Cluster) -> None:
    """Guards against a node that only delivers to its own connections."""
    nodes = await cluster()
    peers = [await join_json(node, f"user{i}") for i, node in enumerate(nodes)]
    assert [p.welcome["node"] for p in peers] == ["n0", "n1", "n2"]
    ack = await peers[0].request("send", room="lobby", text="across")
    for peer in peers:
        message = await peer.expect("message", text="across")
        assert message["offset"] == ack["offset"]


async def test_text_and_json_users_on_different_nodes_chat(cluster: Cluster) -> None:
    """Guards against one mode or one node being left out of the shared chat."""
    a, b = await cluster(2)
    ann = await join_text(a, "ann")
    joe = await join_json(b, "joe")
    await ann.expect_line("* joe joined lobby")
    await ann.say("hello from n0")
    assert (await joe.expect("message"))["text"] == "hello from n0"
    await joe.send(type="send", room="lobby", text="hello from n1")
    await ann.expect_line("joe: hello from n1")


async def test_every_member_sees_one_order_across_nodes(cluster: Cluster) -> None:
    """Guards against members on different nodes seeing two senders interleaved differently."""
    nodes = await cluster(rate_per_second=0)
    receivers = [await join_json(node, f"r{i}") for i, node in enumerate(nodes)]
    senders = [await join_json(nodes[0], "s0"), await join_json(nodes[2], "s2")]
    count = 100

    async def send_all(peer: JsonPeer) -> None:
        for i in range(count):
            await peer.send(type="send", room="lobby", text=f"{peer.welcome['name']}-{i}")

    await asyncio.gather(*(send_all(s) for s in senders))
    orders = []
    for peer in receivers:
        orders.append([(await peer.expect("message"))["offset"] for _ in range(2 * count)])
    assert orders[0] == orders[1] == orders[2]
    assert len(set(orders[0])) == 2 * count


async def test_presence_and_names_are_cluster_wide(cluster: Cluster) -> None:
    """Guards against per-node presence, and the same name taken on two nodes."""
    a, b, c = await cluster()
    alice = await join_json(a, "alice")
    bob = await join_json(b, "bob")
    await alice.expect("presence", event="join", name="bob")
    assert bob.subscribed["members"] == ["alice", "bob"]
    assert (await alice.request("who", room="lobby"))["members"] == ["alice", "bob"]
    ws = await c.ws_connect("/ws", params={"name": "ALICE"}, protocols=("chat.v1.json",))
    second = JsonPeer(ws)
    assert (await second.recv())["code"] == "name_taken"
    assert (await (await c.get("/api/rooms")).json())["rooms"] == [{"room": "lobby", "members": 2}]
    await bob.ws.close()
    await alice.expect("presence", event="leave", name="bob")
    again = await join_json(c, "bob")
    assert again.welcome["node"] == "n2"


async def test_session_takeover_works_across_nodes(cluster: Cluster) -> None:
    """Guards against a takeover that leaves the old connection open on its node."""
    a, b, c = await cluster()
    watcher = await join_json(c, "watcher")
    old = await join_json(a, "alice")
    await watcher.expect("presence", event="join", name="alice")
    new = await join_json(b, "alice", session=old.welcome["session"])
    assert new.welcome["session"] == old.welcome["session"]
    assert await old.close_code() == 4000
    await watcher.send(type="send", room="lobby", text="still here?", ref="m")
    await new.expect("message", text="still here?")
    assert [f["event"] for f in watcher.frames if f.get("name") == "alice"] == ["join"]


async def test_direct_messages_cross_nodes(cluster: Cluster) -> None:
    """Guards against DMs that only reach users on the sender's node."""
    a, b = await cluster(2)
    alice = await join_json(a, "alice")
    bob = await join_text(b, "bob")
    assert (await alice.request("dm", to="bob", text="psst"))["type"] == "ack"
    await bob.expect_line("[dm] alice: psst")
    await bob.say("/msg alice back")
    assert (await alice.expect("dm"))["text"] == "back"
    assert (await alice.request("dm", to="nobody", text="?"))["code"] == "user_not_found"


async def test_resume_on_another_node_than_the_one_left(cluster: Cluster) -> None:
    """Guards against resume working only on the node that served the connection."""
    a, b = await cluster(2)
    alice = await join_json(a, "alice")
    bob = await join_json(a, "bob")
    seen = (await alice.request("send", room="lobby", text="seen"))["offset"]
    await bob.expect("message", text="seen")
    await bob.ws.close()
    missed = [(await alice.request("send", room="lobby", text=f"m{i}"))["offset"] for i in range(3)]
    bob = await join_json(b, "bob", since=seen, session=bob.welcome["session"])
    assert bob.subscribed["recovered"] is True
    assert [(await bob.expect("message"))["offset"] for _ in range(3)] == missed
    await alice.send(type="send", room="lobby", text="live")
    assert (await bob.expect("message"))["text"] == "live"
    with pytest.raises(TimeoutError):  # short and bounded: nothing was delivered twice
        await bob.expect("message", timeout=0.3)


async def test_history_is_the_same_on_every_node(cluster: Cluster) -> None:
    """Guards against history kept per node."""
    nodes = await cluster()
    alice = await join_json(nodes[0], "alice")
    for i in range(3):
        await alice.request("send", room="lobby", text=f"h{i}")
    pages = []
    for node in nodes:
        response = await node.get("/api/rooms/lobby/messages")
        pages.append([m["text"] for m in (await response.json())["messages"]])
    assert pages == [["h0", "h1", "h2"]] * 3


async def test_a_node_subscribes_a_room_only_while_it_has_members(
    cluster: Cluster, redis_backend: RedisBackend
) -> None:
    """Guards against every room being sent to every node (Socket.IO's Redis adapter)."""
    if redis_backend.server is None:
        pytest.skip("PUBSUB NUMSUB needs a real redis-server")
    a, b = await cluster(2)
    prefix = a.app[NODE].settings.redis_prefix
    channel = Keys(prefix).room_channel("quiet")
    r = redis_backend.server.client()
    try:
        alice = await join_json(a, "alice", room="quiet")
        assert r.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await join_json(b, "bob", room="quiet")
        assert r.pubsub_numsub(channel) == [(channel.encode(), 2)]
        await alice.request("leave", room="quiet")
        assert r.pubsub_numsub(channel) == [(channel.encode(), 1)]
    finally:
        r.close()


async def test_keys_are_bounded_and_under_the_prefix(
    cluster: Cluster, redis_backend: RedisBackend
) -> None:
    """Guards against keys outside the prefix or without an expiry that grow forever."""
    if redis_backend.server is None:
        pytest.skip("inspects a real redis-server's keys")
    (a,) = await cluster(1, history_size=10, rate_per_second=0)
    prefix = a.app[NODE].settings.redis_prefix
    alice = await join_json(a, "alice")
    for i in range(300):
        await alice.send(type="send", room="lobby", text=f"m{i}", id=f"id{i}")
    for _ in range(300):
        await alice.expect("ack")
    r = redis_backend.server.client()
    try:
        keys = Keys(prefix)
        log = keys.log("lobby")
        assert r.xlen(log) < 300  # trimmed (approximately, as XADD MAXLEN ~ does)
        for key in (log, keys.meta("lobby"), keys.message_id("lobby", "alice", "id7")):
            assert r.pttl(key) > 0, key
    finally:
        r.close()


async def test_the_probe_round_trip_is_a_metric(cluster: Cluster) -> None:
    """Guards against a readiness probe nobody can watch."""
    (a,) = await cluster(1, probe_interval=0.05)
    async with asyncio.timeout(5):
        while True:
            text = await (await a.get("/metrics")).text()
            line = next(x for x in text.splitlines() if x.startswith("chat_broker_probe_rtt"))
            if line.split()[-1] != "NaN":
                break
            await asyncio.sleep(0.05)
    assert 0 < float(line.split()[-1]) < 5
