"""Moderation on Redis: bans, tombstones of deleted messages, removals and disconnects.

A ban is a key in the room's slot (`P room:{R}:ban:{K}`) holding its end, which expires
then; the presence script refuses an entry while it exists, so a ban costs a join no
round trip. A delete takes the message's stream entry out (XDEL: its text is gone from
Redis) and leaves a tombstone in the room's `deleted` hash, which history and replay
put back in its place (`tombstones`), so offsets and order stay as they were. Removals
and disconnects go out on the name's user channel, which every node with a connection
of the name listens to. A kick (with its ban) and a delete are answered only once the
room primary's replicas have them (`replicas`), as a publish is.
"""

from __future__ import annotations

import time

import orjson

from gateway.broker.base import Banned
from gateway.broker.event_bodies import deleted_event, now_ms, removed_event
from gateway.broker.redis import scripts
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.broker.redis.event_log import EventScript, RedisEventLog
from gateway.broker.redis.event_scripts import open_event
from gateway.broker.redis.kinds import Kind
from gateway.broker.redis.replicas import ReplicaWaits
from gateway.errors import NotReplicated
from gateway.names import name_key
from gateway.offsets import parse_offset


class RedisModeration:
    """Bans, deletes, removals and disconnects, for every node at once."""

    def __init__(
        self,
        context: RedisContext,
        room_ttl: float,
        history_size: int,
        replicas: ReplicaWaits,
        events: RedisEventLog | None = None,
    ) -> None:
        redis = self._redis = context.redis
        self._keys = context.keys
        self._pub = context.publish
        self._room_ttl_ms = int(room_ttl * 1000)
        self._history_size = history_size
        self._replicas = replicas  # a kick or delete is answered once replicated
        self._events = events  # deletes and removals stored for the application
        self._delete = EventScript(redis, scripts.DELETE, events)
        self._kick = EventScript(redis, scripts.KICK, events)

    async def kick(self, room: str, name: str, by: str, seconds: int) -> int | None:
        """Ban and take the name's presence out of the room (every node's, one leave:
        also where it has no connection left, in its grace period) in one step that
        the replicas confirm, then tell every node with a connection of it. Short of
        replicas, the nodes are told all the same (the primary did it) and
        NotReplicated is raised: the moderator may kick again."""
        key = name_key(name)
        keys = self._keys
        until = int(time.time() * 1000) + seconds * 1000 if seconds > 0 else None
        ban = f"{until} {by}" if until is not None else ""  # refuses entries while it lasts
        unconfirmed: NotReplicated | None = None
        event = None
        if self._events is not None:
            head = {"type": "presence", "ts": now_ms(), "room": room, "event": "leave"}
            removed = removed_event(self._events.new_id(), room, name, by, until)
            stored = [open_event(head), self._events.new_id(), orjson.dumps(removed)]
            event = (self._events.keys.room(room), stored)
        with unavailable_on_error():
            try:
                await self._kick(
                    [*keys.presence_keys(room), keys.ban(room, key)],
                    [key, room, keys.room_channel(room), self._pub, ban, seconds * 1000],
                    event,
                    self._replicas.run,
                )
            except NotReplicated as exc:
                unconfirmed = exc
            body = orjson.dumps({"room": room, "name": name, "by": by, "until": until})
            await self._redis.execute_command(
                self._pub, self._keys.user_channel(key), Kind.REMOVED.prefix + body
            )
        if unconfirmed is not None:
            raise unconfirmed
        return until

    async def unban(self, room: str, name: str) -> None:
        with unavailable_on_error():
            await self._redis.delete(self._keys.ban(room, name_key(name)))

    async def banned_until(self, room: str, name: str) -> int | None:
        with unavailable_on_error():
            ban = await self._redis.get(self._keys.ban(room, name_key(name)))
        return Banned.parse(room, ban).until if ban is not None else None

    async def delete(self, room: str, offset: str, by: str) -> bool:
        position = parse_offset(offset)
        if position is None:
            return False
        keys = self._keys
        canonical = f"{position[0]}-{position[1]}"  # as the room wrote it: "E-01" is "E-1"
        event = orjson.dumps({"room": room, "offset": canonical, "by": by})
        stored = None
        if self._events is not None:
            told = deleted_event(self._events.new_id(), room, canonical, by)
            stored = (self._events.keys.room(room), [orjson.dumps(told)])
        with unavailable_on_error():  # NotReplicated: members were told; delete again
            done = await self._delete(
                [keys.meta(room), keys.log(room), keys.deleted(room)],
                [
                    position[0],
                    position[1],
                    by,
                    keys.room_channel(room),
                    Kind.DELETED.prefix + event,
                    self._pub,
                    self._room_ttl_ms,
                    self._history_size,
                ],
                stored,
                self._replicas.run,
            )
        return bool(done)

    async def disconnect(self, name: str) -> None:
        key = name_key(name)
        with unavailable_on_error():
            await self._redis.execute_command(
                self._pub, self._keys.user_channel(key), Kind.DISCONNECT.prefix
            )
