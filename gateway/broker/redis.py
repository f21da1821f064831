"""The Redis broker: many nodes, one chat, on one Redis or a Redis Cluster.

Publishing is one Lua script (offset, XADD, idempotency key, PUBLISH or SPUBLISH);
history and resume read the room's stream (`redis_history`); presence lives in sets and
hashes beside each room (`redis_presence`), held by nodes whose heartbeat key expires
when they die; names and direct messages are `redis_names`. The node's subscription is
`redis_subscriber` (one connection; one per shard on a cluster, `redis_cluster`);
heartbeats and upkeep are `redis_liveness`, the crash reaper `redis_reaper`, a former
run's leftovers `redis_former_run`; the key layout and the scripts `redis_scripts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.broker import redis_scripts as scripts
from gateway.broker.base import Banned, BrokerListener, Published, Replay
from gateway.broker.redis_cluster import ShardedSubscriber, connect_cluster
from gateway.broker.redis_events import deliver_event
from gateway.broker.redis_history import (
    REDIS_ERRORS,
    RoomHistory,
    decode_message,
    unavailable_on_error,
)
from gateway.broker.redis_liveness import Liveness
from gateway.broker.redis_lua import Lua
from gateway.broker.redis_moderation import Moderation
from gateway.broker.redis_names import Names
from gateway.broker.redis_presence import Presence, sorted_names
from gateway.broker.redis_replicas import ReplicaWaits
from gateway.broker.redis_scripts import Keys
from gateway.broker.redis_subscriber import Subscriber
from gateway.config import Settings
from gateway.errors import BrokerUnavailable
from gateway.events import Direct, Message, PresenceChange
from gateway.names import name_key
from gateway.redis_url import CLUSTER_SCHEME, cluster_credentials

log = logging.getLogger(__name__)


MAX_REDIS_CONNECTIONS = 100
ROOMS_PIPELINE = 500  # SCARDs sent together when the rooms are listed


def connect(url: str) -> Redis:
    """A client that fails fast: no retries (a retried publish could run twice).

    Its pool waits (up to the socket timeout) for a free connection when all are busy:
    redis-py's default pool fails the call over its limit at once, and a burst of
    closing connections then left presences behind as if Redis were down.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_REDIS_CONNECTIONS,
        timeout=2.0,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)


class RedisBroker:
    """The Broker protocol on Redis; one instance per node."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        assert settings.redis_url or redis is not None
        self._settings = settings
        url = settings.redis_url or ""
        sharded = url.startswith(CLUSTER_SCHEME)  # a Redis Cluster, with sharded pub/sub
        # redis-py's reply types are unions of everything; replies are parsed by hand.
        self._redis: Any = redis
        if redis is None:
            self._redis = connect_cluster(url) if sharded else connect(url)
        self._keys = Keys(settings.redis_prefix)
        self._pub = "SPUBLISH" if sharded else "PUBLISH"  # for every channel message
        self._history = RoomHistory(self._redis, self._keys, settings.history_size)
        self._node = settings.node_id
        self._publish = Lua(self._redis, scripts.PUBLISH)
        self._seq_floor = Lua(self._redis, scripts.SEQ_FLOOR)
        self._replicas = ReplicaWaits(
            self._redis, settings.ack_replicas, settings.redis_ack_timeout, sharded=sharded
        )
        self._listener: BrokerListener | None = None
        self._rooms: dict[str, tuple[str, int] | None] = {}  # room -> last delivered position
        self._subscriber: Subscriber | ShardedSubscriber
        if sharded:
            plain_id = self._node.replace("{", "(").replace("}", ")")  # its tag picks the slot
            probes = f"{self._keys.prefix}ch:probe:{plain_id}"
            self._subscriber = ShardedSubscriber(
                self._redis,
                probes,
                self._on_channel_message,
                self._after_reconnect,
                probe_interval=settings.probe_interval,
                client_name=_client_name(f"{self._keys.prefix}subscriber:{self._node}"),
                credentials=cluster_credentials(url),
            )
        else:
            self._subscriber = Subscriber(
                self._redis,  # the client's own pool: a plain Redis
                self._keys.node_channel(self._node),
                self._on_channel_message,
                self._after_reconnect,
                probe_interval=settings.probe_interval,
            )
        self._moderation = Moderation(
            self._redis,
            self._keys,
            self._pub,
            settings.room_ttl,
            settings.history_size,
            self._replicas,
        )
        self._liveness = Liveness(self._redis, self._keys, settings, self.reregister, self._pub)
        self._presence = Presence(
            self._redis,
            self._keys,
            self._node,
            self._pub,
            self._liveness.settle_room,
            self._banned_while_away,
        )
        self._names = Names(
            self._redis,
            self._keys,
            self._node,
            self._pub,
            self._subscriber,
            self._kick,
            self._liveness.settle_name,
            (settings.dm_recipient_rate, settings.dm_recipient_burst),
            self._liveness.took_from,
        )

    @property
    def probe_rtt(self) -> float | None:
        """Seconds the last readiness probe took to come back, if one did."""
        return self._subscriber.probe_rtt

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener
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
        return {_address(self._redis): self._liveness.healthy and self._subscriber.healthy}

    @property
    def nodes_reaped(self) -> int:
        return self._liveness.nodes_reaped

    async def hand_over(self, grace: float) -> None:
        await self._liveness.hand_over(grace)

    # the live path ------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        # The baseline is read before subscribing and registered before the first live
        # message can arrive: nothing published after it is skipped.
        with unavailable_on_error():
            self._rooms[room] = await self._history.position(room)
        await self._subscriber.subscribe(self._keys.room_channel(room))

    async def unsubscribe(self, room: str) -> None:
        self._rooms.pop(room, None)
        await self._subscriber.unsubscribe(self._keys.room_channel(room))

    def _on_channel_message(self, channel: str, data: bytes) -> None:
        if self._listener is None:
            return
        kind, body = data[:1], data[1:]
        try:
            if kind == b"m":
                offset, _, payload = body.partition(b"\n")
                self._deliver_message(decode_message(offset.decode(), payload))
            elif kind == b"k":
                self._names.forget(body.decode())
                self._listener.on_kick(body.decode())
            else:
                deliver_event(kind, body, channel, self._keys, self._listener)
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
        assert self._listener is not None
        self._listener.on_room_event(message)

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
        if not await self.reregister(channels=channels):
            raise BrokerUnavailable("re-registering failed")  # subscribe again, and retry

    async def reregister(
        self, announce: bool = False, channels: frozenset[str] | None = None
    ) -> bool:
        """Put this node's presence and names back (after Redis lost them, or reaped us);
        whether all of it went back (what did not is left for the next call).

        With `announce` (we were reaped, and the others were told we left) each name
        put back in a room is announced as a join. A name someone else took meanwhile
        is not taken back: its connection here is closed as taken over. Cleanups that
        failed earlier are retried. With `channels`, only the rooms and names whose
        channels these are (one shard's, on a cluster); the index of all is rebuilt.
        """

        def mine(room: str) -> bool:
            return channels is None or self._keys.room_channel(room) in channels

        try:
            await self._presence.reindex()
            with unavailable_on_error():
                await self._names.reindex()
            complete = True
        except BrokerUnavailable as exc:
            log.warning("could not rebuild this node's index (%s); retrying later", exc)
            complete = False
        complete = await self._presence.restore(announce, mine) and complete
        return await self._names.reclaim_all(channels) and complete

    def _banned_while_away(self, banned: Banned, name: str) -> None:
        if self._listener is not None:
            self._listener.on_removed(name, banned.room, banned.by, banned.until)

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
        payload = orjson.dumps(
            {
                "room": room,
                "from": sender,
                "text": text,
                "ts": int(time.time() * 1000),
                "origin": origin,
            }
        )
        keys = [self._keys.meta(room), self._keys.log(room), self._keys.deleted(room)]
        if message_id:
            keys.append(self._keys.message_id(room, name_key(sender), message_id))
        with unavailable_on_error():
            offset, duplicate = await self._replicas.run(
                self._publish,
                keys=keys,
                args=[
                    secrets.token_hex(4),
                    self._settings.history_size,
                    payload,
                    int(self._settings.idempotency_ttl * 1000),
                    self._keys.room_channel(room),
                    int(self._settings.room_ttl * 1000),
                    self._pub,
                ],
            )
        return Published(offset.decode(), bool(duplicate))

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
        if since is not None:
            return await self.replay(room, since, limit), await self.members(room)
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._keys.meta(room), ["epoch", "seq"])
                pipe.smembers(self._keys.presence(room))
                (epoch, seq), names = await pipe.execute()
        newest = f"{epoch.decode()}-{int(seq)}" if epoch is not None and seq is not None else None
        return Replay(False, [], newest), sorted_names(names)

    async def rooms(self) -> list[tuple[str, int]]:
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

    async def claim_name(
        self, name: str, connection: str, session: str | None, *, shared: bool = False
    ) -> str:
        return await self._names.claim(name, connection, session, shared=shared)

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


def _client_name(text: str) -> str:
    """`text` as a CLIENT SETNAME accepts it (no spaces or newlines)."""
    return "".join(c if c.isascii() and c.isprintable() and c != " " else "_" for c in text)


def _address(redis: Any) -> str:
    """The "host:port" (or socket path) a plain Redis client connects to."""
    kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'redis')}:{kwargs.get('port', 6379)}"
