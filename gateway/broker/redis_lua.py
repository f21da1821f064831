"""A Lua script run with EVALSHA through the client's plain `execute_command`.

redis-py's own `Script` goes through `evalsha` and a few layers more per call; at one
call per message and two per connection that showed in the profile. The script is
loaded on first use and again whenever Redis says it does not know it (after a
restart or SCRIPT FLUSH).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError


class Lua:
    """One script, callable as `await script(keys=[...], args=[...])`."""

    __slots__ = ("_redis", "_sha", "_source")

    def __init__(self, redis: Any, source: str) -> None:
        self._redis = redis
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return await self._redis.execute_command(*command)
        except NoScriptError:
            await self._redis.execute_command("SCRIPT LOAD", self._source)  # every primary
            return await self._redis.execute_command(*command)
