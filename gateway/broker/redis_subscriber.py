"""The node's one Redis subscription: a single PubSub connection and its reader task.

redis-py's PubSub does not reliably come back after its connection dies, so on any
error this task throws the PubSub away, waits (capped, doubling backoff), makes a new
one, subscribes every channel again and then asks the broker to fill the gap of those
channels before it reads anything live. A probe published to the node's own channel
must come back in time; a subscription that stays connected but deaf is torn down the
same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot

from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.1  # seconds before the first reconnect
BACKOFF_CAP = 5.0  # the longest wait between reconnects
DEAF_AFTER = 3  # probe intervals with none back: the subscription is deaf


class Subscriber:
    """Keeps `channels` subscribed and hands every message to `on_message`."""

    def __init__(
        self,
        redis: Redis,
        probe_channel: str,
        on_message: Callable[[str, bytes], None],
        on_reconnect: Callable[[frozenset[str]], Awaitable[None]],
        *,
        probe_interval: float,
        sharded: bool = False,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
        # Sharded: SSUBSCRIBE on one shard of a Redis Cluster (a command per slot), and
        # an SUNSUBSCRIBE the server sends (its slot moved) is a lost subscription.
        self._sharded = sharded
        self._on_lost = on_lost
        self._probe_channel = probe_channel
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._probe_interval = probe_interval
        self._wanted: Counter[str] = Counter({probe_channel: 1})  # channel -> its users
        self._on_connection: set[str] = set()  # channels SUBSCRIBEd on the current PubSub
        # SUNSUBSCRIBEs this node sent whose replies are still to come: a reply to one of
        # ours is no sign that the server dropped the channel (its slot moved).
        self._unsubscribing: Counter[str] = Counter()
        self._lock = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE at a time, in order
        self._pubsub: PubSub | None = None
        self._live = asyncio.Event()  # set while subscribed and reading
        # Asked for a new subscription (deaf, or a SUBSCRIBE that failed): the reading
        # task ends the current one itself. Closing its connection from outside left
        # redis-py's reader on a connection the pool then gave to a command.
        self._renewal = asyncio.Event()
        self._renewal_reason = ""
        self._confirmed: dict[str, asyncio.Future[None]] = {}  # channel -> subscribe ack
        self._held: list[tuple[str, bytes]] | None = None  # live messages held during a gap fill
        self._probe_sent: dict[str, float] = {}  # probe token -> monotonic time sent
        self._heard = False  # a probe came back since the subscription went live
        self._last_probe_back = time.monotonic()
        self.probe_rtt: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def want(self, channel: str, users: int = 1) -> None:
        """Count `users` more of `channel` before `start`, which subscribes it."""
        self._wanted[channel] += users

    def start(self) -> None:
        """Start the reader and the probe."""
        self._tasks = [
            asyncio.create_task(self._run(), name="redis-subscriber"),
            asyncio.create_task(self._probe(), name="redis-probe"),
        ]

    async def close(self) -> None:
        """Stop both tasks and drop the connection."""
        self._live.clear()
        await stop_tasks(*self._tasks)
        await self._drop()

    @property
    def healthy(self) -> bool:
        """Subscribed, reading, and the last probe came back in time."""
        deadline = self._probe_interval * DEAF_AFTER
        return self._live.is_set() and time.monotonic() - self._last_probe_back < deadline

    @property
    def serving(self) -> bool:
        """Whether messages arrive: the subscription is healthy (one Redis, one shard)."""
        return self.healthy

    def shards_down(self) -> list[str]:
        """None of a Redis Cluster's shards are down here: there is one Redis."""
        return []

    async def wait_live(self) -> None:
        """Wait until the subscription is up."""
        await self._live.wait()

    async def subscribe(self, channel: str) -> None:
        """Want `channel`; returns once Redis confirmed it, or (while reconnecting) once it
        is listed for the next connection, whose gap fill covers the wait. Never raises."""
        self._wanted[channel] += 1
        async with self._lock:
            pubsub = self._pubsub
            if channel in self._on_connection or pubsub is None or pubsub.connection is None:
                waiting = self._confirmed.get(channel)
            else:
                (waiting,) = self._expect_confirmations([channel])
                try:
                    await (pubsub.ssubscribe if self._sharded else pubsub.subscribe)(channel)
                    self._on_connection.add(channel)
                except Exception as exc:
                    log.warning("SUBSCRIBE %s failed (%s); resubscribing everything", channel, exc)
                    self._renew(f"SUBSCRIBE {channel} failed")  # the next connection has it
                    return
        if waiting is not None:
            with contextlib.suppress(Exception):
                await self._confirmed_all([waiting])

    async def unsubscribe(self, channel: str) -> None:
        """One user less of `channel`; UNSUBSCRIBE once nobody wants it. Never raises."""
        self._wanted[channel] -= 1
        if self._wanted[channel] <= 0:
            del self._wanted[channel]
        async with self._lock:
            if channel in self._wanted or channel not in self._on_connection:
                return
            self._on_connection.discard(channel)
            self._confirmed.pop(channel, None)
            pubsub = self._pubsub
            if pubsub is not None and pubsub.connection is not None:
                try:
                    if self._sharded:
                        self._unsubscribing[channel] += 1
                        await pubsub.sunsubscribe(channel)
                    else:
                        await pubsub.unsubscribe(channel)
                except Exception as exc:
                    log.warning("UNSUBSCRIBE %s failed (%s); resubscribing the rest", channel, exc)
                    self._renew(f"UNSUBSCRIBE {channel} failed")

    def _expect_confirmations(self, channels: list[str]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        waiting = []
        for channel in channels:
            future = self._confirmed.get(channel)
            if future is None or future.done():
                future = self._confirmed[channel] = loop.create_future()
            waiting.append(future)
        return waiting

    @staticmethod
    async def _confirmed_all(waiting: list[asyncio.Future[None]]) -> None:
        async with asyncio.timeout(5.0):
            await asyncio.gather(*(asyncio.shield(f) for f in waiting))

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        was_live = False  # never connected yet: nothing was "lost"
        while True:
            self._renewal.clear()
            pubsub = self._redis.pubsub()
            self._pubsub = pubsub
            try:
                self._held = []  # live messages wait until the gap is filled
                async with self._lock:
                    channels = sorted(self._wanted)
                    waiting = self._expect_confirmations(channels)
                    if self._sharded:  # one SSUBSCRIBE per slot: a command may not span two
                        for group in by_slot(channels):
                            await pubsub.ssubscribe(*group)
                    else:
                        await pubsub.subscribe(*channels)  # sets the connection it reads
                    self._on_connection = set(channels)
                    self._unsubscribing.clear()
                reader = asyncio.create_task(self._read(pubsub), name="redis-reader")
                renewal = asyncio.create_task(self._renewal.wait(), name="redis-renewal")
                try:
                    await self._confirmed_all(waiting)
                    if self._sharded:
                        await self._on_a_primary()
                    await self._on_reconnect(frozenset(channels))
                    held, self._held = self._held, None
                    for channel, data in held:
                        self._on_message(channel, data)
                    self._last_probe_back = time.monotonic()
                    self._heard = False
                    self._live.set()
                    was_live = True
                    await asyncio.wait((reader, renewal), return_when=asyncio.FIRST_COMPLETED)
                    if not reader.done():
                        raise ConnectionError(self._renewal_reason)
                    reader.result()  # how the reading ended: the subscription is lost
                    raise ConnectionError("the subscription's reader stopped")
                finally:
                    await stop_tasks(reader, renewal)  # before its connection is dropped
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                what = "subscription lost" if was_live else "cannot subscribe yet"
                log.warning("redis %s (%s); reconnecting in %.1fs", what, exc, backoff)
                if self._on_lost is not None:
                    self._on_lost()
            if self._heard:  # it worked (a probe came back): the next loss starts afresh
                backoff = BACKOFF_FIRST  # (one deaf again and again backs off instead)
            self._heard = False
            self._live.clear()
            self._held = None
            self._on_connection = set()
            self._fail_confirmations()
            await self._drop()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_CAP)

    async def _on_a_primary(self) -> None:
        """Raise unless the shard's node is a primary. A replica takes SSUBSCRIBE too,
        but it hears a shard's messages only once its replication link is up: a killed
        primary that came back during its own failover and was made a replica missed
        what was published meanwhile (the chaos campaign lost messages so). A primary
        demoted later unsubscribes its shard channels itself, which is a loss too."""
        role = await self._redis.execute_command("ROLE")
        kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
        if kind != "master":
            raise ConnectionError(f"the shard's node is a {kind} now, not its primary")

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message: Any = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"].decode()
            if kind in ("subscribe", "ssubscribe"):
                future = self._confirmed.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
            elif kind == "sunsubscribe":
                if self._unsubscribing[channel] > 0:
                    self._unsubscribing[channel] -= 1  # the reply to ours
                    if not self._unsubscribing[channel]:
                        del self._unsubscribing[channel]
                elif channel in self._on_connection:
                    raise ConnectionError(f"the server unsubscribed {channel} (its slot moved)")
            elif kind in ("message", "smessage"):
                if channel == self._probe_channel:
                    self._probe_returned(message["data"])
                elif self._held is not None:
                    self._held.append((channel, message["data"]))
                else:
                    self._on_message(channel, message["data"])

    def _probe_returned(self, data: bytes) -> None:
        sent = self._probe_sent.pop(data.decode().removeprefix("q"), None)
        if sent is not None:
            self._heard = True
            self._last_probe_back = time.monotonic()
            self.probe_rtt = self._last_probe_back - sent

    async def _probe(self) -> None:
        """Publish a token to our own channel; a subscription that never hears it is deaf."""
        while True:
            await asyncio.sleep(self._probe_interval)
            if not self._live.is_set():
                continue
            if time.monotonic() - self._last_probe_back > self._probe_interval * DEAF_AFTER:
                log.warning("redis subscription is deaf: no probe came back; reconnecting")
                if self._on_lost is not None:
                    # On a cluster the shard may have failed over without a word: its
                    # old primary, now a replica, takes SSUBSCRIBE but hears nothing.
                    self._on_lost()
                self._renew("deaf: no probe came back")
                continue
            # Every probe still in the deaf window counts when it comes back: one that
            # takes longer than the interval is late, not lost (counting only the newest
            # made a slow path deaf for good: a resubscription storm on a loaded host).
            now = time.monotonic()
            window = self._probe_interval * DEAF_AFTER
            self._probe_sent = {t: at for t, at in self._probe_sent.items() if now - at < window}
            token = secrets.token_hex(6)
            self._probe_sent[token] = now
            command = "SPUBLISH" if self._sharded else "PUBLISH"
            with contextlib.suppress(Exception):  # a lost probe is what the check is for
                await self._redis.execute_command(command, self._probe_channel, "q" + token)

    def _renew(self, reason: str) -> None:
        """Have the reading task end this subscription and make a new one."""
        self._renewal_reason = reason
        self._renewal.set()

    def _fail_confirmations(self) -> None:
        for future in self._confirmed.values():
            if not future.done():
                future.set_exception(ConnectionError("redis subscription lost"))
                future.exception()  # retrieved: nobody may be waiting
        self._confirmed.clear()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await pubsub.aclose()


def by_slot(channels: list[str]) -> list[list[str]]:
    """`channels` grouped by their hash slot, in order."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())
