"""The Redis client as the broker's parts see it: the commands they send, typed.

redis-py's command methods are typed for either kind of reply (`bytes | str`, chosen at
run time by `decode_responses`), and its `execute_command` and pipelines not at all.
The broker's clients never decode, so a reply is bytes: `RedisClient` states that, with
just the commands the broker uses, on one Redis and on a Redis Cluster alike. Whatever
one command's reply is (`execute_command`, a Lua script, a pipeline's replies in order)
stays `Any`: its shape is the command's, and the caller parses it.

`as_client` is the one place that takes a redis-py client (`Redis`, `RedisCluster`, or
fakeredis's) for a `RedisClient`; `as_cluster` gives a sharded broker's client back as
the `RedisCluster` it is, for the few cluster-only calls (nodes, slots).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol, Self, cast, runtime_checkable

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub

Key = str | bytes  # a key or channel name, as given or as a reply named it
Value = str | bytes | int | float  # a value sent to Redis
Members = set[bytes]  # a set's members (`set` is a command in the classes below)


@runtime_checkable
class RedisPipeline(Protocol):
    """Commands queued on one connection (per shard on a cluster), sent by `execute`.

    A queued command answers the pipeline itself, not its reply: the replies come from
    `execute`, in the order the commands were queued.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Each queued command's reply, in order (exceptions in place, unless raised)."""
        ...

    def execute_command(self, *args: Any, **options: Any) -> object: ...

    def get(self, name: Key) -> object: ...

    def getdel(self, name: Key) -> object: ...

    def set(self, name: Key, value: Value, *, px: int | None = None) -> object: ...

    def pttl(self, name: Key) -> object: ...

    def hget(self, name: Key, key: str) -> object: ...

    def hgetall(self, name: Key) -> object: ...

    def hmget(self, name: Key, keys: list[str]) -> object: ...

    def lpush(self, name: Key, *values: Value) -> object: ...

    def ltrim(self, name: Key, start: int, end: int) -> object: ...

    def scard(self, name: Key) -> object: ...

    def sismember(self, name: Key, value: Value) -> object: ...

    def smembers(self, name: Key) -> object: ...

    def xlen(self, name: Key) -> object: ...

    def xrange(
        self, name: Key, min: str = "-", max: str = "+", count: int | None = None
    ) -> object: ...

    def xrevrange(
        self, name: Key, max: str = "+", min: str = "-", count: int | None = None
    ) -> object: ...


@runtime_checkable
class SubscriptionClient(Protocol):
    """A plain Redis's client as one subscription uses it (`subscriber.Subscriber`)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Any command; its reply as Redis (or redis-py's parser for it) gives it."""
        ...

    def pubsub(self) -> PubSub:
        """A PubSub on a connection of its own (on a cluster, `cluster.py` makes one
        plain client per shard for it)."""
        ...


@runtime_checkable
class RedisClient(SubscriptionClient, Protocol):
    """The commands the broker sends outside a pipeline, with their replies as bytes."""

    def pipeline(self, transaction: bool = True) -> RedisPipeline: ...

    async def aclose(self) -> None: ...

    async def delete(self, *names: Key) -> int: ...

    async def exists(self, *names: Key) -> int: ...

    async def get(self, name: Key) -> bytes | None: ...

    async def getdel(self, name: Key) -> bytes | None: ...

    async def set(
        self,
        name: Key,
        value: Value,
        *,
        ex: int | None = None,
        px: int | None = None,
        xx: bool = False,
    ) -> bool | None: ...

    async def hget(self, name: Key, key: str) -> bytes | None: ...

    async def hgetall(self, name: Key) -> dict[bytes, bytes]: ...

    async def hmget(self, name: Key, keys: list[str]) -> list[bytes | None]: ...

    async def lrange(self, name: Key, start: int, end: int) -> list[bytes]: ...

    async def sadd(self, name: Key, *values: Value) -> int: ...

    async def srem(self, name: Key, *values: Value) -> int: ...

    async def scard(self, name: Key) -> int: ...

    async def smembers(self, name: Key) -> Members: ...

    async def xlen(self, name: Key) -> int: ...

    def scan_iter(
        self, match: str | None = None, count: int | None = None, _type: str | None = None
    ) -> AsyncIterator[bytes]: ...


def as_client(redis: Redis | RedisCluster) -> RedisClient:
    """`redis` as the broker uses it. Made without `decode_responses` (every client of
    the broker is), its replies are bytes: redis-py's own types cannot say so."""
    return cast(RedisClient, redis)


def as_cluster(redis: RedisClient) -> RedisCluster:
    """A sharded broker's client (`RedisContext.sharded`) as the `RedisCluster` it is."""
    return cast(RedisCluster, redis)
