"""The events stored for the application (PROTOCOL section 11.2), at the Broker
interface, on the in-process broker, one Redis and a Redis Cluster: each stored in the
same step as what it tells of, bounded, leased, confirmed, found again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from gateway.broker.base import Broker
from gateway.broker.event_log import PARTITIONS, StoredEvent, partition_of
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.events import Direct
from tests.conftest import TEST_SETTINGS
from tests.redis_backend import RedisBackend

EVENTS = {"events_url": "http://127.0.0.1:9/events", "backend_secret": "s" * 32}
MakeBroker = Callable[..., Awaitable[Any]]


class _Listener:
    """The node side of a bare broker: nothing to deliver to here."""

    def on_room_event(self, event: object) -> None: ...

    def on_direct(self, event: object, name_key: str) -> None: ...

    def on_kick(self, connection: str) -> None: ...

    def on_removed(self, name: str, room: str, by: str, until: int | None) -> None: ...

    def on_disconnect(self, name_key: str) -> None: ...


@pytest.fixture
async def make_broker(
    broker_kind: str, redis_backend: RedisBackend, request: pytest.FixtureRequest
) -> AsyncIterator[MakeBroker]:
    """Start brokers of `broker_kind` (events on unless told otherwise); on Redis the
    brokers of one test share one key prefix: they are the nodes of one cluster."""
    prefix = redis_backend.new_prefix()
    started: list[Any] = []

    async def make(node: str = "n1", **overrides: Any) -> Any:
        settings = replace(TEST_SETTINGS, node_id=node, **{**EVENTS, **overrides})
        broker: Any
        if broker_kind == "memory":
            broker = MemoryBroker(settings)
        elif broker_kind == "redis":
            settings, broker = redis_backend.broker(settings, prefix)
        else:
            cluster = request.getfixturevalue("redis_cluster")
            broker = RedisBroker(replace(settings, redis_url=cluster.url, redis_prefix=prefix))
        await broker.start(_Listener())
        started.append(broker)
        return broker

    yield make
    for broker in started:
        await broker.close()


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
    await broker.presence_add("lobby", "bob", announce=True)
    second = await broker.publish("lobby", "bob", "hi", origin="c2")
    assert await broker.delete("lobby", first.offset, "mod")
    await broker.kick("lobby", "bob", "mod", 60)
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
        {"type": "presence", "room": "lobby", "event": "join", "name": "bob"},
        {"type": "message", "room": "lobby", "from": "bob", "text": "hi",
         "offset": second.offset},
        {"type": "deleted", "room": "lobby", "offset": first.offset, "by": "mod"},
        {"type": "presence", "room": "lobby", "event": "leave", "name": "bob"},
        {"type": "removed", "room": "lobby", "name": "bob", "by": "mod"},
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
    delete, or a silent presence change (a node's own bookkeeping) told as a join."""
    broker = await make_broker()
    sent = await broker.publish("lobby", "alice", "once", origin="c1", message_id="m-1")
    again = await broker.publish("lobby", "alice", "once", origin="c1", message_id="m-1")
    assert again.duplicate and again.offset == sent.offset
    assert await broker.delete("lobby", sent.offset, "mod")
    assert await broker.delete("lobby", sent.offset, "mod")
    await broker.presence_add("lobby", "bob")
    await broker.presence_remove("lobby", "bob")
    assert [e["type"] for e in bodies(await everything(broker), "lobby")] == [
        "message",
        "deleted",
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
