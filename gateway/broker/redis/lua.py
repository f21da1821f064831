"""A Lua script run with EVALSHA through the client's plain `execute_command`.

redis-py's own `Script` goes through `evalsha` and a few layers more per call; at one
call per message and two per connection that showed in the profile. The script is
sent whole (EVAL, which also caches it there) whenever the Redis that runs it does not
know it yet: on first use, after a restart or SCRIPT FLUSH, and on a Redis Cluster on
each primary in turn (SCRIPT LOAD would go to every primary and fail while one is
down, taking the healthy shards' calls with it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from gateway.broker.redis.client import RedisClient


class Lua:
    """One script, callable as `await script(keys=[...], args=[...])`."""

    __slots__ = ("_redis", "_sha", "_source")

    def __init__(self, redis: RedisClient, source: str) -> None:
        self._redis = redis
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    def commands(self, keys: Sequence[Any], args: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """The command that runs the script by its SHA1, then the one that sends it whole:
        for a caller that sends it in a pipeline and tries the second on NOSCRIPT."""
        yield ("EVALSHA", self._sha, len(keys), *keys, *args)
        yield ("EVAL", self._source, len(keys), *keys, *args)

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return await self._redis.execute_command(*command)
        except NoScriptError:
            return await self._redis.execute_command("EVAL", self._source, len(keys), *keys, *args)
