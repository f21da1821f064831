"""Names on Redis: who owns a name, and the direct messages and kicks sent to it.

A name's hash (`P name:{K}`) says which connection on which node owns it (or, shared
by an authenticated user's connections, one field per connection). A node subscribes
the name's user channel before claiming it, so no kick or direct message is missed;
it lists the name in its own index before the claim, so the reaper finds it if the
node dies. A name held by a node whose heartbeat is gone counts as free (the reaper
may not have caught up yet): the claim script says who holds it, and the caller,
which can read that node's heartbeat (another slot), claims again naming it dead. That
node may be only frozen: the claim kicks its connection (heard when it wakes) and marks
it reaped (`reaper`), so it claims its names again and closes the one it lost.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.broker.base import NameTaken, RecipientBusy
from gateway.broker.event_bodies import dm_event
from gateway.broker.redis import scripts
from gateway.broker.redis.connect import NodeSubscriber
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS, unavailable_on_error
from gateway.broker.redis.event_log import EventScript, RedisEventLog
from gateway.broker.redis.kinds import Kind
from gateway.broker.redis.lua import Lua
from gateway.errors import BrokerUnavailable
from gateway.events import Direct
from gateway.names import name_key

log = logging.getLogger(__name__)


class Names:
    """The names this node's connections own, and direct messages between names."""

    def __init__(
        self,
        context: RedisContext,
        subscriber: NodeSubscriber,
        on_kick: Callable[[str], None],
        settle: Callable[[str], Awaitable[None]],
        dm_budget: tuple[float, int],
        took_from: Callable[[str], Awaitable[None]],
        events: RedisEventLog | None = None,
    ) -> None:
        redis = self._redis = context.redis
        self._keys = context.keys
        self._node = context.node
        self._pub = context.publish
        self._sharded = context.sharded  # the node's index is then in another slot
        self._subscriber = subscriber  # Subscriber or ShardedSubscriber
        self._on_kick = on_kick  # a connection here lost its name to someone else
        self._settle = settle  # reaps a former run's hold of a name key before a claim
        self._took_from = took_from  # marks a node whose name a claim took as reaped
        self._dm_budget = dm_budget  # a recipient's DMs: rate per second, burst
        self._claim = Lua(redis, scripts.CLAIM_NAME)
        self._claim_shared = Lua(redis, scripts.CLAIM_SHARED)
        self._claim_enter = EventScript(redis, scripts.CLAIM_ENTER, events)
        self._claim_shared_enter = EventScript(redis, scripts.CLAIM_SHARED_ENTER, events)
        self._release = Lua(redis, scripts.RELEASE_NAME)
        self._events = events  # each DM stored in its recipient's stream, with events on
        self._direct = EventScript(redis, scripts.DIRECT, events)
        self._owned: dict[str, tuple[str, bool]] = {}  # connection -> its name, shared
        self._listening: dict[str, str] = {}  # connection -> the user channel it keeps open
        self._unreleased: dict[str, str] = {}  # connection -> name whose release failed

    @property
    def _index(self) -> str:
        return self._keys.node(self._node) + ":names"

    async def _claim_call(
        self, name: str, connection: str, new: str, given: str, *, shared: bool, entry: Any = None
    ) -> tuple[str | NameTaken, Any]:
        """Claim `name` for `connection`: its session secret, or NameTaken naming who
        holds it (or a look-alike of it); and with `entry` (a presence script's step, on
        one Redis) the answer of that entry, made in the same script when the name was
        claimed (None when not, or when the claim took a second call)."""
        key = name_key(name)
        await self._settle(key)
        # The index first: the reaper finds it. On one Redis the script adds it, in the
        # same step (one round trip); on a cluster it lives in the node's slot.
        keys = [self._keys.name(key)]
        if self._sharded:
            await self._redis.sadd(self._index, key)
        else:
            keys.append(self._index)
        script = self._claim_shared if shared else self._claim
        args = [key, name, connection, self._node, new, given, self._keys.user_channel(key)]
        entered = None
        if entry is None:
            result = await script(keys=keys, args=[*args, self._pub, ""])
        else:
            entry_keys, entry_args, stored = entry
            both = self._claim_shared_enter if shared else self._claim_enter
            reply = await both([*keys, *entry_keys], [*args, self._pub, "", *entry_args], stored)
            result, entered = reply[0], (reply[1] if len(reply) > 1 else None)
        if result[0] == b"owner":
            # Held by another node: free if that node is dead (not reaped yet).
            owner = result[1].decode()
            if await self._redis.exists(self._keys.node(owner) + ":alive"):
                return _taken(name, result), None
            result = await script(keys=keys, args=[*args, self._pub, owner])
            if result[0] != b"taken":
                # The owner may be only frozen, its connection still open: once it runs
                # again the mark has it claim its names anew, and close this one's.
                await self._took_from(owner)
        if result[0] == b"taken":
            return _taken(name, result), None
        return str(result[0].decode()), entered

    async def claim(self, name: str, connection: str, session: str | None, *, shared: bool) -> str:
        """Own `name` for `connection`; its session secret. NameTaken if someone has it."""
        secret, _ = await self.claim_entering(name, connection, session, shared=shared)
        return secret

    async def claim_entering(
        self, name: str, connection: str, session: str | None, *, shared: bool, entry: Any = None
    ) -> tuple[str, Any]:
        """`claim`; with `entry` (one Redis only: `RedisPresence.entry_step`) that entry
        is made in the same script once the name is claimed: its answer, or None when
        it was not made (the claim took a second call: the holder's node was dead)."""
        assert entry is None or not self._sharded, "a combined script spans slots"
        channel = self._keys.user_channel(name_key(name))
        await self._subscriber.subscribe(channel)  # before the claim: no kick or DM is missed
        try:
            with unavailable_on_error():
                result, entered = await self._claim_call(
                    name,
                    connection,
                    secrets.token_urlsafe(18),
                    session or "",
                    shared=shared,
                    entry=entry,
                )
        except BaseException:
            await self._subscriber.unsubscribe(channel)
            raise
        if isinstance(result, NameTaken):
            await self._subscriber.unsubscribe(channel)
            try:
                raise result
            finally:
                del result  # or this frame holds the error whose traceback holds it: a cycle
        self._owned[connection] = (name, shared)
        self._listening[connection] = channel
        return result, entered

    async def _release_call(self, name: str, connection: str) -> None:
        key = name_key(name)
        keys, args = [self._keys.name(key)], [connection, self._node]
        if not self._sharded:  # one round trip: the script takes it off the index too
            keys.append(self._index)
            args.append(key)
        released = await self._release(keys=keys, args=args)
        if released and self._sharded:  # the node's index lives in another slot
            await self._redis.srem(self._index, key)

    async def release(self, name: str, connection: str) -> None:
        """Give `name` up for `connection` (retried after the next reconnect if Redis
        cannot be reached now: then BrokerUnavailable)."""
        self._owned.pop(connection, None)
        self._unreleased.pop(connection, None)
        channel = self._listening.pop(connection, None)
        if channel is not None:
            await self._subscriber.unsubscribe(channel)
        try:
            with unavailable_on_error():
                await self._release_call(name, connection)
        except BrokerUnavailable:
            self._unreleased[connection] = name  # retried after the next reconnect
            raise

    def forget(self, connection: str) -> None:
        """`connection` was kicked (its name taken over): it owns nothing any more."""
        self._owned.pop(connection, None)

    async def reclaim_all(self, channels: frozenset[str] | None = None) -> bool:
        """Claim every owned name again (after Redis lost them, or reaped this node); a
        name someone took meanwhile is not taken back: its connection is kicked. Retry
        the releases that failed. With `channels`, only the names whose user channels
        these are. Whether every claim went through (the rest is retried later)."""
        complete = True
        for connection, (name, shared) in list(self._owned.items()):
            if connection not in self._owned or not self._wanted(name, channels):
                continue  # gone while an earlier claim ran, or on another shard
            new = secrets.token_urlsafe(18)
            try:
                claimed, _ = await self._claim_call(name, connection, new, "", shared=shared)
            except REDIS_ERRORS as exc:
                log.warning("could not claim %r again (%s); retrying later", name, exc)
                complete = False
                continue
            if connection not in self._owned:  # gone while this claim ran: release again
                try:
                    await self._release_call(name, connection)
                except REDIS_ERRORS:
                    self._unreleased[connection] = name
                    complete = False
                continue
            if isinstance(claimed, NameTaken):
                del self._owned[connection]
                self._on_kick(connection)
        for connection, name in list(self._unreleased.items()):
            if self._wanted(name, channels):
                try:
                    await self.release(name, connection)
                except BrokerUnavailable:  # still listed: retried
                    complete = False
        return complete

    async def reindex(self) -> None:
        """List every name this node owns (or failed to release) in its index again."""
        keys = {name_key(name) for name, _ in self._owned.values()}
        keys |= {name_key(name) for name in self._unreleased.values()}
        if keys:
            await self._redis.sadd(self._index, *keys)

    def _wanted(self, name: str, channels: frozenset[str] | None) -> bool:
        return channels is None or self._keys.user_channel(name_key(name)) in channels

    async def send_direct(self, event: Direct) -> bool:
        """Publish `event` to its recipient and to the sender's other connections;
        False when the recipient is not online; RecipientBusy when it is over its
        budget (checked and spent in the same script, one round trip)."""
        to_key, sender_key = name_key(event.to), name_key(event.sender)
        body = json.dumps(
            {
                "from": event.sender,
                "to": event.to,
                "text": event.text,
                "ts": event.ts,
                "origin": event.origin,
            },
            ensure_ascii=False,
        )
        stored = None
        if self._events is not None:
            dm = orjson.dumps(dm_event(self._events.new_id(), event))
            stored = (self._events.keys.dm(to_key), [dm])
        with unavailable_on_error():
            delivered = await self._direct(
                [self._keys.name(to_key), self._keys.dm_budget(to_key)],
                [self._keys.user_channel(to_key), body, self._pub, to_key, *self._dm_budget],
                stored,
            )
            if delivered < 0:
                raise RecipientBusy(event.to, -delivered / 1000)
            if delivered and sender_key != to_key:  # the sender's other connections
                sender_channel = self._keys.user_channel(sender_key)
                await self._redis.execute_command(self._pub, sender_channel, Kind.DIRECT + body)
        return bool(delivered)


def _taken(name: str, result: list[Any]) -> NameTaken:
    """NameTaken for a claim script's {'taken', DISPLAY} or {'owner', NODE, DISPLAY}."""
    holder = result[-1]
    return NameTaken(name, holder.decode() if isinstance(holder, bytes) else None)
