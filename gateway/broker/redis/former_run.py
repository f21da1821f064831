"""What a former run of this node id left in Redis, cleared before this run adds its own.

A node that crashed and starts again under the same id (a pod name, `--node-id`) finds
its former run's entries still listed in its index. Each goes through the reaper before
this run's own first entry in that room or of that name, since the reaper's step for a
room removes everything the node id holds there. The index is read once, before this
run adds anything to it; what cannot be reached then (a Redis Cluster shard that is
down) waits, retried on every pass of the heartbeat's upkeep and at once by the first
join of that room or claim of that name.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.reaper import KINDS, Reaper

log = logging.getLogger(__name__)

HANDED_OVER = b"handover"  # the heartbeat key's value while a stopped node's grace runs


class FormerRun:
    """The leftovers of this node id's former run: read once, then cleared one by one."""

    def __init__(self, context: RedisContext, reaper: Reaper, timeout: float) -> None:
        self._redis = context.redis
        self._keys = context.keys
        self._node = context.node
        self._reaper = reaper
        self._timeout = timeout  # the presence timeout: the longest handover to wait for
        self._left: set[tuple[str, str]] | None = None  # (kind, value); None: not read yet
        self._lock = asyncio.Lock()  # one read or reap at a time

    @property
    def pending(self) -> bool:
        """Whether anything may be left (the index not read yet, or entries unreached)."""
        return self._left is None or bool(self._left)

    async def settle(self, kind: str, value: str) -> None:
        """Before this run's first entry in room or name `value`: drop the former run's.
        Raises (a Redis error) when it cannot be read or removed now."""
        if self._left is not None and (kind, value) not in self._left:
            return  # nothing of a former run there (almost always)
        async with self._lock:
            if self._left is None:
                self._left = await self._read()
            if (kind, value) in self._left:
                await self._reaper.reap_one(self._node, kind, value)
                self._left.discard((kind, value))

    async def settle_all(self) -> None:
        """Clear what can be reached now; raises when the index cannot be read."""
        async with self._lock:
            if self._left is None:
                self._left = await self._read()
            leaves = 0
            for kind, value in sorted(self._left):
                try:
                    leaves += await self._reaper.reap_one(self._node, kind, value)
                except REDIS_ERRORS as exc:
                    log.warning("cannot clear %s of a former run yet (%s)", value, exc)
                    continue
                self._left.discard((kind, value))
            if leaves:
                log.info("a former run of %s left: announced %d leaves", self._node, leaves)

    async def _read(self) -> set[tuple[str, str]]:
        """The former run's index, once its handover (if any) is over."""
        alive = self._keys.node(self._node) + ":alive"
        async with self._redis.pipeline(transaction=False) as pipe:  # the node's slot
            pipe.get(alive)
            pipe.pttl(alive)
            value, ttl = await pipe.execute()
        if value == HANDED_OVER and ttl > 0:
            # Reaping at once would announce leaves for its users who are still on their
            # way to another node. The wait is bounded by the presence timeout.
            wait = min(ttl / 1000, self._timeout)
            log.info("a former run of %s handed over; waiting %.1fs for it", self._node, wait)
            await asyncio.sleep(wait)
        start = self._keys.node(self._node)
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind in KINDS:
                pipe.smembers(f"{start}:{kind}")
            found = await pipe.execute()
        return {(kind, raw.decode()) for kind, members in zip(KINDS, found, strict=True)
                for raw in members}  # fmt: skip
