"""A Redis Cluster with one shard down (its primary dead, no replica to take over, and
`cluster-require-full-coverage no`, so the other shards serve): the nodes keep serving
the rooms of the healthy shards, a node restarted meanwhile too, and what that node's
former run held on the dead shard is cleared once the shard is back.

The dead shard is the one that holds the node list (`P nodes`): the nodes then cannot
list themselves or find dead nodes, and must still beat and serve. The nodes' own keys
(their heartbeats) are on healthy shards: a node whose own shard is down is unready.
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import aiohttp
import pytest
from redis.crc import key_slot

from gateway.broker.event_log import partition_of
from gateway.broker.redis import RedisBroker
from gateway.broker.redis_scripts import Keys
from gateway.names import name_key
from tests.conftest import TEST_SETTINGS, BareListener, JsonPeer
from tests.plugins.gateway_nodes import connect
from tooling.gateway import GatewayProcess
from tooling.redis_cluster import RedisCluster

PREFIX = "down:"
KEYS = Keys(PREFIX)
WAIT = 30.0  # seconds: the cluster marks a node failed after its node timeout (2 s)


@pytest.fixture
async def cluster(redis_cluster: RedisCluster) -> AsyncIterator[RedisCluster]:
    """Three primaries, no replicas, an append-only file each (a primary started again
    has its data back), and the healthy shards serving while one is down."""
    extra = ("--cluster-require-full-coverage", "no", "--appendonly", "yes")
    servers = RedisCluster(replicas=0, extra=(*extra, "--appendfsync", "always"))
    servers.start()
    yield servers
    servers.close()


def owner(servers: RedisCluster, key: str) -> int:
    """The port of the primary that owns `key`'s slot."""
    slot = key_slot(key.encode())
    for port, ranges in servers.primaries().items():
        if any(start <= slot <= end for start, end in ranges):
            return port
    raise AssertionError(f"no primary owns slot {slot}")


def pick(
    stem: str, key_of: Callable[[str], str], on: Callable[[int], bool], servers: RedisCluster
) -> str:
    """The first `stem<N>` whose key lies on a primary for which `on(port)` holds."""
    for index in itertools.count():
        if on(owner(servers, key_of(f"{stem}{index}"))):
            return f"{stem}{index}"
    raise AssertionError("unreachable")


def subscribers(servers: RedisCluster, node: str) -> dict[int, set[int]]:
    """The ids of `node`'s subscription connections on each live primary."""
    found = {}
    for port in servers.live_ports():
        clients = servers.client(port).client_list(_type="pubsub")
        found[port] = {c["id"] for c in clients if c["name"] == f"{PREFIX}subscriber:{node}"}
    assert all(found.values()), found
    return found


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError:
        return 0, ""


async def until_readyz(node: GatewayProcess, status: int, says: str) -> str:
    """Poll /readyz (bounded) until it answers `status` with a body containing `says`."""
    async with asyncio.timeout(WAIT):
        while True:
            code, body = await asyncio.to_thread(readyz, node.port)
            if code == status and (body == says if says == "ready\n" else says in body):
                return body
            await asyncio.sleep(0.05)


async def test_a_node_restarted_while_a_shard_is_down_serves_the_healthy_shards(
    cluster: RedisCluster,
) -> None:
    """Guards against one dead shard taking every room down: a node that waits for
    every shard before it serves, resubscribes the healthy shards whenever the dead one
    fails again, or stops beating because the node list is out of reach; and against
    the presence a crashed run held on the dead shard staying there for good."""
    down = owner(cluster, KEYS.nodes)

    def healthy(port: int) -> bool:
        return port != down

    def on_down(port: int) -> bool:
        return port == down

    room_up = pick("up", KEYS.meta, healthy, cluster)
    room_down = pick("down", KEYS.meta, on_down, cluster)
    node_ids = [pick(f"n{i}x", lambda n: KEYS.node(n) + ":alive", healthy, cluster) for i in (0, 1)]
    alice, bob, carol = (
        pick(n, lambda n: KEYS.name(name_key(n)), healthy, cluster)
        for n in ("alice", "bob", "carol")
    )
    args = (
        "--redis-url",
        cluster.url,
        "--redis-prefix",
        PREFIX,
        "--presence-timeout",
        "3",
        "--log-level",
        "INFO",
    )
    restarted, steady = (GatewayProcess(None, *args, "--node-id", node) for node in node_ids)
    try:
        for node in (restarted, steady):
            node.start()
            await until_readyz(node, 200, "ready\n")
        async with aiohttp.ClientSession() as http:
            b = await connect(http, steady, bob, room=room_up)
            a = await connect(http, restarted, alice, room=room_up)
            await b.expect("presence", room=room_up, event="join", name=alice)
            for peer in (b, a):
                assert (await peer.request("join", room=room_down))["type"] == "subscribed"
            await b.expect("presence", room=room_down, event="join", name=alice)

            cluster.kill(down)
            await until_readyz(steady, 200, f"shards down: 127.0.0.1:{down}")
            kept = subscribers(cluster, node_ids[1])
            restarted.kill()  # a crash: alice's presence stays where it was
            restarted.start()
            body = await until_readyz(restarted, 200, f"shards down: 127.0.0.1:{down}")
            assert body.startswith("ready, degraded")

            # The restarted node cleared its former run where it could: alice left.
            await b.expect("presence", room=room_up, event="leave", name=alice, timeout=WAIT)
            c = await connect(http, restarted, carol, room=room_up)
            await b.expect("presence", room=room_up, event="join", name=carol)
            await chat(c, b, room_up, "from the restarted node")
            await chat(b, c, room_up, "to the restarted node")
            # The steady node kept its healthy shards' subscriptions all along (its dead
            # shard's retries did not make them anew).
            assert subscribers(cluster, node_ids[1]) == kept
            refused = await c.request("join", room=room_down)
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            lost = await b.request("send", room=room_down, text="nowhere to keep it")
            assert lost["type"] == "error" and lost["code"] == "unavailable", lost

            cluster.start_node(down)  # with its data: alice is still listed in room_down
            await asyncio.to_thread(cluster.wait_ok)
            # ... until the restarted node's retry clears its former run's entry there.
            # (Its leave may be published before bob's node is subscribed there again:
            # presence events during a subscription gap are not replayed.)
            await until_members(b, room_down, [bob])
            for node in (restarted, steady):
                await until_readyz(node, 200, "ready\n")
            joined = await c.request("join", room=room_down)
            assert joined["type"] == "subscribed" and joined["members"] == sorted([bob, carol])
            await chat(b, c, room_down, "the shard is back")
    finally:
        for node in (restarted, steady):
            print(f"--- {node.port}:\n{node.log()}")  # shown when the test fails
            node.close()


async def until_members(peer: JsonPeer, room: str, members: list[str]) -> None:
    """Ask (bounded) until `room`'s members are `members`."""
    async with asyncio.timeout(WAIT):
        while True:
            answer = await peer.request("who", room=room)
            if answer.get("members") == members:
                return
            await asyncio.sleep(0.1)  # an entry another node clears on its next beat


async def chat(sender: JsonPeer, receiver: JsonPeer, room: str, text: str) -> None:
    """`sender` says `text` in `room` (acked) and `receiver` gets it."""
    ack = await sender.request("send", room=room, text=text)
    assert ack["type"] == "ack", ack
    await receiver.expect("message", room=room, text=text, offset=ack["offset"])


async def test_a_room_on_a_healthy_shard_takes_messages_while_its_hints_shard_is_down(
    cluster: RedisCluster,
) -> None:
    """Guards against the events' hints coupling the shards: a room whose data lies on a
    healthy shard, but whose partition's hints (`P events:{T}:pending`) lie on the dead
    one, refusing every send as `unavailable` whenever its stream is due a hint. The
    message and its event are stored; the stream is found again once the shard is back
    (hinted again, or by the sweep)."""
    settings = replace(
        TEST_SETTINGS,
        redis_url=cluster.url,
        redis_prefix=PREFIX,
        events_url="http://127.0.0.1:9/events",
        backend_secret="s" * 32,
    )
    broker = RedisBroker(settings)
    await broker.start(BareListener())
    try:
        events = broker.events
        assert events is not None
        down = owner(cluster, events.keys.hints(0))

        def hints_down(room: str) -> bool:
            stream = events.keys.room(room)
            hints = events.keys.hints(partition_of(stream))
            return owner(cluster, hints) == down and owner(cluster, stream) != down

        room = next(f"hinted{i}" for i in itertools.count() if hints_down(f"hinted{i}"))
        cluster.kill(down)
        async with asyncio.timeout(WAIT):
            sent = await broker.publish(room, "alice", "kept", origin="c1")
        assert not sent.duplicate
        stream = events.keys.room(room)
        [(_, fields)] = await broker._redis.xrange(stream)
        assert b"kept" in fields[b"e"]
        cluster.start_node(down)
        await asyncio.to_thread(cluster.wait_ok)
        async with asyncio.timeout(WAIT):
            while not await events.pending(partition_of(stream), 10):
                await events.sweep()  # the backstop every 5 minutes, at once here
                await asyncio.sleep(0.2)
    finally:
        await broker.close()
