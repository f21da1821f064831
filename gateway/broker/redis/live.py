"""The live path on Redis: the rooms this node listens to, and what arrives for them.

The node's subscription (`connect.node_subscriber`) hands every channel message
here: a room's messages are delivered once and in offset order, kicks and the other
events (`events`) go to the listener. After a new subscription (a reconnect; on a
cluster, one shard's) each of its rooms' gaps is filled from the room's stream, and the
node's heartbeat, presence and names are put back before live messages are read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.broker.base import BrokerListener
from gateway.broker.redis import scripts
from gateway.broker.redis.connect import node_subscriber
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.broker.redis.events import deliver_event
from gateway.broker.redis.history import RoomHistory, decode_message
from gateway.broker.redis.kinds import Kind
from gateway.broker.redis.liveness import Liveness
from gateway.broker.redis.lua import Lua
from gateway.config import Settings
from gateway.errors import BrokerUnavailable
from gateway.events import Message

log = logging.getLogger(__name__)


class LiveRooms:
    """The node's subscription, and each subscribed room's last delivered position."""

    def __init__(
        self,
        context: RedisContext,
        settings: Settings,
        history: RoomHistory,
        liveness: Liveness,
        forget: Callable[[str], None],
        reregister: Callable[..., Awaitable[bool]],
    ) -> None:
        redis, keys = context.redis, context.keys
        self._keys = keys
        self._history = history
        self._liveness = liveness
        self._forget = forget  # a connection here was kicked: its name is no longer ours
        self._reregister = reregister  # puts the node's presence and names back
        self._seq_floor = Lua(redis, scripts.SEQ_FLOOR)
        self.listener: BrokerListener | None = None  # set when the broker starts
        self._rooms: dict[str, tuple[str, int] | None] = {}  # room -> last delivered position
        self.subscriber = node_subscriber(
            context,
            settings.redis_url or "",
            self._on_channel_message,
            self._after_reconnect,
            probe_interval=settings.probe_interval,
        )

    async def subscribe(self, room: str) -> None:
        """Listen to `room`: its messages from the newest one now on."""
        # The baseline is read before subscribing and registered before the first live
        # message can arrive: nothing published after it is skipped.
        with unavailable_on_error():
            self._rooms[room] = await self._history.position(room)
        await self.subscriber.subscribe(self._keys.room_channel(room))

    async def unsubscribe(self, room: str) -> None:
        """Stop listening to `room`."""
        self._rooms.pop(room, None)
        await self.subscriber.unsubscribe(self._keys.room_channel(room))

    def _on_channel_message(self, channel: str, data: bytes) -> None:
        if self.listener is None:
            return
        kind, body = Kind.of(data), data[1:]
        try:
            if kind is Kind.MESSAGE:
                offset, _, payload = body.partition(b"\n")
                self._deliver_message(decode_message(offset.decode(), payload))
            elif kind is Kind.KICK:
                self._forget(body.decode())
                self.listener.on_kick(body.decode())
            elif kind is not None:
                deliver_event(kind, body, channel, self._keys, self.listener)
        except (ValueError, KeyError):
            log.exception("dropped a malformed message on %s", channel)

    def _deliver_message(self, message: Message) -> None:
        """Deliver once, in order: skip what the node already delivered (after a gap fill)."""
        epoch, _, seq_text = message.offset.rpartition("-")
        seq = int(seq_text)
        if message.room not in self._rooms:
            return
        last = self._rooms[message.room]
        if last is not None and last[0] == epoch and seq <= last[1]:
            return
        self._rooms[message.room] = (epoch, seq)
        assert self.listener is not None
        self.listener.on_room_event(message)

    async def _after_reconnect(self, channels: frozenset[str]) -> None:
        """After a new subscription on `channels`: fill their rooms' gaps, re-register
        their presence and names, retry their cleanups (on a cluster, one shard's)."""
        for room, last in list(self._rooms.items()):
            if self._keys.room_channel(room) in channels:
                if last is not None:  # after a failover: never number a message twice
                    await self._seq_floor(keys=[self._keys.meta(room)], args=list(last))
                for message in await self._history.gap(room, last):
                    self._deliver_message(message)
        # Were we reaped meanwhile? Then the others saw us leave: put everything back
        # with joins first (a silent re-add below would swallow them).
        await self._liveness.beat()
        await self._liveness.restore()
        if not await self._reregister(channels=channels):
            raise BrokerUnavailable("re-registering failed")  # subscribe again, and retry
