"""Rooms on Redis: a message published, what a connection entering a room is sent, and
the rooms listed.

A publish is one Lua script (`scripts.PUBLISH`): the room's next offset, XADD to
its stream, the idempotency key of a message id, PUBLISH (SPUBLISH on a cluster) on the
room's channel and, with events on, the `message` event in the room's event stream; its
answer waits for the room primary's replicas (`replicas`). Entering without an
offset reads the room's newest offset and its members in one round trip. The rooms are
listed by a SCAN of the presence keys, counted in pipelines of SCARDs.
"""

from __future__ import annotations

import secrets
import time

import orjson

from gateway.broker.base import Published, Replay
from gateway.broker.event_bodies import message_event
from gateway.broker.redis import scripts
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.broker.redis.event_log import EventScript, RedisEventLog
from gateway.broker.redis.history import RoomHistory
from gateway.broker.redis.presence import RedisPresence, sorted_names
from gateway.broker.redis.replicas import ReplicaWaits
from gateway.config import Settings
from gateway.events import Message
from gateway.names import name_key

ROOMS_PIPELINE = 500  # SCARDs sent together when the rooms are listed


class Rooms:
    """Publishing to rooms, and the reads of rooms that join history and presence."""

    def __init__(
        self,
        context: RedisContext,
        settings: Settings,
        replicas: ReplicaWaits,
        history: RoomHistory,
        presence: RedisPresence,
        events: RedisEventLog | None = None,
    ) -> None:
        redis = self._redis = context.redis
        self._keys = context.keys
        self._settings = settings
        self._pub = context.publish
        self._replicas = replicas
        self._history = history
        self._presence = presence
        self._events = events  # each message stored in its room's stream, with events on
        self._publish = EventScript(redis, scripts.PUBLISH, events)

    async def publish(
        self, room: str, sender: str, text: str, origin: str, message_id: str | None
    ) -> Published:
        """Store, number and publish one message (Broker.publish)."""
        ts = int(time.time() * 1000)
        payload = orjson.dumps(
            {"room": room, "from": sender, "text": text, "ts": ts, "origin": origin}
        )
        event = None
        if self._events is not None:  # the offset is the script's to add
            body = message_event(self._events.new_id(), Message(room, sender, text, "", ts))
            event = (self._events.keys.room(room), [orjson.dumps(body)])
        keys = [self._keys.meta(room), self._keys.log(room), self._keys.deleted(room)]
        if message_id:
            keys.append(self._keys.message_id(room, name_key(sender), message_id))
        with unavailable_on_error():
            offset, duplicate = await self._publish(
                keys,
                [
                    secrets.token_hex(4),
                    self._settings.history_size,
                    payload,
                    int(self._settings.idempotency_ttl * 1000),
                    self._keys.room_channel(room),
                    int(self._settings.room_ttl * 1000),
                    self._pub,
                ],
                event,
                self._replicas.run,
            )
        return Published(offset.decode(), bool(duplicate))

    async def entering(self, room: str, since: str | None, limit: int) -> tuple[Replay, list[str]]:
        """The replay and the members sent to a connection entering `room`."""
        if since is not None:
            replay = await self._history.replay(room, since, limit)
            return replay, await self._presence.members(room)
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._keys.meta(room), ["epoch", "seq"])
                pipe.smembers(self._keys.presence(room))
                (epoch, seq), names = await pipe.execute()
        newest = f"{epoch.decode()}-{int(seq)}" if epoch is not None and seq is not None else None
        return Replay(False, [], newest), sorted_names(names)

    async def listed(self) -> list[tuple[str, int]]:
        """Rooms with anyone present, with their member counts, sorted by name."""
        # A sweep of the keyspace: the node's RoomDirectory makes one every
        # --rooms-refresh seconds at most, whatever its clients ask.
        start, end = self._keys.presence("\0").split("\0")
        keys: list[str] = []
        with unavailable_on_error():
            async for raw in self._redis.scan_iter(match=f"{start}*{end}", count=1000):
                keys.append(raw.decode())
            keys = list(dict.fromkeys(keys))  # SCAN may return a key twice
            counts: list[int] = []
            for low in range(0, len(keys), ROOMS_PIPELINE):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys[low : low + ROOMS_PIPELINE]:
                        pipe.scard(key)
                    counts.extend(await pipe.execute())
        rooms = [k.removeprefix(start).removesuffix(end) for k in keys]
        return sorted((room, n) for room, n in zip(rooms, counts, strict=True) if n > 0)
