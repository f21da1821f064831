"""One partition's delivery (gateway/feed_delivery.py) across a lease it lost for a
while: driven as the feed drives it (its `valid_until`), on a real broker, posting to
the application of tests/backend_app.py over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.backend_http import BackendHttp
from gateway.broker.event_log import partition_of
from gateway.broker.memory import MemoryBroker
from gateway.broker.memory_events import room_stream
from gateway.broker.redis import RedisBroker
from gateway.feed_delivery import FIRST_RETRY, Delivery, Outcome, Target
from gateway.metrics import EventMetrics
from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import TEST_SETTINGS, BareListener, poll_until
from tests.plugins.redis import RedisBackend


@pytest.fixture
async def broker(
    broker_kind: str, redis_backend: RedisBackend, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """A broker of `broker_kind` storing events."""
    settings = replace(
        TEST_SETTINGS, events_url="http://127.0.0.1:9/events", backend_secret="s" * 32
    )
    started: Any
    if broker_kind == "memory":
        started = MemoryBroker(settings)
    elif broker_kind == "redis":
        settings, started = redis_backend.broker(settings, redis_backend.new_prefix())
    else:
        cluster = request.getfixturevalue("redis_cluster")
        prefix = redis_backend.new_prefix()
        started = RedisBroker(replace(settings, redis_url=cluster.url, redis_prefix=prefix))
    await started.start(BareListener())
    yield started
    await started.close()


def broker_stream(broker: Any, room: str) -> str:
    """The name of `room`'s event stream in `broker`."""
    if isinstance(broker, MemoryBroker):
        return room_stream(room)
    return str(broker.events.keys.room(room))


async def test_a_batch_held_through_a_lost_lease_is_read_again(
    broker: Any, backend_app: BackendApp
) -> None:
    """Guards against a node that could not renew its lease posting, once it has the
    lease back, the batch it was retrying before: another node may have posted and
    confirmed those events meanwhile (and later ones of the same rooms), so they would
    reach the application twice and out of order."""
    failing = [True]
    accepted: list[str] = []

    def events(request: Received) -> Reply:
        if failing[0]:
            return Reply(503)
        accepted.extend(e["text"] for e in request.json()["events"])
        return Reply(200, {})

    backend_app.answer("/events", handler=events)
    await broker.publish("lobby", "ada", "m0", origin="c1")
    await broker.publish("lobby", "ada", "m1", origin="c1")
    log = broker.events
    partition = partition_of(broker_stream(broker, "lobby"))
    assert [e.event["text"] for e in await log.pending(partition, 10)] == ["m0", "m1"]
    client = BackendHttp(backend_app.secret, 5.0)
    target = Target(backend_app.url("/events"), client, 20)
    metrics = EventMetrics(CollectorRegistry())
    delivery = Delivery(partition, log, target, metrics, Outcome(), time.monotonic() + 60)
    task = asyncio.create_task(delivery.run())
    try:
        await backend_app.wait_for("/events")  # m0 and m1 refused: held for a retry
        delivery.valid_until = time.monotonic()  # the feed could not renew the lease
        # The delivery notices at its next retry, FIRST_RETRY or 2 * FIRST_RETRY away.
        await asyncio.sleep(FIRST_RETRY * 4)
        tried = len(backend_app.received("/events"))
        # Another node took the partition over, posted m0 and m1 and confirmed them.
        await log.confirm(await log.pending(partition, 10))
        await broker.publish("lobby", "ada", "m2", origin="c1")
        failing[0] = False
        delivery.valid_until = time.monotonic() + 60  # the lease is this node's again
        await poll_until(lambda: "m2" in accepted, timeout=10)
        assert accepted == ["m2"]
        assert len(backend_app.received("/events")) == tried + 1
    finally:
        delivery.stop()
        await asyncio.wait_for(task, 5)
        await client.close()
