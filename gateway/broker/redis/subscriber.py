"""The node's one Redis subscription: a single PubSub connection and its reader task.

What to do when is decided by `subscription.Subscription`, a state machine without I/O
(docs/redis.md, "The subscription as a state machine"); this module only feeds it what
happens and carries out what it asks. redis-py's PubSub does not reliably come back
after its connection dies, so on any Redis error the reading task throws the PubSub
away, waits (capped, doubling backoff), makes a new one, subscribes every channel again
and has the broker fill the gap of those channels before it reads anything live. A
probe published to the node's own channel must come back in time; a subscription that
stays connected but deaf is torn down the same way, by the reading task.

Only Redis's own errors (and the broker's `BrokerUnavailable` from a gap fill) count as
a lost subscription; anything else is a bug, logged as one, and ends the subscription.
Beside it: the waits for a SUBSCRIBE's ack (subscribe_acks.py), the channels sent in
one SUBSCRIBE (subscribe_batch.py), each command on one Redis or a shard (pubsub_commands.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub

from gateway.broker.redis import pubsub_commands as commands
from gateway.broker.redis import subscription_actions as act
from gateway.broker.redis.client import SubscriptionClient
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.kinds import Kind
from gateway.broker.redis.subscribe_acks import ACK_TIMEOUT, Confirmations
from gateway.broker.redis.subscribe_batch import SubscribeBatch
from gateway.broker.redis.subscription import Subscription
from gateway.errors import BrokerUnavailable
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

LOST_ERRORS = (*REDIS_ERRORS, BrokerUnavailable)  # a subscription lost, not a bug


class Subscriber:
    """Keeps `channels` subscribed and hands every message to `on_message`."""

    def __init__(
        self,
        redis: SubscriptionClient,
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
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._probe_interval = probe_interval
        self._machine = Subscription(probe_channel, probe_interval, time.monotonic, sharded=sharded)
        self._lock = asyncio.Lock()  # one SUBSCRIBE/UNSUBSCRIBE at a time, in order
        self._pubsub: PubSub | None = None
        self._live = asyncio.Event()  # set while subscribed and reading
        self._fill: act.FillGap | None = None  # asked for by the machine, for `_run`
        self._acked = asyncio.Event()  # set with `_fill`
        self._renewal = asyncio.Event()  # the machine asked `_run` to end the connection
        self._renewal_reason = ""
        self._confirmed = Confirmations()  # the callers' waits for their SUBSCRIBE
        self._batch = SubscribeBatch(self._subscribe_batch, "redis-subscribe-batch")
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def probe_rtt(self) -> float | None:
        """The last probe's round trip, in seconds."""
        return self._machine.probe_rtt

    def want(self, channel: str, users: int = 1) -> None:
        """Count `users` more of `channel` before `start`, which subscribes it."""
        self._machine.want(channel, users)

    def start(self) -> None:
        """Start the reader and the probe."""
        self._tasks = [
            asyncio.create_task(self._run(), name="redis-subscriber"),
            asyncio.create_task(self._probe(), name="redis-probe"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._crashed)

    async def close(self) -> None:
        """Stop both tasks and drop the connection."""
        self._live.clear()
        await self._batch.close()
        await stop_tasks(*self._tasks)
        self._carry_out(self._machine.close())  # MarkUnready; its Drop is this:
        self._fail_confirmations()
        await self._drop()

    @property
    def healthy(self) -> bool:
        """Subscribed, reading, and the last probe came back in time."""
        return self._live.is_set() and self._machine.healthy()

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
        is listed for the next connection, whose gap fill covers the wait. Never raises.
        The channels asked for together go out in one SUBSCRIBE (`SubscribeBatch`)."""
        waiting: asyncio.Future[None] | None
        if self._machine.subscribe(channel):
            (waiting,) = self._confirmed.expect([channel])
            self._batch.add(channel)
        else:
            waiting = self._confirmed.pending(channel)
        if waiting is not None:
            await self._confirmed.wait([waiting])

    async def _subscribe_batch(self, channels: list[str]) -> None:
        """SUBSCRIBE `channels` in one command (one per slot when sharded) and wait for
        their confirmations; a failure renews the connection, which subscribes them."""
        async with self._lock:
            pubsub = self._pubsub
            named = " ".join(channels[:3]) + (" ..." if len(channels) > 3 else "")
            if pubsub is None or pubsub.connection is None:
                # Dropped meanwhile: the next connection subscribes them (a no-op while
                # backing off; with a connection, that one goes without them: renewed).
                self._carry_out(self._machine.command_failed(f"SUBSCRIBE {named} missed"))
                return
            waiting = self._confirmed.pending_of(channels)
            try:
                await commands.subscribe(pubsub, channels, sharded=self._sharded)
            except REDIS_ERRORS as exc:
                log.warning("SUBSCRIBE %s failed (%s); resubscribing everything", named, exc)
                self._carry_out(self._machine.command_failed(f"SUBSCRIBE {named} failed"))
                return
        await self._confirmed.wait(waiting)  # the next batch gathers meanwhile

    async def unsubscribe(self, channel: str) -> None:
        """One user less of `channel`; UNSUBSCRIBE once nobody wants it. Never raises."""
        actions = self._machine.unsubscribe(channel)
        self._carry_out(actions)  # a gap fill, if it waited for this channel's ack only
        if not any(isinstance(action, act.UnsubscribeChannel) for action in actions):
            return
        if self._batch.discard(channel):  # never sent: nothing to undo
            self._confirmed.confirm(channel)  # its callers are gone (it had no other)
            return
        async with self._lock:
            self._confirmed.forget(channel)
            pubsub = self._pubsub
            if pubsub is None or pubsub.connection is None:
                return
            try:
                await commands.unsubscribe(pubsub, channel, sharded=self._sharded)
            except REDIS_ERRORS as exc:
                log.warning("UNSUBSCRIBE %s failed (%s); resubscribing the rest", channel, exc)
                self._carry_out(self._machine.command_failed(f"UNSUBSCRIBE {channel} failed"))

    def _carry_out(self, actions: list[act.Action]) -> None:
        """The actions any task carries out at once; those of the connection's life
        (Connect, FillGap, Drop, Wait) are `_run`'s, which waits for them."""
        for action in actions:
            if isinstance(action, act.Deliver):
                self._on_message(action.channel, action.data)
            elif isinstance(action, act.MarkLive):
                self._live.set()
            elif isinstance(action, act.MarkUnready):
                self._live.clear()
            elif isinstance(action, act.Lost):
                if self._on_lost is not None:
                    self._on_lost()
            elif isinstance(action, act.Renew):
                if action.reason.startswith("deaf"):
                    log.warning("redis subscription is deaf: no probe came back; reconnecting")
                self._renewal_reason = action.reason
                self._renewal.set()
            elif isinstance(action, act.FillGap):
                self._fill = action
                self._acked.set()

    async def _run(self) -> None:
        """The reading side: each connection from its SUBSCRIBE to its drop."""
        actions = self._machine.start()
        while True:
            (connect,) = actions
            assert isinstance(connect, act.Connect)
            reason = await self._connection(list(connect.channels))
            after = self._machine.lost(reason)
            self._carry_out(after)
            (wait,) = [a for a in after if isinstance(a, act.Wait)]
            what = "subscription lost" if wait.was_live else "cannot subscribe yet"
            log.warning("redis %s (%s); reconnecting in %.1fs", what, reason, wait.delay)
            self._fail_confirmations()
            await self._drop()
            await asyncio.sleep(wait.delay)
            actions = self._machine.backoff_over()

    async def _connection(self, channels: list[str]) -> str:
        """Subscribe `channels` on a new PubSub, fill their gap, read until the
        connection is lost or renewed; returns why it ended."""
        self._renewal.clear()
        self._acked.clear()
        self._fill = None
        pubsub = self._pubsub = self._redis.pubsub()
        reader: asyncio.Task[None] | None = None
        renewal: asyncio.Task[bool] | None = None
        try:
            async with self._lock:
                self._confirmed.expect(channels)
                await commands.subscribe(pubsub, channels, sharded=self._sharded)
            reader = asyncio.create_task(self._read(pubsub), name="redis-reader")
            renewal = asyncio.create_task(self._renewal.wait(), name="redis-renewal")
            async with asyncio.timeout(ACK_TIMEOUT):
                await self._acked.wait()
            assert self._fill is not None
            if self._sharded:
                await commands.require_primary(self._redis)
            await self._on_reconnect(self._fill.channels)
            self._carry_out(self._machine.filled())
            await asyncio.wait((reader, renewal), return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                return self._renewal_reason
            reader.result()  # how the reading ended: the subscription is lost
            return "the subscription's reader stopped"
        except LOST_ERRORS as exc:
            return str(exc) or type(exc).__name__
        finally:
            await stop_tasks(reader, renewal)  # before its connection is dropped

    async def _read(self, pubsub: PubSub) -> None:
        machine = self._machine
        while True:
            message: Any = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"].decode()
            if kind in ("message", "smessage"):
                self._carry_out(machine.message(channel, message["data"]))
            elif kind in ("subscribe", "ssubscribe"):
                self._confirmed.answered(channel)
                self._carry_out(machine.acked(channel))
            elif kind == "sunsubscribe":
                self._carry_out(machine.server_unsubscribed(channel))

    async def _probe(self) -> None:
        """Publish a token to our own channel; a subscription that never hears it is deaf."""
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        while True:
            await asyncio.sleep(self._probe_interval)
            for action in self._machine.probe_due(secrets.token_hex(6)):
                if isinstance(action, act.SendProbe):
                    with contextlib.suppress(*REDIS_ERRORS):  # a lost probe is the check
                        await self._redis.execute_command(
                            command, self._machine.probe_channel, Kind.PROBE + action.token
                        )
                else:
                    self._carry_out([action])

    def _crashed(self, task: asyncio.Task[None]) -> None:
        """A task that ended by itself hit a bug: say so loudly, and be unready."""
        if task.cancelled() or task.exception() is None:
            return
        self._carry_out(self._machine.close())  # unready; the probe stops asking
        log.error(
            "redis subscriber task %s crashed: a bug, not a lost subscription",
            task.get_name(),
            exc_info=task.exception(),
        )

    def _fail_confirmations(self) -> None:
        self._batch.clear()  # the next connection subscribes every wanted channel
        self._confirmed.fail_all()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):  # TimeoutError is an OSError
                async with asyncio.timeout(1.0):
                    await pubsub.aclose()
