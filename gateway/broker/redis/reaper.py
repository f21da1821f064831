"""The reaper of dead nodes: what a node whose heartbeat expired held in Redis goes.

Each node lists itself in `P nodes` and indexes where it holds anything (`P node:{N}:
rooms`, `:names`). For a listed node whose `P node:{N}:alive` is gone, every room in
its index is one atomic step (in that room's slot) that removes the node's presence
there and publishes each leave once, and every name one step more; a second reaper at
the same time finds nothing left to announce. What cannot be reached (on a Redis
Cluster, a shard that is down) stays in the index and the node stays listed, so the
next pass retries it. Each pass that removed anything leaves the mark `P node:{N}:
reaped`: a node that was only stalled, or that started again while the pass ran, sees
it and puts its entries back. A claim that takes a name from a node whose heartbeat
expired, before any reaper came by, leaves the same mark (`names`).
"""

from __future__ import annotations

import logging

from gateway.broker.event_bodies import now_ms
from gateway.broker.redis import scripts
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.event_log import EventScript, RedisEventLog
from gateway.broker.redis.event_scripts import open_event
from gateway.broker.redis.lua import Lua

log = logging.getLogger(__name__)

REAPED_MARK_SECONDS = 3600  # how long the mark waits for a node that was only stalled
KINDS = ("rooms", "names")  # the two indexes of a node


class Reaper:
    """Removes dead nodes' entries; shared by the heartbeat and a node's own restart."""

    def __init__(self, context: RedisContext, events: RedisEventLog | None = None) -> None:
        redis = self._redis = context.redis
        self._keys = context.keys
        self._pub = context.publish
        self._events = events  # each leave stored for the application, with events on
        self._reap_room = EventScript(redis, scripts.REAP_ROOM, events)
        self._reap_name = Lua(redis, scripts.REAP_NAME)
        self.nodes_reaped = 0  # dead nodes removed from the list by this reaper

    async def reap_all(self, alive: str) -> int:
        """Reap every listed node but `alive` whose heartbeat expired; the leaves sent.
        Raises when the node list cannot be read; a node that cannot be is skipped."""
        leaves = 0
        for raw in await self._redis.smembers(self._keys.nodes):
            node = raw.decode()
            if node == alive:
                continue
            try:
                leaves += await self._reap_node(node)
            except REDIS_ERRORS as exc:
                log.warning("cannot reap node %s yet (%s); retrying", node, exc)
        return leaves

    async def _reap_node(self, node: str) -> int:
        start = self._keys.node(node)
        if await self._redis.exists(start + ":alive"):
            return 0
        leaves, left, done = 0, 0, 0
        for kind in KINDS:
            for raw in await self._redis.smembers(f"{start}:{kind}"):
                try:
                    leaves += await self.reap_one(node, kind, raw.decode())
                    done += 1
                except REDIS_ERRORS as exc:
                    log.warning("cannot reap %s of node %s yet (%s)", raw.decode(), node, exc)
                    left += 1
        # The mark after the removals (a node that started meanwhile sees it) and before
        # the node leaves the list (a node that finds itself dropped reads it then).
        if done:
            await self.mark(node)
        if left:
            log.info("node %s is gone: announced %d leaves, %d entries left", node, leaves, left)
            return leaves  # it stays listed: the next pass reaps the rest
        await self._redis.srem(self._keys.nodes, node)
        self.nodes_reaped += 1
        if leaves:
            log.info("node %s is gone: announced %d leaves", node, leaves)
        return leaves

    async def mark(self, node: str) -> None:
        """Leave the mark that tells `node`, if it was only stalled, that the others
        took what it held: it puts back what it still can when it runs again."""
        await self._redis.set(self._keys.node(node) + ":reaped", "1", ex=REAPED_MARK_SECONDS)

    async def reap_one(self, node: str, kind: str, value: str) -> int:
        """Drop what `node` held in one room or of one name, then that index entry; the
        leaves announced."""
        keys, leaves = self._keys, 0
        if kind == "rooms":
            event = None
            if self._events is not None:
                head = {"type": "presence", "ts": now_ms(), "room": value, "event": "leave"}
                leave = [open_event(head), self._events.new_id()]  # ids: that, .1, .2 ...
                event = (self._events.keys.room(value), leave)
            args = [node, value, keys.room_channel(value), self._pub]
            leaves = int(await self._reap_room(keys.presence_keys(value), args, event))
        else:
            await self._reap_name(keys=[keys.name(value)], args=[node])
        await self._redis.srem(f"{keys.node(node)}:{kind}", value)
        return leaves
