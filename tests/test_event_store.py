"""The events stored for the application (docs/operations.md, "Events for the
application"), at the Broker interface, on the in-process broker, one Redis and a Redis
Cluster: each stored in the same step as what it tells of, bounded, leased, confirmed,
found again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from redis.crc import key_slot

from gateway.broker.base import Broker, RecipientBusy
from gateway.broker.event_log import PARTITIONS, StoredEvent, partition_of
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.broker.redis.event_scripts import EventKeys
from gateway.broker.redis.keys import Keys
from gateway.errors import BrokerUnavailable
from gateway.events import Direct, PresenceChange
from tests.conftest import TEST_SETTINGS, StartedBrokers
from tests.plugins.redis import RedisBackend

EVENTS = {"events_url": "http://127.0.0.1:9/events", "backend_secret": "s" * 32}
MakeBroker = Callable[..., Awaitable[Any]]


@pytest.fixture
def make_broker(
    broker_kind: str,
    redis_backend: RedisBackend,
    request: pytest.FixtureRequest,
    started_brokers: StartedBrokers,
) -> MakeBroker:
    """Start brokers of `broker_kind` (events on unless told otherwise); on Redis the
    brokers of one test share one key prefix: they are the nodes of one cluster."""
    prefix = redis_backend.new_prefix()

    async def make(node: str = "n1", **overrides: Any) -> Any:
        settings = replace(TEST_SETTINGS, node_id=node, **{**EVENTS, **overrides})
        settings, found = redis_backend.broker_of(broker_kind, settings, prefix, request)
        return await started_brokers.start(found or MemoryBroker(settings))

    return make


async def everything(broker: Broker) -> list[StoredEvent]:
    """Every waiting event of every partition."""
    assert broker.events is not None
    found: list[StoredEvent] = []
    for partition in range(PARTITIONS):
        found += await broker.events.pending(partition, 10_000)
    return found


def bodies(found: list[StoredEvent], stream_of: str) -> list[dict[str, Any]]:
    """The events of the streams whose name holds `stream_of`, in their stream order."""
    return [stored.event for stored in found if stream_of in stored.stream]


def without_volatile(stored: dict[str, Any]) -> dict[str, Any]:
    event = dict(stored)
    assert isinstance(event.pop("id"), str)
    assert abs(event.pop("ts") - time.time() * 1000) < 60_000
    return event


async def test_every_kind_of_event_is_stored_with_its_fields_in_order(
    make_broker: MakeBroker,
) -> None:
    """Guards against an event type missing, a field wrong, or a room's events out of
    offset order (the application would store a delete before its message)."""
    broker = await make_broker()
    first = await broker.publish("lobby", "alice", "hello", origin="c1")
    await broker.presence_add("lobby", "bøb/李", announce=True)
    second = await broker.publish("lobby", "bøb/李", "hi", origin="c2")
    assert await broker.delete("lobby", first.offset, "mod")
    await broker.kick("lobby", "bøb/李", "mod", 60)
    await broker.presence_add("lobby", "carol", announce=True)
    await broker.presence_remove("lobby", "carol", announce=True)
    await broker.claim_name("dave", "conn-d", None)
    dm_ts = int(time.time() * 1000) - 5
    assert await broker.send_direct(Direct("alice", "dave", "psst", dm_ts))
    found = await everything(broker)
    room = [without_volatile(e) for e in bodies(found, "lobby")]
    until = room[5].pop("until")
    assert abs(until - (time.time() + 60) * 1000) < 60_000
    assert room == [
        {"type": "message", "room": "lobby", "from": "alice", "text": "hello",
         "offset": first.offset},
        {"type": "presence", "room": "lobby", "event": "join", "name": "bøb/李"},
        {"type": "message", "room": "lobby", "from": "bøb/李", "text": "hi",
         "offset": second.offset},
        {"type": "deleted", "room": "lobby", "offset": first.offset, "by": "mod"},
        {"type": "presence", "room": "lobby", "event": "leave", "name": "bøb/李"},
        {"type": "removed", "room": "lobby", "name": "bøb/李", "by": "mod"},
        {"type": "presence", "room": "lobby", "event": "join", "name": "carol"},
        {"type": "presence", "room": "lobby", "event": "leave", "name": "carol"},
    ]  # fmt: skip
    dms = bodies(found, "dave")
    assert [e["ts"] for e in dms] == [dm_ts]  # the message's own time
    assert [without_volatile(e) for e in dms] == [
        {"type": "dm", "from": "alice", "to": "dave", "text": "psst"}
    ]
    assert len({e.event["id"] for e in found}) == len(found) == 9  # unique ids


async def test_unannounced_presence_and_repeats_store_nothing(make_broker: MakeBroker) -> None:
    """Guards against a second event for a send repeated with its id, a repeated
    delete or join, or a silent presence change (a node's own bookkeeping) told."""
    broker = await make_broker()
    sent = await broker.publish("lobby", "alice", "once", origin="c1", message_id="m-1")
    again = await broker.publish("lobby", "alice", "once", origin="c1", message_id="m-1")
    assert again.duplicate and again.offset == sent.offset
    assert await broker.delete("lobby", sent.offset, "mod")
    assert await broker.delete("lobby", sent.offset, "mod")
    await broker.presence_add("lobby", "bob")
    await broker.presence_remove("lobby", "bob")
    assert await broker.presence_add("lobby", "carol", announce=True)
    assert not await broker.presence_add("lobby", "carol", announce=True)  # present already
    assert [e["type"] for e in bodies(await everything(broker), "lobby")] == [
        "message",
        "deleted",
        "presence",
    ]


async def test_confirm_removes_and_the_backlog_counts(make_broker: MakeBroker) -> None:
    """Guards against confirmed events posted again, or a backlog that does not say
    what waits (the readiness body and the gauges read it)."""
    broker = await make_broker()
    for i in range(3):
        await broker.publish("lobby", "alice", f"m{i}", origin="c1")
    partition = partition_of(next(e.stream for e in await everything(broker)))
    waiting = await broker.events.pending(partition, 2)
    assert [e.event["text"] for e in waiting] == ["m0", "m1"]  # the oldest first, limited
    backlog = await broker.events.backlog(partition)
    assert backlog.count == 3 and backlog.oldest_ts == waiting[0].event["ts"]
    await broker.events.confirm(waiting)
    await broker.events.confirm(waiting)  # a repeat is harmless
    assert [e.event["text"] for e in await broker.events.pending(partition, 10)] == ["m2"]
    assert (await broker.events.backlog(partition)).count == 1


async def test_the_bound_drops_the_oldest_and_reports_it(make_broker: MakeBroker) -> None:
    """Guards against a backlog that grows without end while the application is away,
    or drops that nobody counts."""
    broker = await make_broker(events_backlog=3)
    reports: list[tuple[str, int]] = []
    broker.events.on_dropped(lambda stream, n: reports.append((stream, n)))
    for i in range(5):
        await broker.publish("lobby", "alice", f"m{i}", origin="c1")
    assert [e["text"] for e in bodies(await everything(broker), "lobby")] == ["m2", "m3", "m4"]
    assert [n for _, n in reports] == [1, 1]
    assert all("lobby" in stream for stream, _ in reports)


async def test_with_events_off_nothing_is_stored(make_broker: MakeBroker, broker_kind: str) -> None:
    """Guards against events written (and kept for ever: nobody confirms them) when
    no application listens."""
    broker = await make_broker(events_url=None, backend_secret=None)
    assert broker.events is None
    sent = await broker.publish("lobby", "alice", "hello", origin="c1")
    await broker.presence_add("lobby", "bob", announce=True)
    await broker.delete("lobby", sent.offset, "mod")
    await broker.kick("lobby", "bob", "mod", 60)
    await broker.claim_name("dave", "conn-d", None)
    await broker.send_direct(Direct("alice", "dave", "psst", 1))
    if broker_kind != "memory":
        match = f"{broker._keys.prefix}*"
        keys = {k.decode() async for k in broker._redis.scan_iter(match=match)}
        assert keys and not [k for k in keys if "events" in k]


async def test_a_presence_published_alone_is_stored(make_broker: MakeBroker) -> None:
    """Guards against a join announced outside the presence scripts (a node reaped
    while it stalled puts its users back) reaching the room but not the application."""
    broker = await make_broker()
    await broker.publish_presence(PresenceChange("lobby", "join", "bob"))
    assert [without_volatile(e) for e in bodies(await everything(broker), "lobby")] == [
        {"type": "presence", "room": "lobby", "event": "join", "name": "bob"}
    ]


async def test_a_kick_of_someone_absent_and_refused_dms_store_what_happened(
    make_broker: MakeBroker,
) -> None:
    """Guards against a ban of an absent name going untold, or a DM that was never
    delivered (recipient offline, or over its budget) told as sent."""
    broker = await make_broker(dm_recipient_rate=0.001, dm_recipient_burst=1)
    await broker.kick("lobby", "ghost", "mod", 0)
    assert not await broker.send_direct(Direct("alice", "nobody", "hi", 1))
    await broker.claim_name("dave", "conn-d", None)
    assert await broker.send_direct(Direct("alice", "dave", "one", 1))
    with pytest.raises(RecipientBusy):
        await broker.send_direct(Direct("alice", "dave", "two", 2))
    found = await everything(broker)
    assert [without_volatile(e) for e in bodies(found, "lobby")] == [
        {"type": "removed", "room": "lobby", "name": "ghost", "by": "mod"}
    ]
    assert [e["text"] for e in bodies(found, "dave")] == ["one"]
    assert bodies(found, "nobody") == []


@pytest.fixture(params=["redis", "cluster"])
def redis_kind(request: pytest.FixtureRequest) -> str:
    """The Redis brokers only (what the in-process broker has no counterpart of)."""
    return str(request.param)


@pytest.fixture
def make_redis(
    redis_kind: str,
    redis_backend: RedisBackend,
    request: pytest.FixtureRequest,
    started_brokers: StartedBrokers,
) -> MakeBroker:
    prefix = redis_backend.new_prefix()

    async def make(node: str = "n1", **overrides: Any) -> RedisBroker:
        settings = replace(TEST_SETTINGS, node_id=node, **{**EVENTS, **overrides})
        settings, broker = redis_backend.broker_of(redis_kind, settings, prefix, request)
        assert broker is not None
        started: RedisBroker = await started_brokers.start(broker)
        return started

    return make


async def test_a_publish_that_fails_stores_no_event(make_redis: MakeBroker) -> None:
    """Guards against the event written apart from its message (before it, or in a
    step of its own): a failed publish (never acked) would still be told."""
    broker = await make_redis()
    await broker.publish("lobby", "alice", "first", origin="c1")
    await broker._redis.delete(broker._keys.log("lobby"))
    await broker._redis.set(broker._keys.log("lobby"), "not a stream")  # XADD fails
    with pytest.raises(BrokerUnavailable):
        await broker.publish("lobby", "alice", "lost", origin="c1")
    assert [e["text"] for e in bodies(await everything(broker), "lobby")] == ["first"]


async def test_leases_are_exclusive_and_taken_over_once_expired(make_redis: MakeBroker) -> None:
    """Guards against two nodes posting one partition's events (each event twice), or a
    dead node's partition never taken over (its events never posted)."""
    one, two = await make_redis("n1"), await make_redis("n2")
    assert await one.events.lease(3, 0.3)
    assert not await two.events.lease(3, 10)
    assert await one.events.lease(3, 0.3)  # renewed by its holder
    assert await two.events.lease(4, 10)  # another partition is free
    for _ in range(100):  # once expired, it is free
        if await two.events.lease(3, 10):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the lease never expired")
    assert not await one.events.lease(3, 10)
    await one.events.release(3)  # not its own: nothing happens
    assert not await one.events.lease(3, 10)
    await two.events.release(3)
    assert await one.events.lease(3, 10)


async def test_a_confirmed_stream_leaves_no_empty_key(make_redis: MakeBroker) -> None:
    """Guards against a stream key left for ever once its events are confirmed (XDEL
    never deletes one): every room and every DM recipient ever would stay in Redis,
    and in every sweep's SCAN; against a stream removed while it still holds events;
    and against events lost when a stream is made again after its removal."""
    broker = await make_redis()
    events = broker.events
    stream = events.keys.room("lobby")
    partition = partition_of(stream)
    for text in ("m0", "m1"):
        await broker.publish("lobby", "alice", text, origin="c1")
    waiting = await events.pending(partition, 10)
    await events.confirm(waiting[:1])
    assert await broker._redis.exists(stream) == 1  # m1 still waits
    await events.confirm(waiting[1:])
    assert await broker._redis.exists(stream) == 0
    await broker.publish("lobby", "alice", "m2", origin="c1")
    assert [e.event["text"] for e in await events.pending(partition, 10)] == ["m2"]


async def test_hints_find_the_streams_and_stale_ones_go(make_redis: MakeBroker) -> None:
    """Guards against events in a stream nobody looks at (no hint), hints that pile up
    for ever, and a hint removed while a publisher hinted it again."""
    broker = await make_redis()
    events = broker.events
    await broker.publish("lobby", "alice", "hello", origin="c1")
    stream = events.keys.room("lobby")
    partition = partition_of(stream)
    hints = events.keys.hints(partition)
    assert await broker._redis.zscore(hints, stream) is not None
    await events.confirm(await events.pending(partition, 10))
    await events.pending(partition, 10)  # empty, but hinted lately: kept
    assert await broker._redis.zscore(hints, stream) is not None
    old = time.time() * 1000 - 61_000
    await broker._redis.zadd(hints, {stream: old})
    await events.pending(partition, 10)  # empty and stale: removed
    assert await broker._redis.zscore(hints, stream) is None
    await broker._redis.zadd(hints, {stream: old})
    assert await events._unhint(keys=[hints], args=[stream, str(int(old) + 1)]) == 0
    assert await broker._redis.zscore(hints, stream) is not None  # hinted again: kept
    events._hinted.clear()  # a publisher whose last hint is old hints again
    await broker._redis.delete(hints)
    await broker.publish("lobby", "alice", "again", origin="c1")
    assert [e.event["text"] for e in await events.pending(partition, 10)] == ["again"]


async def test_the_sweep_finds_streams_whose_hint_was_lost(make_redis: MakeBroker) -> None:
    """Guards against events stranded for good when a publisher stalled (or its hint
    was lost) between its hint and its event."""
    broker = await make_redis()
    rooms = [f"room{i}" for i in range(6)]
    for room in rooms:
        await broker.publish(room, "alice", room, origin="c1")
    await broker.events.confirm([e for e in await everything(broker) if "room0" in e.stream])
    for partition in range(PARTITIONS):
        await broker._redis.delete(broker.events.keys.hints(partition))
    assert await everything(broker) == []
    assert await broker.events.sweep() == 5  # room0's stream is empty
    assert sorted(e.event["text"] for e in await everything(broker)) == rooms[1:]


async def test_a_reaped_nodes_leaves_are_stored(make_redis: MakeBroker) -> None:
    """Guards against the leaves of a dead node's users (announced by the reaper) never
    reaching the application: it would count them present for ever."""
    alive = await make_redis("n1", presence_timeout=0.6)
    doomed = await make_redis("n2", presence_timeout=0.6)
    await doomed.presence_add("lobby", "bob", announce=True)
    await doomed.presence_add("lobby", 'carol/李 "x"', announce=True)
    await doomed.close()  # its heartbeat stops; nothing is cleaned up
    for _ in range(200):  # the reaper comes within the presence timeout
        if len(bodies(await everything(alive), "lobby")) >= 4:
            break
        await asyncio.sleep(0.05)
    found = bodies(await everything(alive), "lobby")
    leaves = sorted(e["name"] for e in found if e.get("event") == "leave")
    assert leaves == ["bob", 'carol/李 "x"']
    assert len({e["id"] for e in found}) == 4


async def test_on_a_cluster_streams_and_partitions_spread_over_the_shards(
    make_broker: MakeBroker, broker_kind: str, request: pytest.FixtureRequest
) -> None:
    """Guards against an event key outside its room's (or name's) slot (CROSSSLOT: the
    publish refused) and partitions crowding one shard (one node's Redis doing all)."""
    if broker_kind != "cluster":
        pytest.skip("a cluster's shards")
    broker = await make_broker()
    rooms = [f"room{i}" for i in range(40)]
    for room in rooms:
        await broker.publish(room, "alice", room, origin="c1")
        await broker.presence_add(room, "bob", announce=True)
    await broker.claim_name("dave", "conn-d", None)
    assert await broker.send_direct(Direct("alice", "dave", "psst", 1))
    found = await everything(broker)
    assert len(found) == 81
    keys = broker.events.keys
    for room in rooms:
        assert key_slot(keys.room(room).encode()) == key_slot(broker._keys.meta(room).encode())
    assert key_slot(keys.dm("dave").encode()) == key_slot(broker._keys.name("dave").encode())
    shards = {broker._redis.get_node_from_key(keys.hints(p)).name for p in range(PARTITIONS)}
    assert len(shards) == 3
    homes = {broker._redis.get_node_from_key(keys.room(room)).name for room in rooms}
    assert len(homes) == 3


def test_partition_keys_fall_in_their_share_of_the_slots() -> None:
    """Guards against partition tags that crowd a few slots (on a cluster, a shard
    holding most partitions' hints and leases)."""
    keys = EventKeys(Keys("chat:"))
    shares = [key_slot(keys.hints(p).encode()) * PARTITIONS // 16384 for p in range(PARTITIONS)]
    assert shares == list(range(PARTITIONS))
    assert all(
        key_slot(keys.hints(p).encode()) == key_slot(keys.lease(p).encode())
        for p in range(PARTITIONS)
    )
