"""The Redis broker on a Redis Cluster: the client, and one subscription per shard.

Commands go through redis-py's cluster client, which follows MOVED and ASK and reloads
its slot map after a failed call (that call fails: an outage of its slots, answered
`unavailable`, as on one Redis). Live messages use sharded pub/sub: a room's channel
lives in the room's slot, SPUBLISH reaches only that shard, and the node keeps one
plain subscription connection per shard primary (`Subscriber`, sharded), which
SSUBSCRIBEs a slot's channels in one command. When a shard's subscription is lost
(its primary failed over or left, or the server unsubscribed a channel whose slot
moved), the slot map is read again with CLUSTER SLOTS; each shard whose primary or
slots changed gets a subscription anew on its current primary, which fills the gap of
each of its rooms from their streams before reading live messages, so nothing is lost
and nothing is repeated. A shard that is only down (the same primary, unreachable)
keeps retrying on its own, and the other shards' subscriptions are left as they are:
their rooms keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.subscriber import Subscriber
from gateway.redis_url import cluster_credentials, cluster_nodes
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

REFRESH_BACKOFF = 0.5  # seconds between two reads of the slot map after a loss
SLOTS = 16384  # a Redis Cluster's hash slots


def connect_cluster(url: str) -> RedisCluster:
    """A cluster client that fails fast: no retries after a connection error (a retried
    publish could run twice); MOVED and ASK are still followed."""
    username, password = cluster_credentials(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=username,
        password=password,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        max_connections=100,
    )


async def read_shards(cluster: RedisCluster) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """Each shard primary's address and slot ranges, from CLUSTER SLOTS on the first
    node that answers (one may be down: that is often why the map is read)."""
    failure: Exception = ConnectionError("no cluster node known")
    await cluster.initialize()  # a no-op once the client knows the cluster
    nodes = cluster.get_nodes()
    for node in random.sample(nodes, len(nodes)):
        try:
            return parse_slots(await cluster.execute_command("CLUSTER SLOTS", target_nodes=node))
        except REDIS_ERRORS as exc:
            failure = exc
    raise failure


def parse_slots(reply: Any) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """CLUSTER SLOTS as {primary (host, port): [(first slot, last slot), ...]}: from the
    raw reply (rows of start, end, [host, port, id], replicas...) or from redis-py's
    cluster client's parse of it ({(start, end): {"primary": (host, port), ...}})."""
    if isinstance(reply, dict) and len(reply) == 1 and isinstance(next(iter(reply)), str):
        reply = next(iter(reply.values()))  # keyed by the node that answered
    rows: list[tuple[int, int, Any]] = []
    if isinstance(reply, dict):
        rows = [(start, end, owners["primary"]) for (start, end), owners in reply.items()]
    else:
        rows = [(row[0], row[1], row[2]) for row in reply]
    shards: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for start, end, primary in rows:
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        shards.setdefault((host, int(primary[1])), []).append((int(start), int(end)))
    return shards


def probe_channel(base: str, ranges: list[tuple[int, int]]) -> str:
    """A channel named after `base` whose slot lies in `ranges` (the shard it probes)."""
    for index in itertools.count():
        channel = f"{base}:{{{index}}}"
        slot = key_slot(channel.encode())
        if any(start <= slot <= end for start, end in ranges):
            return channel
    raise AssertionError("unreachable")


class ShardedSubscriber:
    """The node's subscriptions on a Redis Cluster: one `Subscriber` per shard primary.

    The same interface as `Subscriber`: channels are wanted and unwanted one user at a
    time and routed to the shard that owns their slot.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        probe_base: str,
        on_message: Callable[[str, bytes], None],
        on_reconnect: Callable[[frozenset[str]], Awaitable[None]],
        *,
        probe_interval: float,
        client_name: str,
        credentials: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self._cluster = cluster
        self._client_name = client_name  # its connections' name in CLIENT LIST
        self._credentials = credentials  # (username, password) for every shard
        self._probe_base = probe_base
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._probe_interval = probe_interval
        self._wanted: dict[str, int] = {}  # channel -> its users
        self._shards: dict[tuple[str, int], tuple[list[tuple[int, int]], Subscriber, Redis]] = {}
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()  # one rebuild, subscribe or unsubscribe at a time
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read the slot map and subscribe on every shard, in the background."""
        self._lost.set()
        self._task = asyncio.create_task(self._watch(), name="redis-shards")

    async def close(self) -> None:
        await stop_tasks(self._task)
        await self._drop_all()

    @property
    def healthy(self) -> bool:
        """Every shard subscribed, reading, and its probe back in time."""
        return bool(self._shards) and not self.shards_down()

    @property
    def serving(self) -> bool:
        """At least one shard subscribed and reading: its rooms work."""
        return any(shard.healthy for _, shard, _ in self._shards.values())

    def shards_down(self) -> list[str]:
        """The primaries ("host:port") whose subscription is not healthy now."""
        return [shard for shard, healthy in self.shards().items() if not healthy]

    def shards(self) -> dict[str, bool]:
        """Each shard primary ("host:port") and whether its subscription is healthy."""
        return {
            f"{host}:{port}": shard.healthy for (host, port), (_, shard, _) in self._shards.items()
        }

    @property
    def probe_rtt(self) -> float | None:
        """The slowest shard's last probe round trip."""
        rtts = [s.probe_rtt for _, s, _ in self._shards.values() if s.probe_rtt is not None]
        return max(rtts) if rtts else None

    async def wait_live(self) -> None:
        while not self.healthy:
            for _, shard, _ in list(self._shards.values()):
                await shard.wait_live()
            if not self.healthy:
                await asyncio.sleep(0.05)  # the map is being read: look again shortly

    async def subscribe(self, channel: str) -> None:
        """Want `channel` on the shard of its slot. Never raises."""
        async with self._lock:
            self._wanted[channel] = self._wanted.get(channel, 0) + 1
            shard = self._shard_of(channel)
            if shard is None and self._shards:
                self._lost.set()  # the map has no primary for its slot: read it again
        if shard is not None:
            await shard.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """One user less of `channel`. Never raises."""
        async with self._lock:
            users = self._wanted.get(channel, 0) - 1
            if users > 0:
                self._wanted[channel] = users
            else:
                self._wanted.pop(channel, None)
            shard = self._shard_of(channel)
        if shard is not None:
            await shard.unsubscribe(channel)

    def _shard_of(self, channel: str) -> Subscriber | None:
        slot = key_slot(channel.encode())
        for ranges, shard, _ in self._shards.values():
            if any(start <= slot <= end for start, end in ranges):
                return shard
        return None  # no map yet: the next rebuild subscribes it

    async def _watch(self) -> None:
        """Rebuild every shard's subscription whenever one is lost."""
        while True:
            await self._lost.wait()
            try:
                shards = await read_shards(self._cluster)
            except REDIS_ERRORS as exc:
                log.warning("redis cluster: cannot read the slot map (%s); retrying", exc)
                await asyncio.sleep(REFRESH_BACKOFF)
                continue
            covered = sum(end - start + 1 for ranges in shards.values() for start, end in ranges)
            if covered < SLOTS:
                # Mid-failover a node may list no primary for some slots: their rooms'
                # channels would be subscribed nowhere while every listed shard is fine.
                log.warning(
                    "redis cluster: %d of %d slots have a primary; retrying", covered, SLOTS
                )
                await asyncio.sleep(REFRESH_BACKOFF)
                continue
            async with self._lock:
                self._lost.clear()
                await self._rebuild(shards)

    async def _rebuild(self, shards: dict[tuple[str, int], list[tuple[int, int]]]) -> None:
        """Subscribe anew on each shard whose primary or slots changed; keep the rest."""
        changed = [a for a, (ranges, _, _) in self._shards.items() if shards.get(a) != ranges]
        for address in changed:
            await self._drop(address)
        started = []
        for (host, port), ranges in shards.items():
            if (host, port) in self._shards:
                continue  # the same primary and slots: it reconnects by itself if down
            client = Redis(
                host=host,
                port=port,
                socket_connect_timeout=1.0,
                client_name=self._client_name,
                username=self._credentials[0],
                password=self._credentials[1],
                # No retries: redis-py would reconnect a lost pubsub read by itself and
                # subscribe again underneath, with no gap fill (messages lost), or, after
                # a drop of ours, read on with no subscription at all (deaf for good).
                retry=Retry(NoBackoff(), 0),
            )
            shard = Subscriber(
                client,
                probe_channel(self._probe_base, ranges),
                self._on_message,
                self._on_reconnect,
                probe_interval=self._probe_interval,
                sharded=True,
                on_lost=self._lost.set,
            )
            self._shards[(host, port)] = (ranges, shard, client)
            started.append(shard)
        for channel, users in self._wanted.items():
            owner = self._shard_of(channel)
            if owner in started:
                owner.want(channel, users)
        for shard in started:
            shard.start()
        if started:
            log.info("redis cluster: subscribed on %d of %d shards anew", len(started), len(shards))

    async def _drop_all(self) -> None:
        for address in list(self._shards):
            await self._drop(address)

    async def _drop(self, address: tuple[str, int]) -> None:
        _, shard, client = self._shards.pop(address)
        await shard.close()
        with contextlib.suppress(*REDIS_ERRORS):
            await client.aclose()
