"""Node liveness in Redis: this node's heartbeat, and its upkeep.

Each node refreshes `P node:{id}:alive` (it expires after the presence timeout) and
lists itself in `P nodes`, in a task that does nothing else, so that slow upkeep can
never let the heartbeat lapse. A second task, at the same interval, puts the node's
entries back when they were lost (`reaper`'s mark says we were reaped while we
stalled; being listed anew says Redis lost its data), reaps the nodes that died, and
clears what a former run of this node id left (`former_run`). On a Redis
Cluster the node list may live on a shard that is down: the heartbeat, which is the
node's own key, goes on, and the list is retried.

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

import orjson

from gateway.broker.base import NodeStatus
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.event_log import RedisEventLog
from gateway.broker.redis.former_run import HANDED_OVER, FormerRun
from gateway.broker.redis.reaper import Reaper
from gateway.config import Settings
from gateway.errors import BrokerUnavailable
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

REAP_FLOOR = 0.5  # seconds: beat and reap at least once per grace period, not more often


class Liveness:
    """Heartbeat and upkeep tasks of one node."""

    def __init__(
        self,
        context: RedisContext,
        settings: Settings,
        on_lost: Callable[[bool], Awaitable[bool]],
        events: RedisEventLog | None = None,
    ) -> None:
        self._redis = context.redis
        self._keys = context.keys
        self._node = context.node
        self._timeout = settings.presence_timeout
        # A handed-over node is reaped by the first beat after its grace period: beat
        # once per grace period when that is shorter than a third of the timeout.
        grace_step = max(settings.grace_period, REAP_FLOOR)
        self._interval = max(min(settings.presence_timeout / 3, grace_step), 0.05)
        # A dead node's key expires within the timeout less one interval, so the next
        # beat of another node reaps it, at the latest, when the presence timeout ends.
        self._ttl = max(self._timeout - self._interval, 2 * self._interval)
        self._on_lost = on_lost  # re-register (True: announce joins); whether all went back
        self._reaper = Reaper(context, events)
        self._former = FormerRun(context, self._reaper, self._timeout)
        self._alive_once = False  # the heartbeat was written by this run
        self._listed_once = False  # this run listed itself in `P nodes`
        self._lost: bool | None = None  # a re-registration owed: whether to announce joins
        self._restoring = asyncio.Lock()  # one re-registration at a time
        self._last_beat = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._handed_over = False  # then nothing may refresh the heartbeat any more
        self.status: Callable[[], NodeStatus] | None = None  # what each beat carries

    @property
    def _alive(self) -> str:
        return self._keys.node(self._node) + ":alive"

    @property
    def _status(self) -> str:
        return self._keys.node(self._node) + ":status"

    async def start(self) -> bool:
        """Clear what a former run of this node id left, beat once, start beating;
        returns whether that first beat reached Redis."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self._former.settle_all()
        reached = True
        try:
            await self.beat()
        except REDIS_ERRORS:
            reached = False
        self._tasks = [
            asyncio.create_task(self._beating(), name="redis-heartbeat"),
            asyncio.create_task(self._upkeep(), name="redis-upkeep"),
        ]
        return reached

    async def close(self) -> None:
        """Stop beating (the entries stay until a graceful handover or the reaper)."""
        tasks, self._tasks = self._tasks, []
        # Cancelled again until they end: on Python 3.11 redis-py's asyncio.wait_for can
        # swallow a cancel that meets a command's completion, and the beat went on.
        await stop_tasks(*tasks)

    async def hand_over(self, grace: float) -> None:
        """Stop beating and keep the heartbeat `grace` seconds more, marked handed over.

        Called once this node's connections are closed; a node that was closed without
        it (a crash, as the other nodes see it) is left to expire. Never raises.
        """
        if not self._tasks:
            return  # not running: nothing to hand over
        self._handed_over = True
        await self.close()
        try:
            await self._redis.delete(self._status)  # gone from the console at once
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

    @property
    def healthy(self) -> bool:
        """The last heartbeat reached Redis within the presence timeout."""
        return time.monotonic() - self._last_beat < self._timeout

    async def settle_room(self, room: str) -> None:
        """Before this run's first entry in `room`: drop the former run's (may raise)."""
        await self._former.settle("rooms", room)

    async def took_from(self, node: str) -> None:
        """Something `node` held was taken because its heartbeat expired: mark it
        reaped, so that a node that was only frozen learns it when it wakes. Never
        raises (the claim it follows stands; the kick it published may still tell)."""
        try:
            await self._reaper.mark(node)
        except REDIS_ERRORS as exc:
            log.warning("cannot mark node %s as reaped (%s)", node, exc)

    async def settle_name(self, key: str) -> None:
        """Before this run's first claim of name `key`: drop the former run's."""
        await self._former.settle("names", key)

    async def beat(self) -> None:
        """Refresh this node's heartbeat key and its place in the node list; note
        whether its entries were lost meanwhile. Raises when the heartbeat cannot be
        written; the list (another slot) is retried by the next beat."""
        if self._handed_over:
            return  # a resubscription while stopping must not undo the hand-over
        mark = self._keys.node(self._node) + ":reaped"
        async with self._redis.pipeline(transaction=False) as pipe:  # the node's slot
            pipe.set(self._alive, "1", px=int(self._ttl * 1000))
            pipe.getdel(mark)
            if self.status is not None:  # the console's view of this node, as fresh
                pipe.set(self._status, orjson.dumps(self.status()), px=int(self._ttl * 1000))
            reaped = (await pipe.execute())[1]
        self._last_beat = time.monotonic()
        if reaped is not None and self._alive_once:
            # Reaped while we stalled (or while we started): the others saw us leave.
            log.warning("this node was reaped while alive; re-registering")
            self._lost = True
        self._alive_once = True
        try:
            added = await self._redis.sadd(self._keys.nodes, self._node)
        except REDIS_ERRORS as exc:
            log.warning("cannot list this node in %s (%s); retrying", self._keys.nodes, exc)
            return
        if added and self._listed_once:
            # Dropped from the list: reaped, or Redis lost its data (nobody saw anything).
            # A reaper leaves its mark before it drops the node, so a mark that came
            # after the one read above is seen now: the others saw us leave.
            reaped_now = await self._redis.getdel(mark) is not None
            log.warning(
                "this node's presence was lost (%s); re-registering",
                "reaped while alive" if reaped_now else "Redis lost it",
            )
            self._lost = bool(self._lost) or reaped_now
        self._listed_once = True

    async def restore(self) -> None:
        """Put lost entries back now, if a beat found them lost (retried while some
        could not be). Raises nothing: what is left waits for the next pass."""
        async with self._restoring:
            announce = self._lost
            if announce is None:
                return
            try:
                complete = await self._on_lost(announce)
            except (*REDIS_ERRORS, BrokerUnavailable) as exc:
                log.warning("re-registering failed (%s); retrying", exc)
                return
            if complete and self._lost == announce:
                self._lost = None  # else lost again meanwhile: the next pass

    @property
    def nodes_reaped(self) -> int:
        """Dead nodes this node's upkeep removed from the list since it started."""
        return self._reaper.nodes_reaped

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:  # never let the heartbeat stop: the others would reap us
                log.exception("heartbeat failed")

    async def _upkeep(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.restore()
                try:
                    await self._reaper.reap_all(self._node)
                except REDIS_ERRORS as exc:
                    log.warning("cannot look for dead nodes: %s", exc)
                if self._former.pending:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await self._former.settle_all()
            except Exception:  # the next pass retries; an upkeep that died would not
                log.exception("upkeep failed")
