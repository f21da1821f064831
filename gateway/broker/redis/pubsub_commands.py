"""Pub/sub commands on one Redis, or their sharded forms on one shard of a Cluster.

On one Redis a subscription sends SUBSCRIBE and UNSUBSCRIBE. On a shard it sends
SSUBSCRIBE (one command per hash slot: a command spanning two slots is refused) and
SUNSUBSCRIBE, and it must be on the shard's primary (`require_primary`). What to send
when is the subscriber's business; this module only knows how each form is spelt.
"""

from __future__ import annotations

from redis.asyncio.client import PubSub
from redis.crc import key_slot

from gateway.broker.redis.client import SubscriptionClient


async def subscribe(pubsub: PubSub, channels: list[str], *, sharded: bool) -> None:
    """SUBSCRIBE `channels` in one command, or SSUBSCRIBE them in one per slot. The
    first one on a new PubSub sets the connection it reads."""
    if sharded:
        for group in by_slot(channels):
            await pubsub.ssubscribe(*group)
    else:
        await pubsub.subscribe(*channels)


async def unsubscribe(pubsub: PubSub, channel: str, *, sharded: bool) -> None:
    """UNSUBSCRIBE (or SUNSUBSCRIBE) `channel`."""
    await (pubsub.sunsubscribe if sharded else pubsub.unsubscribe)(channel)


async def require_primary(redis: SubscriptionClient) -> None:
    """Raise unless the shard's node is a primary. A replica takes SSUBSCRIBE too,
    but it hears a shard's messages only once its replication link is up: a killed
    primary that came back during its own failover and was made a replica missed
    what was published meanwhile (the chaos campaign lost messages so). A primary
    demoted later unsubscribes its shard channels itself, which is a loss too."""
    role = await redis.execute_command("ROLE")
    kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    if kind != "master":
        raise ConnectionError(f"the shard's node is a {kind} now, not its primary")


def by_slot(channels: list[str]) -> list[list[str]]:
    """`channels` grouped by their hash slot, in order."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())
