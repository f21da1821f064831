"""Node liveness in Redis: this node's heartbeat, and the reaper of dead nodes.

Each node refreshes `P node:{id}:alive` (it expires after the presence timeout) and
lists itself in `P nodes`. Every beat, a node looks for listed nodes whose key has
expired and runs the reap script on each: one atomic step that removes the dead
node's presence and names and publishes each leave once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.broker import redis_scripts as scripts
from gateway.broker.redis_scripts import Keys
from gateway.config import Settings

log = logging.getLogger(__name__)


class Liveness:
    """Heartbeat and reaper task of one node."""

    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self._redis: Any = redis  # replies are parsed by hand
        self._keys = keys
        self._node = settings.node_id
        self._timeout = settings.presence_timeout
        self._interval = max(settings.presence_timeout / 3, 0.05)
        self._reap = redis.register_script(scripts.REAP_NODE)
        self._last_beat = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Clear what a former run of this node id left, beat once, start beating."""
        with contextlib.suppress(RedisError, OSError):
            await self._reap_node(self._node, own=True)
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="redis-liveness")

    async def close(self) -> None:
        """Stop beating (the entries stay until a graceful handover or the reaper)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def healthy(self) -> bool:
        """The last heartbeat reached Redis within the presence timeout."""
        return time.monotonic() - self._last_beat < self._timeout

    async def beat(self) -> None:
        """Refresh this node's heartbeat key and its place in the node list."""
        alive = self._keys.node(self._node) + ":alive"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(alive, "1", px=int(self._timeout * 1000))
            pipe.sadd(self._keys.nodes, self._node)
            await pipe.execute()
        self._last_beat = time.monotonic()

    async def reap(self) -> int:
        """Reap every listed node whose heartbeat expired; the number of leaves sent."""
        leaves = 0
        for raw in await self._redis.smembers(self._keys.nodes):
            node = raw.decode()
            if node != self._node:
                leaves += await self._reap_node(node)
        return leaves

    async def _reap_node(self, node: str, *, own: bool = False) -> int:
        if own:  # our own leftovers: take us off the list first so the script runs
            await self._redis.delete(self._keys.node(node) + ":alive")
            await self._redis.sadd(self._keys.nodes, node)
        leaves = int(await self._reap(keys=[self._keys.nodes], args=[node, self._keys.prefix]))
        if leaves:
            log.info("node %s is gone: announced %d leaves", node, leaves)
        return leaves

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
                await self.reap()
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
