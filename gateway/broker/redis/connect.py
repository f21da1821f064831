"""How a node connects to Redis: a client that fails fast, and the node's subscription.

On one Redis the client is `connect`'s (its own pool serves the subscription too); on a
Redis Cluster it is `cluster.connect_cluster`'s, and the subscription is one
connection per shard (`ShardedSubscriber`), named in CLIENT LIST after the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.broker.redis.client import as_cluster
from gateway.broker.redis.cluster import ShardedSubscriber
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.script_batch import ScriptBatchingRedis
from gateway.broker.redis.subscriber import Subscriber
from gateway.redis_url import cluster_credentials

MAX_REDIS_CONNECTIONS = 100

NodeSubscriber = Subscriber | ShardedSubscriber  # the node's subscription, either kind


def connect(url: str) -> Redis:
    """A client that fails fast: no retries (a retried publish could run twice).

    Its pool waits (up to the socket timeout) for a free connection when all are busy:
    redis-py's default pool fails the call over its limit at once, and a burst of
    closing connections then left presences behind as if Redis were down. Its Lua
    scripts go out in batches (`ScriptBatchingRedis`).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_REDIS_CONNECTIONS,
        timeout=2.0,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    return ScriptBatchingRedis.from_pool(pool)


def client_name(text: str) -> str:
    """`text` as a CLIENT SETNAME accepts it (no spaces or newlines)."""
    return "".join(c if c.isascii() and c.isprintable() and c != " " else "_" for c in text)


def node_subscriber(
    context: RedisContext,
    url: str,
    on_message: Callable[[str, bytes], None],
    on_reconnect: Callable[[frozenset[str]], Awaitable[None]],
    *,
    probe_interval: float,
) -> NodeSubscriber:
    """The context's node's subscription: on a cluster one per shard primary, probed on
    channels of its own (one in each shard's slots); else one, on the client's own pool."""
    keys, node = context.keys, context.node
    if context.sharded:
        plain_id = node.replace("{", "(").replace("}", ")")  # its tag picks the slot
        return ShardedSubscriber(
            as_cluster(context.redis),
            f"{keys.prefix}ch:probe:{plain_id}",
            on_message,
            on_reconnect,
            probe_interval=probe_interval,
            client_name=client_name(f"{keys.prefix}subscriber:{node}"),
            credentials=cluster_credentials(url),
        )
    return Subscriber(
        context.redis,  # the client's own pool: a plain Redis
        keys.node_channel(node),
        on_message,
        on_reconnect,
        probe_interval=probe_interval,
    )


def redis_address(redis: object) -> str:
    """The "host:port" (or socket path) a plain Redis client connects to."""
    kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'redis')}:{kwargs.get('port', 6379)}"
