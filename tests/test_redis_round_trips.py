"""What a new connection costs on one Redis (issue 25): its user channel subscribed
together with the others arriving at once, its name claimed and indexed in one round
trip, its presence entry and what it is sent (offset, members) in one more. Counted on
a real redis-server's MONITOR: the commands the node sent, not those its scripts ran."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio
from aiohttp.test_utils import TestClient

from gateway.broker.redis import RedisBroker
from gateway.broker.redis.subscriber import Subscriber
from gateway.names import name_key
from tests.conftest import TEST_SETTINGS, StartedBrokers, join_json
from tests.plugins.redis import RedisBackend
from tests.plugins.redis_monitor import monitored
from tooling.tcp_proxy import TcpProxy

MakeBroker = Callable[[], Awaitable[RedisBroker]]


@pytest.fixture
def make_broker(redis_backend: RedisBackend, started_brokers: StartedBrokers) -> MakeBroker:
    if redis_backend.server is None:
        pytest.skip("MONITOR needs a real redis-server")
    prefix = redis_backend.new_prefix()

    async def make() -> RedisBroker:
        settings = replace(TEST_SETTINGS, node_id=f"n{len(started_brokers.brokers) + 1}")
        _, broker = redis_backend.broker(settings, prefix)
        started: RedisBroker = await started_brokers.start(broker)
        return started

    return make


@contextlib.asynccontextmanager
async def bare_subscriber(
    client: redis.asyncio.Redis, probe: str, probe_interval: float
) -> AsyncIterator[Subscriber]:
    """A node's subscriber on `client` with nothing to deliver or fill, live; closed
    (with the client) on the way out."""

    async def nothing_to_fill(channels: frozenset[str]) -> None: ...

    subscriber = Subscriber(
        client, probe, lambda channel, data: None, nothing_to_fill, probe_interval=probe_interval
    )
    subscriber.start()
    try:
        await subscriber.wait_live()
        yield subscriber
    finally:
        await subscriber.close()
        await client.aclose()


async def sent_while(
    backend: RedisBackend, step: Callable[[], Awaitable[Any]], about: str
) -> tuple[Any, list[list[str]]]:
    """Run `step`; its result, and the commands clients sent meanwhile (not those a
    script ran) that name `about` in a key, channel or argument."""
    assert backend.server is not None
    result, seen = await monitored(backend.server.url, step)
    commands = [entry["command"].split(" ") for entry in seen]
    return result, [words for words in commands if any(about in word for word in words)]


@pytest.mark.parametrize("broker_kind", ["redis"])
async def test_a_new_connection_is_one_round_trip_after_its_subscription(
    gateway: Callable[..., Awaitable[TestClient]], redis_backend: RedisBackend
) -> None:
    """Guards against a connection's claim, its presence entry and what it is sent
    (the room's offset and members) going back to round trips of their own (issue 25:
    four per connection, a quarter of its cost in redis-py alone)."""
    if redis_backend.server is None:
        pytest.skip("MONITOR needs a real redis-server")
    client = await gateway()
    alice = await join_json(client, "alice")  # the room is subscribed on this node
    bob, sent = await sent_while(redis_backend, lambda: join_json(client, "bob"), "bob")
    assert [words[0] for words in sent] == ["SUBSCRIBE", "EVALSHA"]
    assert bob.subscribed["members"] == ["alice", "bob"]
    await alice.expect("presence", event="join", name="bob", room="lobby")
    await bob.request("send", room="lobby", text="hi")  # the entry is whole: it chats
    await alice.expect("message", text="hi")


async def test_entering_a_room_is_one_round_trip(
    make_broker: MakeBroker, redis_backend: RedisBackend
) -> None:
    """Guards against the entry and what it is sent going back to two round trips (the
    presence script, then the offset and the members): a quarter of a connection's cost."""
    broker = await make_broker()
    await broker.presence_add("lobby", "alice", announce=True)  # the room's index is made
    published = await broker.publish("lobby", "alice", "hi", origin="c1")
    entered, sent = await sent_while(
        redis_backend, lambda: broker.presence_add_entering("lobby", "bob", None, 50), "lobby"
    )
    added, replay, members = entered
    assert added and members == ["alice", "bob"]
    assert (replay.offset, replay.messages, replay.recovered) == (published.offset, [], False)
    assert [words[0] for words in sent] == ["EVALSHA"]


async def test_claiming_a_name_is_one_round_trip_after_its_subscription(
    make_broker: MakeBroker, redis_backend: RedisBackend
) -> None:
    """Guards against the names index going back to a command of its own before the
    claim (SADD, then the script)."""
    broker = await make_broker()
    await broker.claim_name("somebody", "c0", None)  # the subscriber's first use is over
    _, sent = await sent_while(
        redis_backend, lambda: broker.claim_name("carol", "c1", None), "carol"
    )
    assert [words[0] for words in sent] == ["SUBSCRIBE", "EVALSHA"]


async def test_releasing_a_name_is_one_round_trip_after_its_unsubscribe(
    make_broker: MakeBroker, redis_backend: RedisBackend
) -> None:
    """Guards against the names index going back to a command of its own after the
    release (SREM: one more round trip for every connection that closes, as in a
    reconnect storm), and against a released name left in the index (the reaper would
    take it for this node's if the node died)."""
    broker = await make_broker()
    await broker.claim_name("leaving-erin", "c1", None)
    checker, key = redis_backend.client(), name_key("leaving-erin")
    holding = [index for index in checker.keys("*:names") if checker.sismember(index, key)]
    assert len(holding) == 1, holding  # the claim listed it
    _, sent = await sent_while(
        redis_backend, lambda: broker.release_name("leaving-erin", "c1"), "leaving-erin"
    )
    assert [words[0] for words in sent] == ["UNSUBSCRIBE", "EVALSHA"]
    assert not checker.sismember(holding[0], key)


async def test_names_claimed_together_share_one_subscribe(
    make_broker: MakeBroker, redis_backend: RedisBackend
) -> None:
    """Guards against one SUBSCRIBE per new connection, and against a claim that returns
    (and a welcome that goes out) before Redis confirmed its user channel: a direct
    message published then would be lost."""
    broker = await make_broker()
    names = [f"crowd{i}" for i in range(10)]

    async def claim_all() -> list[str]:
        claims = (broker.claim_name(name, f"c{i}", None) for i, name in enumerate(names))
        claimed = await asyncio.gather(*claims)
        assert redis_backend.server is not None
        checker = redis.asyncio.Redis.from_url(redis_backend.server.url)
        try:  # at once, no wait: each channel is subscribed by the time its claim returns
            found = await checker.pubsub_channels("*crowd*")
            channels = {raw.decode() if isinstance(raw, bytes) else raw for raw in found}
        finally:
            await checker.aclose()
        assert len(channels) == len(names), channels
        return claimed

    _, sent = await sent_while(redis_backend, claim_all, "crowd")
    subscribes = [words for words in sent if words[0] == "SUBSCRIBE"]
    assert len(subscribes) == 1, subscribes
    assert len(subscribes[0]) == 1 + len(names)


async def test_a_channel_dropped_before_its_batch_went_out_is_never_subscribed(
    redis_backend: RedisBackend,
) -> None:
    """Guards against an UNSUBSCRIBE sent before the SUBSCRIBE of its batch (the channel
    would stay subscribed with nobody wanting it), and a caller left waiting for it."""
    if redis_backend.server is None:
        pytest.skip("MONITOR needs a real redis-server")
    client = redis.asyncio.Redis.from_url(redis_backend.server.url)
    prefix = redis_backend.new_prefix()
    async with bare_subscriber(client, prefix + "probe", 0.2) as subscriber:

        async def wanted_then_dropped() -> None:
            waiting = asyncio.create_task(subscriber.subscribe(prefix + "gone"))
            await asyncio.sleep(0)  # asked for: in the next batch, not sent yet
            await subscriber.unsubscribe(prefix + "gone")
            async with asyncio.timeout(1.0):  # released at once, not after the ack timeout
                await waiting
            await subscriber.subscribe(prefix + "kept")  # the batch after: answered

        _, sent = await sent_while(redis_backend, wanted_then_dropped, prefix)
        assert [words[:2] for words in sent] == [["SUBSCRIBE", prefix + "kept"]]


async def test_a_channel_dropped_while_its_subscribe_is_answered_holds_up_no_other(
    redis_backend: RedisBackend,
) -> None:
    """Guards against the batch task waiting ACK_TIMEOUT (5 s) for the answer of a
    channel unsubscribed meanwhile (its caller gave up: a cancelled handshake): every
    channel asked for after it waited that long before its own SUBSCRIBE went out."""
    if redis_backend.server is None:
        pytest.skip("needs a real redis-server")
    proxy = await TcpProxy(redis_backend.server.port).start()
    client = redis.asyncio.Redis.from_url(proxy.redis_url)
    prefix = redis_backend.new_prefix()
    try:
        async with bare_subscriber(client, prefix + "probe", 5) as subscriber:
            proxy.subscriber_delay = 0.3  # each answer the subscription hears comes late
            watcher = redis.asyncio.Redis.from_url(redis_backend.server.url)
            async with watcher.monitor() as monitor:
                waiting = asyncio.create_task(subscriber.subscribe(prefix + "gone"))
                async with asyncio.timeout(5):  # its SUBSCRIBE is sent: the answer is on its way
                    while "SUBSCRIBE" not in (await monitor.next_command())["command"]:
                        pass
            await watcher.aclose()
            waiting.cancel()  # its caller gives up, and drops it
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await subscriber.unsubscribe(prefix + "gone")
            async with asyncio.timeout(2.0):  # one late answer (0.3 s), not the ack timeout
                await subscriber.subscribe(prefix + "next")
    finally:
        proxy.subscriber_delay = 0.0
        await proxy.close()
