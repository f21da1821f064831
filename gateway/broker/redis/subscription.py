"""One Redis subscription's life as a state machine without I/O.

Events go in as method calls (a channel message, a subscribe acknowledgement, a probe
timer, the reading side's report that the connection ended, ...) and each returns the
actions the I/O part (`subscriber.Subscriber`) must carry out: open a connection
and subscribe every channel, subscribe or unsubscribe one, publish a probe, fill the
gap, deliver a message, mark the subscription live or unready, end the connection and
wait before the next one. There is no asyncio and no Redis here, and the clock and the
jitter are given to it, so every edge case is a unit test (tests/test_subscription_machine.py).

Phases (see docs/redis.md, "The subscription as a state machine"):

- IDLE: not started; channels may be wanted.
- CONNECTING: a new connection subscribes every wanted channel; live messages are held
  until each of those channels is acknowledged.
- FILLING: all acknowledged; the gap of those channels is being filled; still held.
- LIVE: held messages delivered, live ones delivered as they come; probes are sent.
- BACKOFF: the connection ended; waiting (doubling, capped, jittered) for the next.
- CLOSED: nothing more happens.

A renewal (deaf, or a command that failed) is only asked for: the connection is ended
by the reading side, which then reports `lost`. Closing it from another task left
redis-py's reader on a connection the pool gave to a command. Probe answers heard after
a renewal was asked for do not count: the subscription was judged deaf.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Callable

from gateway.broker.redis.kinds import Kind
from gateway.broker.redis.subscription_actions import (
    Action,
    Connect,
    Deliver,
    Drop,
    FillGap,
    Lost,
    MarkLive,
    MarkUnready,
    Renew,
    SendProbe,
    SubscribeChannel,
    UnsubscribeChannel,
    Wait,
)

BACKOFF_FIRST = 0.1  # seconds before the first reconnect
BACKOFF_CAP = 5.0  # the longest wait between reconnects
DEAF_AFTER = 3  # probe intervals with none back: the subscription is deaf


class Phase(enum.Enum):
    """Where a subscription is in its life."""

    IDLE = "idle"
    CONNECTING = "connecting"
    FILLING = "filling"
    LIVE = "live"
    BACKOFF = "backoff"
    CLOSED = "closed"


CONNECTED = (Phase.CONNECTING, Phase.FILLING, Phase.LIVE)  # a connection exists


class Subscription:
    """The state of one subscription connection and the channels it should carry."""

    def __init__(
        self,
        probe_channel: str,
        probe_interval: float,
        clock: Callable[[], float],
        *,
        sharded: bool = False,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.probe_channel = probe_channel
        self._probe_interval = probe_interval
        self._clock = clock
        self._sharded = sharded  # a server SUNSUBSCRIBE not asked for is a loss
        self._jitter = jitter  # in [0, 1): spreads the reconnects of many nodes
        self.phase = Phase.IDLE
        self.wanted: Counter[str] = Counter({probe_channel: 1})  # channel -> its users
        self.on_connection: set[str] = set()  # subscribed (or being) on this connection
        self._acks_awaited: set[str] = set()  # of the connection's first subscribe
        self._connected_with: frozenset[str] = frozenset()
        self._unsubscribing: Counter[str] = Counter()  # our SUNSUBSCRIBEs not replied to
        self._held: list[tuple[str, bytes]] | None = None  # live messages during a fill
        self._probes: dict[str, float] = {}  # probe token -> time sent
        self._heard = False  # a probe came back on this connection
        self._last_probe_back = clock()
        self.renewing = False  # a renewal was asked for; the reading side ends it
        self.was_live = False
        self._backoff = BACKOFF_FIRST
        self.probe_rtt: float | None = None

    # -- channels -----------------------------------------------------------------

    def want(self, channel: str, users: int = 1) -> None:
        """Count `users` more of `channel` before `start`, which subscribes it."""
        self.wanted[channel] += users

    def subscribe(self, channel: str) -> list[Action]:
        """One user more of `channel`: subscribe it now if a connection exists and it is
        not on it; else it waits for the next connection (whose gap fill covers it)."""
        if self.phase is Phase.CLOSED:
            return []
        self.wanted[channel] += 1
        if self.phase not in CONNECTED or channel in self.on_connection:
            return []
        self.on_connection.add(channel)
        return [SubscribeChannel(channel)]

    def unsubscribe(self, channel: str) -> list[Action]:
        """One user less of `channel`: unsubscribe it once nobody wants it."""
        if self.phase is Phase.CLOSED:
            return []
        self.wanted[channel] -= 1
        if self.wanted[channel] <= 0:
            del self.wanted[channel]
        if channel in self.wanted or channel not in self.on_connection:
            return []
        self.on_connection.discard(channel)
        actions: list[Action] = [UnsubscribeChannel(channel)]
        if self._sharded:
            self._unsubscribing[channel] += 1
        if channel in self._acks_awaited:  # its ack may never come: do not wait for it
            self._acks_awaited.discard(channel)
            actions += self._all_acked()
        return actions

    def command_failed(self, reason: str) -> list[Action]:
        """A SUBSCRIBE or UNSUBSCRIBE failed: the next connection carries the set."""
        return self._renew(reason)

    # -- the connection's life --------------------------------------------------------

    def start(self) -> list[Action]:
        """Make the first connection."""
        if self.phase is not Phase.IDLE:
            return []
        return self._connect()

    def acked(self, channel: str) -> list[Action]:
        """Redis confirmed a subscription of `channel` on this connection."""
        if self.phase is not Phase.CONNECTING or channel not in self._acks_awaited:
            return []
        self._acks_awaited.discard(channel)
        return self._all_acked()

    def filled(self) -> list[Action]:
        """The gap is filled: deliver what was held, then go live."""
        if self.phase is not Phase.FILLING:
            return []
        self.phase = Phase.LIVE
        held, self._held = self._held or [], None
        actions: list[Action] = [Deliver(channel, data) for channel, data in held]
        self._last_probe_back = self._clock()
        self._heard = False
        self.was_live = True
        actions.append(MarkLive())
        return actions

    def server_unsubscribed(self, channel: str) -> list[Action]:
        """An SUNSUBSCRIBE reply: ours, or the server dropped the channel (slot moved)."""
        if self.phase not in CONNECTED:
            return []
        if self._unsubscribing[channel] > 0:
            self._unsubscribing[channel] -= 1  # the reply to ours
            if not self._unsubscribing[channel]:
                del self._unsubscribing[channel]
            return []
        if channel in self.on_connection:
            return self._renew(f"the server unsubscribed {channel} (its slot moved)")
        return []

    def lost(self, reason: str) -> list[Action]:
        """The reading side ended the connection (an error, or a renewal it carried out):
        drop it and wait before the next. Only the reading side reports this."""
        if self.phase not in CONNECTED:
            return []
        if self._heard:  # it worked (a probe came back): the next loss starts afresh
            self._backoff = BACKOFF_FIRST  # (one deaf again and again backs off instead)
        delay = self._backoff * (0.5 + self._jitter())
        self._backoff = min(self._backoff * 2, BACKOFF_CAP)
        self.phase = Phase.BACKOFF
        self._heard = False
        self._held = None
        self.on_connection = set()
        self._acks_awaited = set()
        self._unsubscribing.clear()
        self._probes.clear()
        self.renewing = False
        return [MarkUnready(), Lost(), Drop(), Wait(delay, reason, self.was_live)]

    def backoff_over(self) -> list[Action]:
        """The wait is over: make the next connection."""
        if self.phase is not Phase.BACKOFF:
            return []
        return self._connect()

    def close(self) -> list[Action]:
        """Stop for good, from any phase."""
        was = self.phase
        self.phase = Phase.CLOSED
        self._held = None
        self.on_connection = set()
        self._probes.clear()
        return [MarkUnready(), Drop()] if was is not Phase.CLOSED else []

    # -- messages and probes ----------------------------------------------------------

    def message(self, channel: str, data: bytes) -> list[Action]:
        """A channel message: a probe answer, held during a fill, or delivered."""
        if channel == self.probe_channel:
            self._probe_back(data)
            return []
        if self.phase not in CONNECTED:
            return []
        if self._held is not None:
            self._held.append((channel, data))
            return []
        return [Deliver(channel, data)]

    def probe_due(self, token: str) -> list[Action]:
        """The probe timer: find a deaf subscription, else send probe `token`."""
        if self.phase is not Phase.LIVE or self.renewing:
            return []
        now = self._clock()
        window = self._probe_interval * DEAF_AFTER
        if now - self._last_probe_back > window:
            # On a cluster the shard may have failed over without a word: its old
            # primary, now a replica, takes SSUBSCRIBE but hears nothing.
            return [Lost(), *self._renew("deaf: no probe came back")]
        # Every probe still in the deaf window counts when it comes back: one that takes
        # longer than the interval is late, not lost (counting only the newest made a
        # slow path deaf for good: a resubscription storm on a loaded host).
        self._probes = {t: at for t, at in self._probes.items() if now - at < window}
        self._probes[token] = now
        return [SendProbe(token)]

    def healthy(self) -> bool:
        """Live, and the last probe came back in time."""
        deadline = self._probe_interval * DEAF_AFTER
        return self.phase is Phase.LIVE and self._clock() - self._last_probe_back < deadline

    def _probe_back(self, data: bytes) -> None:
        if self.phase is not Phase.LIVE or self.renewing:
            return  # judged deaf (or not live yet): a late answer does not undo that
        sent = self._probes.pop(data.decode().removeprefix(Kind.PROBE), None)
        if sent is not None:
            self._heard = True
            self._last_probe_back = self._clock()
            self.probe_rtt = self._last_probe_back - sent

    def _connect(self) -> list[Action]:
        channels = tuple(sorted(self.wanted))
        self.phase = Phase.CONNECTING
        self.renewing = False
        self._held = []  # live messages wait until the gap is filled
        self.on_connection = set(channels)
        self._acks_awaited = set(channels)
        self._connected_with = frozenset(channels)
        self._unsubscribing.clear()
        return [Connect(channels)]

    def _all_acked(self) -> list[Action]:
        if self._acks_awaited or self.phase is not Phase.CONNECTING:
            return []
        self.phase = Phase.FILLING
        return [FillGap(self._connected_with)]

    def _renew(self, reason: str) -> list[Action]:
        if self.phase not in CONNECTED or self.renewing:
            return []
        self.renewing = True
        self._probes.clear()
        return [Renew(reason)]
