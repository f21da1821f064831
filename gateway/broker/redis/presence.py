"""Presence on Redis: which names this node holds present in which rooms.

A room's presence keys (`P room:{R}:members`, `:refs`, `:shown`, `:holders`) live in
the room's slot and change in one script per step, which can also publish the join or
leave it caused. The node lists the room in its index (`P node:{N}:rooms`) before its
first entry there, so the reaper finds it if the node dies, and keeps what it holds in
memory, to put it back when Redis lost it or the node was reaped while it stalled
(joins announced then: the others saw the leaves), with the removals and the joins that
could not be done yet retried then too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson

from gateway.broker.base import Banned
from gateway.broker.event_bodies import presence_event
from gateway.broker.redis import scripts
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.broker.redis.event_log import EventScript, RedisEventLog
from gateway.broker.redis.kinds import Kind
from gateway.errors import BrokerUnavailable
from gateway.events import PresenceChange
from gateway.names import name_key

log = logging.getLogger(__name__)

# A presence script's keys, arguments and event (its stream and JSON), as EventScript takes.
Step = tuple[list[str], list[Any], tuple[str, list[bytes]] | None]


class RedisPresence:
    """This node's presence entries in Redis, and how they go back after a loss."""

    def __init__(
        self,
        context: RedisContext,
        settle: Callable[[str], Awaitable[None]],
        on_banned: Callable[[Banned, str], None],
        events: RedisEventLog | None = None,
    ) -> None:
        redis = self._redis = context.redis
        self._on_banned = on_banned  # an entry not put back: its name was banned meanwhile
        self._keys = context.keys
        self._node = context.node
        self._pub = context.publish
        self._settle = settle  # reaps a former run's entry in a room before our first
        self._events = events  # announced joins and leaves stored for the application
        self._add = EventScript(redis, scripts.PRESENCE_ADD, events)
        self._remove = EventScript(redis, scripts.PRESENCE_REMOVE, events)
        self._announce = EventScript(redis, scripts.ANNOUNCE, events)
        self._indexed: set[str] = set()  # rooms this node's index in Redis lists
        self._present: dict[tuple[str, str], str] = {}  # (room, name key) -> display name
        self._unremoved: set[tuple[str, str]] = set()  # (room, name) whose removal failed
        self._owed_joins: set[tuple[str, str]] = set()  # (room, key): put back, unannounced

    async def add(self, room: str, name: str, *, announce: bool = False) -> bool:
        """`name` present in `room` through this node; whether it was new everywhere."""
        added = await self._added(room, name, announce, read=False)
        return bool(added > 0)

    async def add_reading(self, room: str, name: str) -> tuple[bool, str | None, list[str]]:
        """`add` with the join announced, and in the same step the room's newest offset
        and its members after the entry: (new everywhere, offset, members)."""
        return self._reading(await self._added(room, name, True, read=True))

    async def _added(self, room: str, name: str, announce: bool, *, read: bool) -> Any:
        key = name_key(name)
        added = await self._call(
            self._add, room, key, name, "join" if announce else "", adding=True, read=read
        )
        return self._noted(room, name, added)

    def _noted(self, room: str, name: str, added: Any) -> Any:
        """The add script's answer, once its entry is noted; Banned for a ban."""
        if isinstance(added, list) and len(added) == 1:
            raise Banned.parse(room, added[0])
        self._unremoved.discard((room, name))
        self._present[(room, name_key(name))] = name
        return added

    @staticmethod
    def _reading(reply: Any) -> tuple[bool, str | None, list[str]]:
        added, epoch, seq, names = reply
        newest = f"{epoch.decode()}-{int(seq)}" if epoch is not None and seq is not None else None
        return added > 0, newest, sorted_names(set(names))

    async def remove(self, room: str, name: str, *, announce: bool = False) -> bool:
        """`name` no longer present here; whether it left everywhere. A removal that
        fails is retried by the next `restore`."""
        key = name_key(name)
        display = self._present.pop((room, key), name)
        removed: int  # 1 if it left everywhere, else 0
        try:
            removed = await self._call(
                self._remove, room, key, display, "leave" if announce else ""
            )
        except BrokerUnavailable:
            self._unremoved.add((room, display))  # retried after the next reconnect
            raise
        self._unremoved.discard((room, display))
        return removed > 0

    async def publish(self, event: PresenceChange) -> None:
        """Publish a join or leave on its room's channel (and store its event)."""
        with unavailable_on_error():
            channel = self._keys.room_channel(event.room)
            payload = presence_payload(event)
            stored = self._stored(event.room, event.event, event.name)
            if stored is None:
                await self._redis.execute_command(self._pub, channel, payload)
            else:
                await self._announce([], [self._pub, channel, payload], stored)

    async def members(self, room: str) -> list[str]:
        with unavailable_on_error():
            names = await self._redis.smembers(self._keys.presence(room))
        return sorted_names(names)

    async def reindex(self) -> None:
        """List every room this node holds (or failed to leave) in its index again
        (Redis may have lost the index: a crash would then leave ghosts). Raises."""
        rooms = {room for room, _ in self._present} | {room for room, _ in self._unremoved}
        self._indexed.clear()
        if rooms:
            with unavailable_on_error():
                await self._redis.sadd(self._keys.node(self._node) + ":rooms", *rooms)
        self._indexed |= rooms

    async def restore(self, announce: bool, mine: Callable[[str], bool]) -> bool:
        """Put back every entry in the rooms `mine` accepts, announce the joins still
        owed, retry the removals that failed; whether all of it went through."""
        # A connection may leave or close during any await below: an entry gone from
        # the tables is skipped, and one gone while its call ran is undone again.
        complete = True
        for (room, key), display in list(self._present.items()):
            if self._present.get((room, key)) != display or not mine(room):
                continue
            try:
                await self._put_back(room, key, display, announce)
            except BrokerUnavailable as exc:
                log.warning("could not put %r back in %r (%s); retrying later", display, room, exc)
                complete = False
        for room, key in list(self._owed_joins):
            shown = self._present.get((room, key))
            if shown is None:
                self._owed_joins.discard((room, key))
            elif mine(room):
                try:
                    await self.publish(PresenceChange(room, "join", shown))
                    self._owed_joins.discard((room, key))
                except BrokerUnavailable:
                    complete = False
        for room, name in list(self._unremoved):
            if mine(room):
                try:
                    await self.remove(room, name, announce=True)
                except BrokerUnavailable:  # it stays listed: retried
                    complete = False
        return complete

    async def _put_back(self, room: str, key: str, display: str, announce: bool) -> None:
        added = await self._call(self._add, room, key, display, adding=True)
        if isinstance(added, list):
            # Banned while this node did not hear (its subscription was away): the
            # removal it missed happens now, here.
            self._on_banned(Banned.parse(room, added[0]), display)
            return
        if added and announce:
            try:
                await self.publish(PresenceChange(room, "join", display))
            except BrokerUnavailable:
                self._owed_joins.add((room, key))  # the next re-registration announces it
                raise
        if (room, key) not in self._present:  # left while its presence went back
            try:
                removed = await self._call(self._remove, room, key, display) > 0
            except BrokerUnavailable:
                self._unremoved.add((room, display))
                raise
            self._owed_joins.discard((room, key))
            if removed and added and announce:
                await self.publish(PresenceChange(room, "leave", display))

    async def _call(
        self,
        script: EventScript,
        room: str,
        key: str,
        display: str,
        announce: Literal["", "join", "leave"] = "",
        *,
        adding: bool = False,
        read: bool = False,
    ) -> Any:
        """Run a presence script; with `announce` ("join"/"leave") it also publishes
        that event when the name's presence changed everywhere: 1 when it did, else 0.
        `adding`: the add script, which the name's ban refuses (it then answers [the
        ban as stored]); with `read` it answers [1 or 0, epoch, seq, members]."""
        with unavailable_on_error():
            step = await self._step(room, key, display, announce, adding=adding, read=read)
            return await script(*step)

    async def entry_step(self, room: str, name: str) -> Step:
        """The keys, arguments and event of `add_reading`'s script, for a caller that
        runs it within a script of its own (scripts.CLAIM_ENTER); pass its answer to
        `entered`. Raises BrokerUnavailable."""
        with unavailable_on_error():
            return await self._step(room, name_key(name), name, "join", adding=True, read=True)

    def entered(self, room: str, name: str, reply: Any) -> tuple[bool, str | None, list[str]]:
        """What `add_reading` returns, from the answer of `entry_step`'s script."""
        return self._reading(self._noted(room, name, reply))

    async def _step(
        self,
        room: str,
        key: str,
        display: str,
        announce: Literal["", "join", "leave"],
        *,
        adding: bool,
        read: bool,
    ) -> Step:
        keys = self._keys
        channel, payload, stored = "", b"", None
        if announce:
            channel = keys.room_channel(room)
            payload = presence_payload(PresenceChange(room, announce, display))
            stored = self._stored(room, announce, display)
        await self._settle(room)  # a former run's entry here goes first
        if room not in self._indexed:  # before the entry: the reaper must find it
            await self._redis.sadd(keys.node(self._node) + ":rooms", room)
            self._indexed.add(room)
        script_keys = keys.presence_keys(room)
        args: list[Any] = [key, display, f"{self._node}\n{key}", channel, payload, self._pub]
        if adding:
            script_keys.append(keys.ban(room, key))
            args.append("read" if read else "")
            if read:
                script_keys.append(keys.meta(room))
        return script_keys, args, stored

    def _stored(self, room: str, event: str, name: str) -> tuple[str, list[bytes]] | None:
        """A presence script's event arguments (None with events off)."""
        if self._events is None:
            return None
        body = presence_event(self._events.new_id(), room, event, name)
        return self._events.keys.room(room), [orjson.dumps(body)]


def presence_payload(event: PresenceChange) -> bytes:
    """A presence event as published on its room's channel."""
    body = {"room": event.room, "event": event.event, "name": event.name}
    return Kind.PRESENCE.prefix + orjson.dumps(body)


def sorted_names(names: set[bytes]) -> list[str]:
    """A presence set's names in the order `members` lists them."""
    return sorted((n.decode() for n in names), key=lambda n: (name_key(n), n))
