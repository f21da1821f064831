"""The Redis broker on a Redis Cluster (three primaries, three replicas): rooms spread
over the shards, live messages on sharded channels, and topology changes (a primary
killed and failed over, a slot migrated) that lose and repeat nothing acked.

The protocol tests run on the cluster too (`broker_kind` "cluster"); these are the
cluster's own. The fault tests get a cluster of their own, which they change.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.crc import key_slot

from gateway.__main__ import describe
from gateway.app import create_app
from gateway.broker.redis import RedisBroker
from gateway.broker.redis_scripts import Keys
from tests.conftest import TEST_SETTINGS, JsonPeer, join_json
from tests.plugins.gateway_nodes import connect
from tests.plugins.redis_faults import delivered, wait_ready
from tests.plugins.sharded import (
    FAILOVER_WAIT,
    PREFIX,
    nodes_on,
    room_on,
    send_until_acked_in,
    stored_offsets,
)
from tooling.gateway import GatewayProcess
from tooling.redis_cluster import RedisCluster

# A node that is away from a shard fills its rooms' gaps from their streams: the
# history must hold the whole gap (a gap longer than the history is lost to members
# who stayed, on one Redis as on a cluster: docs/redis.md). So the nodes keep more
# than the test sends, and alice sends as a person might, not as fast as she can.
SEND_PAUSE = 0.01  # seconds between alice's acked message and her next
ALL_WELL = "ready\n"  # /readyz with every shard working


@pytest.fixture
async def own_cluster(redis_cluster: RedisCluster) -> AsyncIterator[RedisCluster]:
    """A Redis Cluster of this test's own, which it may break (the suite's shared one
    only says whether a cluster can run here)."""
    servers = RedisCluster().start()
    yield servers
    servers.close()


async def test_rooms_on_every_shard_travel_on_sharded_channels(
    aiohttp_client: Any, redis_cluster: RedisCluster
) -> None:
    """Guards against rooms crowding one shard, and against live messages on the
    cluster-wide bus (PUBLISH reaches every node of the cluster; SPUBLISH only the
    shard that owns the room)."""
    a, b = await nodes_on(aiohttp_client, redis_cluster)(2)
    primaries = redis_cluster.primaries()
    rooms: dict[int, str] = {}
    for port in primaries:
        rooms[port] = room_on(redis_cluster, port, frozenset(rooms.values()))
    for port, room in rooms.items():
        alice = await join_json(a, f"alice-{room}", room=room)
        bob = await join_json(b, f"bob-{room}", room=room)
        ack = await alice.request("send", room=room, text=f"hello {room}")
        await bob.expect("message", text=f"hello {room}", offset=ack["offset"])
        channel = Keys(PREFIX).room_channel(room).encode()
        owner = redis_cluster.client(port)
        assert channel in owner.execute_command("PUBSUB SHARDCHANNELS")
        for other in primaries:
            assert channel not in redis_cluster.client(other).execute_command("PUBSUB CHANNELS")
            if other != port:
                assert channel not in redis_cluster.client(other).execute_command(
                    "PUBSUB SHARDCHANNELS"
                )
    for node in (a, b):  # every shard's probe comes back (bounded: a late probe blinks)
        await wait_ready(node, True, FAILOVER_WAIT)


class Chatter:
    """alice's sending: one message after another, each with an id until acked."""

    def __init__(self, peer: JsonPeer, room: str) -> None:
        self.peer, self.room = peer, room
        self.acked: list[str] = []  # offsets, in order
        self.progress = asyncio.Event()  # set on every ack
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for count in itertools.count():
            if self.stop.is_set():
                return
            answer = await send_until_acked_in(self.peer, self.room, f"{self.room}-{count}")
            self.acked.append(answer["offset"])
            self.progress.set()
            await asyncio.sleep(SEND_PAUSE)

    async def until(self, count: int) -> None:
        """Wait (bounded) until `count` messages are acked."""
        async with asyncio.timeout(FAILOVER_WAIT):
            while len(self.acked) < count:
                self.progress.clear()
                await self.progress.wait()

    async def finish(self) -> list[str]:
        self.stop.set()
        await asyncio.wait_for(self.task, FAILOVER_WAIT)
        return self.acked


async def until_delivered(peer: JsonPeer, offsets: list[str]) -> None:
    """Wait (bounded) until `peer` got every one of `offsets`; fail naming the missing."""
    try:
        async with asyncio.timeout(FAILOVER_WAIT):
            while not set(offsets) <= set(delivered(peer)):
                await peer.recv(FAILOVER_WAIT)
    except TimeoutError:
        missing = [o for o in offsets if o not in set(delivered(peer))]
        raise AssertionError(f"never delivered: {missing} (got {delivered(peer)})") from None


async def test_a_primary_killed_mid_chat_fails_over_and_loses_nothing_acked(
    aiohttp_client: Any, own_cluster: RedisCluster
) -> None:
    """Guards against a node that stays subscribed to a dead primary (the replica took
    its slots: its rooms would go silent), and against messages the cluster kept lost or
    repeated across the failover (node-redis#3311: messages silently lost after a slot
    moved)."""
    a, b = await nodes_on(aiohttp_client, own_cluster)(2)
    victim = next(iter(own_cluster.primaries()))
    room = room_on(own_cluster, victim)
    alice = await join_json(a, "alice", room=room)
    bob = await join_json(b, "bob", room=room)
    sending = Chatter(alice, room)
    await sending.until(3)
    own_cluster.kill(victim)
    # Its subscription on that shard is gone: /readyz names the shard, or is 503 once
    # the heartbeat fails too (with full coverage the cluster refuses everything while
    # the replica takes over).
    await wait_readyz(b, f"127.0.0.1:{victim}", or_unready=True)
    await asyncio.to_thread(own_cluster.wait_ok, own_cluster.live_ports())  # replica took over
    await wait_readyz(b, ALL_WELL)
    await sending.until(len(sending.acked) + 5)  # sends are taken again after the failover
    acked = await sending.finish()
    # Replication is asynchronous, but an ack waits for the replica (WAIT): whatever was
    # acked, before the failover or after it, the promoted replica kept.
    kept = await stored_offsets(alice, room)
    assert set(acked) <= kept, "an acked message is lost"
    must = [o for o in acked if o in kept]
    await until_delivered(bob, must)
    got = delivered(bob)
    assert len(got) == len(set(got)), "a message delivered twice"
    assert [o for o in got if o in set(must)] == must, "out of order"


async def test_a_slot_migrated_while_its_room_is_busy_loses_nothing(
    aiohttp_client: Any, own_cluster: RedisCluster
) -> None:
    """Guards against a node left subscribed where a room's slot used to be (the server
    unsubscribes its channel when the slot moves: ioredis#1759 dropped such messages
    without an error), and against a message lost or repeated across the move."""
    a, b = await nodes_on(aiohttp_client, own_cluster)(2)
    source, target = list(own_cluster.primaries())[:2]
    room = room_on(own_cluster, source)
    alice = await join_json(a, "alice", room=room)
    bob = await join_json(b, "bob", room=room)
    sending = Chatter(alice, room)
    await sending.until(3)
    slot = key_slot(Keys(PREFIX).meta(room).encode())
    await asyncio.to_thread(own_cluster.migrate_slot, slot, source, target)
    owned = own_cluster.primaries()[target]
    assert any(start <= slot <= end for start, end in owned)
    await sending.until(len(sending.acked) + 5)
    acked = await sending.finish()
    await until_delivered(bob, acked)
    got = delivered(bob)
    assert len(got) == len(set(got)), "a message delivered twice"
    assert [o for o in got if o in set(acked)] == acked, "out of order"
    channel = Keys(PREFIX).room_channel(room).encode()
    assert channel in own_cluster.client(target).execute_command("PUBSUB SHARDCHANNELS")


def name_off(servers: RedisCluster, port: int, start: str) -> str:
    """A name (`start` and a number) whose user channel lives on another shard than `port`."""
    ranges = servers.primaries()[port]
    for index in itertools.count():
        slot = key_slot(f"{start}{index}".encode())
        if not any(low <= slot <= high for low, high in ranges):
            return f"{start}{index}"
    raise AssertionError("unreachable")


async def test_killed_shard_subscriptions_lose_and_repeat_nothing(
    aiohttp_client: Any, redis_cluster: RedisCluster
) -> None:
    """Guards against a shard subscription that reconnects by itself underneath the node
    (redis-py's own retries of a pubsub read): it subscribed again with no gap fill and
    lost what was published meanwhile. The room's channel shares its slot with the
    shard's probe channel, so redis-py's one SSUBSCRIBE of both goes through."""
    a, b = await nodes_on(aiohttp_client, redis_cluster)(2)
    port = next(iter(redis_cluster.primaries()))
    ranges = redis_cluster.primaries()[port]
    room = str(next(i for i in itertools.count() if probe_slot(i, ranges)))
    sender = await join_json(a, name_off(redis_cluster, port, "sender"), room=room)
    receiver = await join_json(b, name_off(redis_cluster, port, "receiver"), room=room)
    total = 600

    async def flood() -> None:  # pipelined: publishes go on while the node reconnects
        for i in range(total):
            await sender.send(type="send", room=room, text=str(i))

    flooding = asyncio.create_task(flood())
    acked: list[str] = []
    try:
        while len(acked) < total:
            acked.append((await sender.expect("ack"))["offset"])
            if len(acked) in (100, 300, 301, 500):
                redis_cluster.client(port).execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await flooding
    await until_delivered(receiver, acked)
    assert delivered(receiver) == acked, "repeated or out of order"


def probe_slot(index: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether the probe channel `...:{index}` (and a room named `index`) is in `ranges`."""
    slot = key_slot(str(index).encode())
    return any(low <= slot <= high for low, high in ranges)


async def test_two_gateway_processes_share_a_chat_on_the_cluster(
    redis_cluster: RedisCluster,
) -> None:
    """Guards against a node that cannot start on a redis+cluster:// URL (its first log
    line once failed to parse the comma-separated seed list) or that stays unready."""
    args = ("--redis-url", redis_cluster.url, "--redis-prefix", "procs:", "--log-level", "INFO")
    nodes = [GatewayProcess(None, *args, "--node-id", f"p{i}") for i in range(2)]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await asyncio.to_thread(wait_http_ready, node.port)
        assert "(redis cluster 127.0.0.1:" in nodes[0].log()
        async with aiohttp.ClientSession() as http:
            alice = await connect(http, nodes[0], "alice")
            bob = await connect(http, nodes[1], "bob")
            ack = await alice.request("send", room="lobby", text="across processes")
            await bob.expect("message", text="across processes", offset=ack["offset"])
    finally:
        for node in nodes:
            node.close()


async def wait_readyz(client: TestClient, says: str, *, or_unready: bool = False) -> None:
    """Poll /readyz (bounded) until it answers 200 with a body containing `says`
    (ALL_WELL: exactly that body, nothing degraded), or with `or_unready` 503."""
    async with asyncio.timeout(FAILOVER_WAIT):
        while True:
            response = await client.get("/readyz")
            body = await response.text()
            if response.status == 200 and (body == says if says == ALL_WELL else says in body):
                return
            if or_unready and response.status == 503:
                return
            await asyncio.sleep(0.05)


async def test_a_cluster_that_wants_a_password_gets_it_from_the_url(
    aiohttp_client: Any, redis_cluster: RedisCluster
) -> None:
    """Guards against a password in redis+cluster:// that reaches the command client
    but not the shards' subscription connections (nothing would be delivered), against
    one not percent-decoded, and against the password in the node's first log line."""
    servers = RedisCluster(replicas=0, password="s3cret/with odd").start()
    try:
        assert "s3cret%2Fwith%20odd@" in servers.url
        a, b = await nodes_on(aiohttp_client, servers)(2)
        alice = await join_json(a, "alice")
        bob = await join_json(b, "bob")
        ack = await alice.request("send", room="lobby", text="behind a password")
        await bob.expect("message", text="behind a password", offset=ack["offset"])
        for node in (a, b):
            await wait_readyz(node, ALL_WELL)
        line = describe(replace(TEST_SETTINGS, redis_url=servers.url))
        assert "s3cret" not in line and f"127.0.0.1:{servers.ports[0]}" in line
        wrong = servers.url.replace("s3cret", "wrong")
        settings = replace(TEST_SETTINGS, node_id="w", redis_url=wrong, redis_prefix=PREFIX)
        refused = await aiohttp_client(create_app(settings, RedisBroker(settings)))
        assert (await refused.get("/readyz")).status == 503
    finally:
        servers.close()


def wait_http_ready(port: int) -> None:
    """Poll /readyz (bounded) until it answers 200."""
    deadline = time.monotonic() + FAILOVER_WAIT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"/readyz on {port} never answered 200") from None
            time.sleep(0.05)  # a bounded poll
