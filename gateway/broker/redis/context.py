"""What every part of the Redis broker shares: the client, the keys, the node, the verb.

The broker builds one `RedisContext` and hands it to each part, instead of the same
client, key layout, node id and publish command passed one by one to every constructor.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.broker.redis.client import RedisClient
from gateway.broker.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class RedisContext:
    """The shared facts of one node's Redis broker."""

    redis: RedisClient  # the commands the parts send (client.py)
    keys: Keys
    node: str  # this node's id
    publish: str  # PUBLISH, or SPUBLISH on a Redis Cluster (sharded pub/sub)
    sharded: bool  # a Redis Cluster: one subscription per shard, hash-tagged hints

    @classmethod
    def for_url(cls, redis: RedisClient, prefix: str, node: str, *, sharded: bool) -> RedisContext:
        """The context for a client of a plain Redis or (sharded) of a Redis Cluster."""
        return cls(redis, Keys(prefix), node, "SPUBLISH" if sharded else "PUBLISH", sharded)
