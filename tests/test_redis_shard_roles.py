"""A shard subscription is made on the shard's primary, never on a replica.

A replica takes SSUBSCRIBE, but hears the shard's messages only through its replication
link: a killed primary that came back during its own failover, was made a replica and
was subscribed to before its link was up missed what was published meanwhile, for good
(found by `make chaos` on a Redis Cluster). The node's `Subscriber` against real cluster
nodes: on a replica it counts the subscription as lost and never as live.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.broker.redis_cluster import probe_channel
from gateway.broker.redis_subscriber import Subscriber
from tooling.redis_cluster import RedisCluster

WAIT = 5.0


async def subscribe_on(
    port: int, ranges: list[tuple[int, int]]
) -> tuple[Subscriber, Redis, asyncio.Event]:
    """A sharded Subscriber on the node at `port`, probing the shard of `ranges`."""
    client = Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1.0)
    lost = asyncio.Event()

    async def nothing(_: frozenset[str]) -> None:
        return None

    subscriber = Subscriber(
        client,
        probe_channel("roles-probe", ranges),
        lambda _channel, _data: None,
        nothing,
        probe_interval=0.2,
        sharded=True,
        on_lost=lost.set,
    )
    subscriber.start()
    return subscriber, client, lost


async def test_a_shard_subscription_on_a_replica_is_lost_not_live(
    redis_cluster: RedisCluster,
) -> None:
    """Guards against a subscription counted live on a replica (messages lost)."""
    primary, ranges = next(iter(redis_cluster.primaries().items()))
    replica = redis_cluster.replica_of(primary)
    on_replica, replica_client, lost = await subscribe_on(replica, ranges)
    on_primary, primary_client, _ = await subscribe_on(primary, ranges)
    try:
        await asyncio.wait_for(lost.wait(), WAIT)
        await asyncio.wait_for(on_primary.wait_live(), WAIT)
        assert not on_replica.serving
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(on_replica.wait_live(), 1.0)
        assert not on_replica.serving, "live on a replica"
    finally:
        for subscriber, client in ((on_replica, replica_client), (on_primary, primary_client)):
            await subscriber.close()
            await client.aclose()
