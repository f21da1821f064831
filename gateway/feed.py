"""The events feed of one node: which partitions it posts, and for how long.

The events wait in the broker (gateway/broker/event_log.py), split into `PARTITIONS`
partitions; the live nodes share them through expiring leases, so each event is posted
by one node at a time. Every `ttl / 3` seconds (ttl: the presence timeout, the time a
dead node takes to be noticed) a node renews the leases it holds, works out its share,
ceil(PARTITIONS / live nodes), gives one partition up when it holds more (its lease
released once the post under way is answered) and tries to take free ones while it
holds fewer. Each held partition has one `Delivery` task
(gateway/feed_delivery.py). A node that dies keeps its leases until they expire; then
another node takes them over and posts from the oldest unconfirmed event on.

The holder of partition 0 also sweeps every 5 minutes (`EventLog.sweep`): it finds
streams with events that no hint points at (a publisher stalled between its hint and
its write), so that nothing waits unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.backend_http import BackendHttp
from gateway.broker.event_log import PARTITIONS, EventLog
from gateway.errors import BrokerUnavailable
from gateway.feed_delivery import POST_TIMEOUT, Delivery, Outcome, Target
from gateway.metrics import EventMetrics
from gateway.server_log import SampledLog
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

SWEEP_EVERY = 300.0  # seconds between two sweeps by the holder of partition 0
STOP_WAIT = 2.0  # seconds a stopping node lets its posts under way finish
LEASE_MARGIN = 0.9  # a lease is trusted for this share of its ttl after it was taken


@dataclass
class _Held:
    """A partition this node holds: its delivery and the task running it."""

    delivery: Delivery
    task: asyncio.Task[None]
    waiting: int = 0  # its backlog when last measured
    oldest_ts: int | None = None
    leaving: bool = False  # given up: its lease is released once its last post ends


class Feed:
    """One node's share of the cluster's event delivery."""

    def __init__(
        self,
        events: EventLog,
        target: Target,
        metrics: EventMetrics,
        ttl: float,
        live_nodes: Callable[[], Awaitable[int]],
    ) -> None:
        self._events = events
        self._target = target
        self._metrics = metrics
        self._ttl = ttl
        self._interval = max(ttl / 3, 0.05)
        self._live_nodes = live_nodes
        self._nodes = 1  # the last count the broker gave
        self._held: dict[int, _Held] = {}  # partition -> its lease and task
        self._outcome = Outcome()
        self._leasing: asyncio.Task[None] | None = None
        self._last_sweep: float | None = None  # since partition 0 was taken
        self._sweeping: asyncio.Task[None] | None = None  # off the lease round: it may be long
        self._drop_log = SampledLog(log)
        metrics.oldest_age.set_function(self._oldest_age)
        metrics.partitions_held.set_function(lambda: len(self._held))
        events.on_dropped(self._dropped)

    @classmethod
    def create(
        cls,
        events: EventLog,
        url: str,
        backend: BackendHttp,
        batch: int,
        metrics: EventMetrics,
        ttl: float,
        live_nodes: Callable[[], Awaitable[int]],
    ) -> Feed:
        """A feed posting to `url` through `backend`, `batch` events at most per POST."""
        return cls(events, Target(url, backend, batch), metrics, ttl, live_nodes)

    async def start(self) -> None:
        """Start taking leases and delivering (returns at once)."""
        self._leasing = asyncio.create_task(self._lease_loop(), name="events-leases")

    async def stop(self) -> None:
        """Stop delivering: let the posts under way finish (briefly), then give every
        lease up so that another node takes the partitions over at once."""
        await stop_tasks(self._leasing, self._sweeping)
        self._leasing = self._sweeping = None
        await self._let_go(list(self._held), release=True)

    def status(self) -> dict[str, Any]:
        """The feed's state for /readyz: partitions held, events waiting there, the
        oldest one's age, the last failure."""
        failure = self._outcome.last_failure
        oldest = self._oldest_age()
        return {
            "partitions": sorted(self._held),
            "backlog": sum(held.waiting for held in self._held.values()),
            "oldest_age": round(oldest, 3) if self._held else None,
            "last_failure": None
            if failure is None
            else {"error": failure.error, "seconds_ago": round(time.time() - failure.at, 1)},
        }

    # ------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # the next tick retries; a loop that died would not
                log.exception("events: managing the partitions failed")
            await asyncio.sleep(self._interval)

    async def _tick(self) -> None:
        """Renew, rebalance, take, measure, sweep: one round."""
        for partition in list(self._held):
            if await self._lease(partition) is False:
                log.info("events: partition %d was taken over by another node", partition)
                await self._let_go([partition], release=False)
        done = [p for p, held in self._held.items() if held.leaving and held.task.done()]
        await self._let_go(done, release=True)
        with contextlib.suppress(BrokerUnavailable):  # else the last count stands
            self._nodes = max(1, await self._live_nodes())
        share = math.ceil(PARTITIONS / self._nodes)
        active = [p for p, held in self._held.items() if not held.leaving]
        if len(active) > share and len(active) == len(self._held):  # one at a time
            self._leave(max(active))
            active.remove(max(active))
        free = [p for p in range(PARTITIONS) if p not in self._held]
        random.shuffle(free)  # nodes starting together do not all ask for the same
        for partition in free:
            if len(active) >= share:
                break
            if await self._lease(partition):
                active.append(partition)
        await self._measure()
        await self._sweep()

    async def _lease(self, partition: int) -> bool | None:
        """Take or renew `partition`'s lease (starting its delivery when new); None when
        the broker could not say."""
        asked = time.monotonic()
        try:
            granted = await self._events.lease(partition, self._ttl)
        except BrokerUnavailable:
            return None
        if granted:
            valid_until = asked + self._ttl * LEASE_MARGIN
            held = self._held.get(partition)
            if held is not None:
                held.delivery.valid_until = valid_until
            else:
                self._hold(partition, valid_until)
        return granted

    def _hold(self, partition: int, valid_until: float) -> None:
        delivery = Delivery(
            partition, self._events, self._target, self._metrics, self._outcome, valid_until
        )
        task = asyncio.create_task(delivery.run(), name=f"events-partition-{partition}")
        self._held[partition] = _Held(delivery, task)
        if partition == 0:
            self._last_sweep = time.monotonic()

    def _leave(self, partition: int) -> None:
        """Give `partition` up to the other nodes (this node holds more than its share):
        its delivery ends after the post under way, however long the application takes
        to answer it (up to POST_TIMEOUT), and a later round releases the lease. Cut
        short, that post's batch would be posted again by the next holder while the
        application was storing it: twice although it answered 2xx. The lease is still
        renewed meanwhile."""
        held = self._held[partition]
        held.leaving = True
        held.delivery.stop()

    async def _let_go(self, partitions: list[int], *, release: bool) -> None:
        """End the deliveries of `partitions` (their posts under way may finish), then
        release their leases when `release`. Each stays in the table until then: a stop
        that cuts this short finds it there and ends it."""
        gone = [(p, self._held[p]) for p in partitions if p in self._held]
        for _, held in gone:
            held.delivery.stop()
        tasks = [held.task for _, held in gone]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=min(STOP_WAIT, POST_TIMEOUT))
            await stop_tasks(*late)
        for partition, held in gone:
            task = held.task
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("events: partition %d's delivery failed", partition,
                          exc_info=task.exception())  # fmt: skip
            if release:
                try:
                    await self._events.release(partition)
                except BrokerUnavailable as exc:
                    log.warning("events: cannot release partition %d (%s); it expires",
                                partition, exc)  # fmt: skip
            self._held.pop(partition, None)
        self._update_backlog()

    async def _measure(self) -> None:
        """Read each held partition's backlog for the metrics and /readyz."""
        for partition, held in list(self._held.items()):
            try:
                backlog = await self._events.backlog(partition)
            except BrokerUnavailable:
                continue
            held.waiting, held.oldest_ts = backlog.count, backlog.oldest_ts
        self._update_backlog()

    def _update_backlog(self) -> None:
        self._metrics.backlog.set(sum(held.waiting for held in self._held.values()))

    def _oldest_age(self) -> float:
        """Seconds since the oldest waiting event of the held partitions (0: none)."""
        stamps = [h.oldest_ts for h in self._held.values() if h.oldest_ts is not None]
        return max(0.0, time.time() - min(stamps) / 1000) if stamps else 0.0

    async def _sweep(self) -> None:
        """Start a sweep when one is due, as a task of its own: on a large keyspace it
        may take longer than a lease's slack, and the lease round must not wait for it."""
        if 0 not in self._held or self._last_sweep is None:
            return
        if time.monotonic() - self._last_sweep < SWEEP_EVERY:
            return
        if self._sweeping is not None and not self._sweeping.done():
            return
        self._last_sweep = time.monotonic()
        self._sweeping = asyncio.create_task(self._run_sweep(), name="events-sweep")

    async def _run_sweep(self) -> None:
        try:
            await self._events.sweep()
        except BrokerUnavailable as exc:
            log.warning("events: the sweep for unhinted streams failed (%s)", exc)

    def _dropped(self, stream: str, count: int) -> None:
        """The broker's report of events `--events-backlog` dropped from `stream`:
        counted, and logged at most once every 10 s (at the bound every write drops
        one: a line per message of a busy room would flood the log for as long as
        the application is away)."""
        self._metrics.dropped.inc(count)
        self._drop_log.log(
            logging.WARNING,
            "dropped",
            "events: dropped the %d oldest events of %s, over --events-backlog unposted",
            count,
            stream,
        )
