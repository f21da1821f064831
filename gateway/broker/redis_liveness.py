"""Node liveness in Redis: this node's heartbeat, and the reaper of dead nodes.

Each node refreshes `P node:{id}:alive` (it expires after the presence timeout) and
lists itself in `P nodes`. Every beat, a node looks for listed nodes whose key has
expired and reaps each: for every room in the dead node's index one atomic step (in
that room's slot) removes its presence there and publishes each leave once, then one
per name it held; a second reaper at the same time finds nothing left to announce.
What a reaper cannot reach (on a Redis Cluster, a shard that is down) stays in the
index, and the node stays in `P nodes` until all of it is gone: a later beat retries.
A node starting again under the same id reaps what its former run left the same way,
before its own first entry in each room or name: a room whose shard is down then waits
(retried each beat, or at once by the first join there), the others are served.

A node that stops on purpose hands over instead of deleting anything: it stops beating
and keeps its heartbeat key for the grace period more, marked `handover`. A user who
reconnects to another node meanwhile is present there too (refs > 1), so when the key
expires and a reaper removes the stopped node's entries, no leave is sent for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from gateway.broker import redis_scripts as scripts
from gateway.broker.redis_history import REDIS_ERRORS
from gateway.broker.redis_lua import Lua
from gateway.broker.redis_scripts import Keys
from gateway.config import Settings
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

HANDED_OVER = b"handover"  # the heartbeat key's value while a stopped node's grace runs
REAP_FLOOR = 0.5  # seconds: beat and reap at least once per grace period, not more often


class Liveness:
    """Heartbeat and reaper task of one node."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        on_lost: Callable[[bool], Awaitable[bool]],
        publish_command: str = "PUBLISH",
    ) -> None:
        self._redis: Any = redis  # replies are parsed by hand
        self._keys = keys
        self._node = settings.node_id
        self._timeout = settings.presence_timeout
        # A handed-over node is reaped by the first beat after its grace period: beat
        # once per grace period when that is shorter than a third of the timeout.
        grace_step = max(settings.grace_period, REAP_FLOOR)
        self._interval = max(min(settings.presence_timeout / 3, grace_step), 0.05)
        # A dead node's key expires within the timeout less one interval, so the next
        # beat of another node reaps it, at the latest, when the presence timeout ends.
        self._ttl = max(self._timeout - self._interval, 2 * self._interval)
        self._on_lost = on_lost  # re-register (True: we were reaped); whether all went back
        self._beaten = False  # listed in `P nodes` once: a later add means we were dropped
        self._was_reaped = False  # the reaped mark was seen, its re-registration not done
        self._unfinished: bool | None = None  # a re-registration to retry (its announce)
        # What a former run of this node id left: (kind, value) with kind "rooms" or
        # "names"; None until its index was read. Each goes before our own first entry.
        self._leftovers: set[tuple[str, str]] | None = None
        self._settling = asyncio.Lock()
        self._reap_room = Lua(redis, scripts.REAP_ROOM)
        self._reap_name = Lua(redis, scripts.REAP_NAME)
        self._pub = publish_command
        self._last_beat = 0.0
        self._task: asyncio.Task[None] | None = None
        self._handed_over = False  # then nothing may refresh the heartbeat any more

    @property
    def _alive(self) -> str:
        return self._keys.node(self._node) + ":alive"

    async def start(self) -> None:
        """Clear what a former run of this node id left, beat once, start beating."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self._settle_all()
        with contextlib.suppress(*REDIS_ERRORS):
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="redis-liveness")

    async def close(self) -> None:
        """Stop beating (the entries stay until a graceful handover or the reaper)."""
        task, self._task = self._task, None
        # Cancelled again until it ends: on Python 3.11 redis-py's asyncio.wait_for can
        # swallow a cancel that meets a command's completion, and the beat went on.
        await stop_tasks(task)

    async def hand_over(self, grace: float) -> None:
        """Stop beating and keep the heartbeat `grace` seconds more, marked handed over.

        Called once this node's connections are closed; a node that was closed without
        it (a crash, as the other nodes see it) is left to expire. Never raises.
        """
        if self._task is None:
            return  # not running: nothing to hand over
        self._handed_over = True
        await self.close()
        try:
            if grace > 0:
                px = max(round(grace * 1000), 1)
                await self._redis.set(self._alive, HANDED_OVER, px=px, xx=True)
            else:
                await self._redis.delete(self._alive)
        except REDIS_ERRORS as exc:
            log.warning(
                "could not hand over presence (%s); it expires after the presence timeout", exc
            )
            return
        log.info("presence handed over: the other nodes reap it in %.1fs", grace)

    async def _wait_for_handover(self) -> None:
        """Wait while a former run of this node id hands over (its grace is running).

        Reaping it at once would announce leaves for its users who are still on their
        way to another node. The wait is bounded by the presence timeout.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._alive)
            pipe.pttl(self._alive)
            value, ttl = await pipe.execute()
        if value == HANDED_OVER and ttl > 0:
            wait = min(ttl / 1000, self._timeout)
            log.info("a former run of %s handed over; waiting %.1fs for it", self._node, wait)
            await asyncio.sleep(wait)

    @property
    def healthy(self) -> bool:
        """The last heartbeat reached Redis within the presence timeout."""
        return time.monotonic() - self._last_beat < self._timeout

    async def beat(self) -> None:
        """Refresh this node's heartbeat key and its place in the node list.

        The heartbeat is what keeps the node alive; the list (another slot, on a
        cluster perhaps a shard that is down) is retried by the next beat.
        """
        if self._handed_over:
            return  # a resubscription while stopping must not undo the hand-over
        reaped_key = self._keys.node(self._node) + ":reaped"
        async with self._redis.pipeline(transaction=False) as pipe:  # the node's slot
            pipe.set(self._alive, "1", px=int(self._ttl * 1000))
            pipe.getdel(reaped_key)
            _, reaped = await pipe.execute()
        self._last_beat = time.monotonic()
        self._was_reaped = self._was_reaped or reaped is not None
        try:
            added = await self._redis.sadd(self._keys.nodes, self._node)
        except REDIS_ERRORS as exc:
            log.warning("cannot list this node in %s (%s); retrying", self._keys.nodes, exc)
            return
        if added and self._beaten:
            # Our entries are gone: reaped while we stalled (the others saw us leave),
            # or Redis lost its data (nobody saw anything). Put them back.
            log.warning(
                "this node's presence was lost (%s); re-registering",
                "reaped while alive" if self._was_reaped else "Redis lost it",
            )
            self._unfinished = bool(self._unfinished) or self._was_reaped
            self._was_reaped = False
        self._beaten = True
        if self._unfinished is not None and await self._on_lost(self._unfinished):
            self._unfinished = None

    async def reap(self) -> int:
        """Reap every listed node whose heartbeat expired; the number of leaves sent."""
        leaves = 0
        for raw in await self._redis.smembers(self._keys.nodes):
            node = raw.decode()
            if node == self._node:
                continue
            try:
                leaves += await self._reap_node(node)
            except REDIS_ERRORS as exc:
                log.warning("cannot reap node %s yet (%s); retrying", node, exc)
        return leaves

    async def _reap_node(self, node: str) -> int:
        """Remove what `node` held, if its heartbeat is gone; the leaves announced."""
        start = self._keys.node(node)
        if await self._redis.exists(start + ":alive"):
            return 0
        leaves, left = 0, 0
        for kind in ("rooms", "names"):
            for raw in await self._redis.smembers(f"{start}:{kind}"):
                try:
                    leaves += await self._reap_one(node, kind, raw.decode())
                except REDIS_ERRORS as exc:
                    log.warning("cannot reap %s of node %s yet (%s)", raw.decode(), node, exc)
                    left += 1
        if left:
            log.info("node %s is gone: announced %d leaves, %d entries left", node, leaves, left)
            return leaves  # it stays listed: the next beat reaps the rest
        await self._redis.delete(start + ":rooms", start + ":names")
        await self._redis.set(start + ":reaped", "1", ex=3600)  # in case it was alive
        await self._redis.srem(self._keys.nodes, node)
        if leaves:
            log.info("node %s is gone: announced %d leaves", node, leaves)
        return leaves

    async def _reap_one(self, node: str, kind: str, value: str) -> int:
        """Drop what `node` held in one room or of one name, then its index entry."""
        keys, leaves = self._keys, 0
        if kind == "rooms":
            leaves = int(
                await self._reap_room(
                    keys=keys.presence_keys(value),
                    args=[node, value, keys.room_channel(value), self._pub],
                )
            )
        else:
            await self._reap_name(keys=[keys.name(value)], args=[node])
        await self._redis.srem(f"{keys.node(node)}:{kind}", value)
        return leaves

    async def settle_room(self, room: str) -> None:
        """Before this run's first entry in `room`: drop the former run's there."""
        await self._settle("rooms", room)

    async def settle_name(self, key: str) -> None:
        """Before this run's first claim of name `key`: drop the former run's."""
        await self._settle("names", key)

    async def _settle(self, kind: str, value: str) -> None:
        if self._leftovers is not None and (kind, value) not in self._leftovers:
            return  # nothing of a former run there (almost always)
        async with self._settling:
            if self._leftovers is None:
                self._leftovers = await self._read_leftovers()
            if (kind, value) in self._leftovers:
                await self._reap_one(self._node, kind, value)
                self._leftovers.discard((kind, value))

    async def _settle_all(self) -> None:
        """Reap what the former run left, as far as Redis can be reached now."""
        async with self._settling:
            if self._leftovers is None:
                self._leftovers = await self._read_leftovers()
            leaves = 0
            for kind, value in sorted(self._leftovers):
                try:
                    leaves += await self._reap_one(self._node, kind, value)
                except REDIS_ERRORS as exc:
                    log.warning("cannot clear %s of a former run yet (%s)", value, exc)
                    continue
                self._leftovers.discard((kind, value))
            if leaves:
                log.info("a former run of %s left: announced %d leaves", self._node, leaves)

    async def _read_leftovers(self) -> set[tuple[str, str]]:
        """The former run's index, read before this run adds anything to it."""
        await self._wait_for_handover()
        start = self._keys.node(self._node)
        async with self._redis.pipeline(transaction=False) as pipe:  # the node's slot
            pipe.smembers(start + ":rooms")
            pipe.smembers(start + ":names")
            rooms, names = await pipe.execute()
        return {("rooms", r.decode()) for r in rooms} | {("names", n.decode()) for n in names}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
                await self.reap()
                if self._leftovers is None or self._leftovers:
                    await self._settle_all()
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)
