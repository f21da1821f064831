"""The Redis broker: many nodes, one chat, on one Redis or a Redis Cluster.

The broker builds its parts and hands each what it uses (one `RedisContext` and the
few callbacks it needs). Publishing is one Lua script (offset, XADD, idempotency key,
PUBLISH or SPUBLISH), with entering a room and listing the rooms `rooms.py`; history and
resume read the room's stream (`history.py`); presence lives in sets and hashes beside
each room (`presence.py`), held by nodes whose heartbeat key expires when they die;
names and direct messages are `names.py`, bans and deletes `moderation.py`, the
console's reads `console.py`. The client and the node's subscription are `connect.py`
(one connection; one per shard on a cluster, `cluster.py`); what arrives on it, in
order and with gaps filled, `live.py`; heartbeats and upkeep are `liveness.py`, putting
entries back `reregister.py`, the crash reaper `reaper.py`, a former run's leftovers
`former_run.py`; the key layout `keys.py`, the Lua `scripts/`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.asyncio import Redis

from gateway.broker.base import (
    AuditEntry,
    Banned,
    BrokerListener,
    Entry,
    NodeStatus,
    Published,
    Replay,
    UserPlaces,
)
from gateway.broker.redis.client import as_client
from gateway.broker.redis.cluster import ShardedSubscriber, connect_cluster
from gateway.broker.redis.connect import connect, redis_address
from gateway.broker.redis.console import Console
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS, unavailable_on_error
from gateway.broker.redis.event_log import RedisEventLog
from gateway.broker.redis.history import RoomHistory
from gateway.broker.redis.live import LiveRooms
from gateway.broker.redis.liveness import Liveness
from gateway.broker.redis.moderation import RedisModeration
from gateway.broker.redis.names import Names
from gateway.broker.redis.presence import RedisPresence
from gateway.broker.redis.replicas import ReplicaWaits
from gateway.broker.redis.reregister import reregister
from gateway.broker.redis.rooms import Rooms
from gateway.config import Settings
from gateway.events import Direct, Message, PresenceChange
from gateway.redis_url import CLUSTER_SCHEME


class RedisBroker:
    """The Broker protocol on Redis; one instance per node."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        assert settings.redis_url or redis is not None
        self._settings = settings
        url = settings.redis_url or ""
        sharded = url.startswith(CLUSTER_SCHEME)  # a Redis Cluster, with sharded pub/sub
        self._sharded = sharded
        if redis is None:
            self._redis = as_client(connect_cluster(url) if sharded else connect(url))
        else:
            self._redis = as_client(redis)
        self._node = settings.node_id
        ctx = RedisContext.for_url(self._redis, settings.redis_prefix, self._node, sharded=sharded)
        self._keys = ctx.keys
        self._history = RoomHistory(ctx, settings.history_size)
        # With --events-url: every event stored in the same script as what it tells of.
        self.events: RedisEventLog | None = None
        if settings.events_url:
            self.events = RedisEventLog(ctx, settings.events_backlog)
        self._replicas = ReplicaWaits(ctx, settings.ack_replicas, settings.redis_ack_timeout)
        self._listener: BrokerListener | None = None
        self._liveness = Liveness(ctx, settings, self.reregister, self.events)
        self._live = LiveRooms(
            ctx, settings, self._history, self._liveness, self._forget, self.reregister
        )
        self._subscriber = self._live.subscriber
        self._moderation = RedisModeration(
            ctx, settings.room_ttl, settings.history_size, self._replicas, self.events
        )
        self._console = Console(ctx)
        self._presence = RedisPresence(
            ctx, self._liveness.settle_room, self._banned_while_away, self.events
        )
        self._names = Names(
            ctx,
            self._subscriber,
            self._kick,
            self._liveness.settle_name,
            (settings.dm_recipient_rate, settings.dm_recipient_burst),
            self._liveness.took_from,
            self.events,
        )
        self._rooms = Rooms(
            ctx, settings, self._replicas, self._history, self._presence, self.events
        )

    @property
    def probe_rtt(self) -> float | None:
        """Seconds the last readiness probe took to come back, if one did."""
        return self._subscriber.probe_rtt

    async def start(self, listener: BrokerListener) -> None:
        self._listener = self._live.listener = listener
        reached = await self._liveness.start()
        self._subscriber.start()
        if not reached:  # the node listens at once, not ready, and retries meanwhile
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self._subscriber.wait_live()

    async def close(self) -> None:
        await self._subscriber.close()
        await self._liveness.close()
        with contextlib.suppress(*REDIS_ERRORS):
            await self._redis.aclose()

    def is_ready(self) -> bool:
        # On a cluster a node is ready while any shard works: with one shard down every
        # node is alike, and the rooms of the other shards still chat.
        return self._subscriber.serving and self._liveness.healthy

    def unready_reason(self) -> str:
        if not self._liveness.healthy:
            return "Redis unreachable"
        return "" if self.is_ready() else "Redis subscription not live"

    def degraded(self) -> str | None:
        down = self._subscriber.shards_down()
        return f"redis cluster shards down: {', '.join(down)}" if down else None

    def shards(self) -> dict[str, bool]:
        if isinstance(self._subscriber, ShardedSubscriber):
            return self._subscriber.shards()
        return {redis_address(self._redis): self._liveness.healthy and self._subscriber.healthy}

    @property
    def nodes_reaped(self) -> int:
        return self._liveness.nodes_reaped

    async def hand_over(self, grace: float) -> None:
        await self._liveness.hand_over(grace)

    async def live_nodes(self) -> int:
        """The nodes listed in `P nodes` (a dead one until it is reaped)."""
        with unavailable_on_error():
            return int(await self._redis.scard(self._keys.nodes))

    # the live path ------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        await self._live.subscribe(room)

    async def unsubscribe(self, room: str) -> None:
        await self._live.unsubscribe(room)

    async def reregister(
        self, announce: bool = False, channels: frozenset[str] | None = None
    ) -> bool:
        """Put this node's presence and names back (after Redis lost them, or reaped us);
        whether all of it went back (`reregister`)."""
        return await reregister(self._keys, self._presence, self._names, announce, channels)

    def _banned_while_away(self, banned: Banned, name: str) -> None:
        if self._listener is not None:
            self._listener.on_removed(name, banned.room, banned.by, banned.until)

    def _forget(self, connection: str) -> None:
        self._names.forget(connection)  # a kick heard on the subscription

    def _kick(self, connection: str) -> None:
        if self._listener is not None:
            self._listener.on_kick(connection)

    # publishing and history ------------------------------------------------------

    async def publish(
        self,
        room: str,
        sender: str,
        text: str,
        *,
        origin: str,
        message_id: str | None = None,
    ) -> Published:
        return await self._rooms.publish(room, sender, text, origin, message_id)

    async def publish_presence(self, event: PresenceChange) -> None:
        await self._presence.publish(event)

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        return await self._history.history(room, before, limit)

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        return await self._history.replay(room, since, limit)

    # presence and names ----------------------------------------------------------

    async def presence_add(self, room: str, name: str, *, announce: bool = False) -> bool:
        return await self._presence.add(room, name, announce=announce)

    async def presence_remove(self, room: str, name: str, *, announce: bool = False) -> bool:
        return await self._presence.remove(room, name, announce=announce)

    async def members(self, room: str) -> list[str]:
        return await self._presence.members(room)

    async def entering(self, room: str, since: str | None, limit: int) -> tuple[Replay, list[str]]:
        return await self._rooms.entering(room, since, limit)

    async def presence_add_entering(
        self, room: str, name: str, since: str | None, limit: int
    ) -> tuple[bool, Replay, list[str]]:
        if since is None:  # the common case: one script reads what the entry is sent
            added, newest, members = await self._presence.add_reading(room, name)
            return added, Replay(False, [], newest), members
        added = await self._presence.add(room, name, announce=True)
        replay, members = await self._rooms.entering(room, since, limit)
        return added, replay, members

    async def rooms(self) -> list[tuple[str, int]]:
        return await self._rooms.listed()

    async def claim_name(
        self, name: str, connection: str, session: str | None, *, shared: bool = False
    ) -> str:
        return await self._names.claim(name, connection, session, shared=shared)

    async def claim_entering(
        self,
        name: str,
        connection: str,
        session: str | None,
        room: str,
        since: str | None,
        limit: int,
        *,
        shared: bool = False,
    ) -> Entry:
        if self._sharded or since is not None:  # a script may not span slots there
            return Entry(await self._names.claim(name, connection, session, shared=shared))
        # One Redis: the claim, the entry and its reads in one script (scripts.CLAIM_ENTER).
        step = await self._presence.entry_step(room, name)
        secret, reply = await self._names.claim_entering(
            name, connection, session, shared=shared, entry=step
        )
        if reply is None:  # the claim took a second call (its holder's node was dead)
            return Entry(secret)
        try:
            added, newest, members = self._presence.entered(room, name, reply)
        except Banned as banned:
            return Entry(secret, entered=True, banned=banned)
        return Entry(secret, True, added, Replay(False, [], newest), members)

    async def release_name(self, name: str, connection: str) -> None:
        await self._names.release(name, connection)

    async def send_direct(self, event: Direct) -> bool:
        return await self._names.send_direct(event)

    # moderation ----------------------------------------------------------------

    async def kick(self, room: str, name: str, by: str, seconds: int) -> int | None:
        return await self._moderation.kick(room, name, by, seconds)

    async def unban(self, room: str, name: str) -> None:
        await self._moderation.unban(room, name)

    async def banned_until(self, room: str, name: str) -> int | None:
        return await self._moderation.banned_until(room, name)

    async def delete(self, room: str, offset: str, by: str) -> bool:
        return await self._moderation.delete(room, offset, by)

    async def disconnect(self, name: str) -> None:
        await self._moderation.disconnect(name)

    # the operator's console ----------------------------------------------------

    def report(self, status: Callable[[], NodeStatus]) -> None:
        self._liveness.status = status

    async def nodes(self) -> list[NodeStatus]:
        return await self._console.nodes()

    async def user(self, name: str) -> UserPlaces:
        return await self._console.user(name)

    async def room_counts(self, rooms: list[str]) -> list[int]:
        return await self._console.room_counts(rooms)

    async def note_audit(self, entry: AuditEntry) -> None:
        await self._console.note_audit(entry)

    async def audit(self, limit: int) -> list[AuditEntry]:
        return await self._console.audit(limit)
