"""The EventLog on Redis and Redis Cluster (PROTOCOL section 11.2; the keys and Lua in
event_scripts).

A write script stores its event itself (`EventScript`), in the same atomic step as
what it tells of, so the WAIT that follows covers it. Before it, the node hints the
stream in its partition's sorted set (index before data: a crash between them leaves a
hint to an empty stream, never an event nobody finds), at most every `REHINT_SECONDS`
per stream. `pending` reads the hinted streams, oldest hint first, and removes a hint
whose stream was empty and that nobody renewed for `STALE_HINT_MS` (compare-and-
remove: a publisher that hinted again keeps it). `sweep` is the backstop for a hint
lost all the same: it SCANs every primary for event streams and hints them again.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from gateway.broker.event_log import (
    Backlog,
    DropReport,
    EventIds,
    StoredEvent,
    partition_of,
)
from gateway.broker.redis import scripts
from gateway.broker.redis.client import RedisClient
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import REDIS_ERRORS
from gateway.broker.redis.event_scripts import (
    EventKeys,
    plain,
    with_events,
)
from gateway.broker.redis.lua import Lua

REHINT_SECONDS = 10.0  # a node hints a stream again once its last hint is this old
STALE_HINT_MS = 60_000  # a hint to an empty stream, not renewed this long, goes
HINT_CACHE = 10_000  # streams remembered as hinted before the old ones are forgotten
READS_TOGETHER = 64  # streams read in one pipeline by pending and backlog

Runner = Callable[[Lua, Sequence[Any], Sequence[Any]], Awaitable[Any]]


async def _run(lua: Lua, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    return await lua(keys=keys, args=args)


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """`items` in slices of `size` (itertools.batched, before Python 3.12)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pairs(reply: Any) -> list[tuple[bytes, bytes]]:
    """A ZRANGE WITHSCORES reply (flat, or as pairs) as (member, score) pairs."""
    if reply and isinstance(reply[0], list | tuple):
        return [(member, _score_bytes(score)) for member, score in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


def _score_bytes(score: Any) -> bytes:
    """A score as scripts.UNHINT compares it (as a number: the client may have parsed it)."""
    return score if isinstance(score, bytes) else repr(float(score)).encode()


class RedisEventLog:
    """A node's view of the events in Redis: it hints, leases, reads and confirms."""

    def __init__(self, context: RedisContext, backlog: int) -> None:
        redis = self._redis = context.redis
        keys, node = context.keys, context.node
        self.sharded = context.sharded  # a Redis Cluster: hints are added before the script
        self.keys = EventKeys(keys)
        self._prefix = keys.prefix
        self._holder = f"{node}/{secrets.token_hex(4)}"  # this process, for its leases
        self.bound = backlog
        self.new_id = EventIds()
        self._hinted: dict[str, float] = {}  # stream -> when this node last hinted it
        self._report: DropReport | None = None
        self._lease = Lua(redis, scripts.LEASE)
        self._release = Lua(redis, scripts.RELEASE_LEASE)
        self._unhint = Lua(redis, scripts.UNHINT)

    def on_dropped(self, report: DropReport) -> None:
        self._report = report

    def dropped(self, stream: str, count: int) -> None:
        """A script trimmed `count` events off `stream` at the bound: tell the feed."""
        if self._report is not None:
            self._report(stream, count)

    def hint_due(self, stream: str) -> bool:
        """Whether `stream` is to be hinted again (this node did not lately)."""
        return time.monotonic() - self._hinted.get(stream, float("-inf")) >= REHINT_SECONDS

    def hinted(self, stream: str) -> None:
        """`stream` was hinted just now."""
        now = time.monotonic()
        if len(self._hinted) >= HINT_CACHE:
            self._hinted = {s: t for s, t in self._hinted.items() if now - t < REHINT_SECONDS}
            if len(self._hinted) >= HINT_CACHE // 2:  # that busy: hint them all again
                self._hinted.clear()
        self._hinted[stream] = now

    async def hint(self, stream: str) -> None:
        """List `stream` in its partition's hints now."""
        hints = self.keys.hints(partition_of(stream))
        await self._redis.execute_command("ZADD", hints, int(time.time() * 1000), stream)
        self.hinted(stream)

    async def lease(self, partition: int, ttl: float) -> bool:
        key = self.keys.lease(partition)
        return bool(await self._lease(keys=[key], args=[self._holder, max(1, int(ttl * 1000))]))

    async def release(self, partition: int) -> None:
        await self._release(keys=[self.keys.lease(partition)], args=[self._holder])

    async def _hinted_streams(self, partition: int) -> list[tuple[bytes, bytes]]:
        reply = await self._redis.execute_command(
            "ZRANGE", self.keys.hints(partition), 0, -1, "WITHSCORES"
        )
        return _pairs(reply)

    async def pending(self, partition: int, limit: int) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        stale: list[tuple[bytes, bytes]] = []
        now = time.time() * 1000
        for chunk in batched(await self._hinted_streams(partition), READS_TOGETHER):
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream, _ in chunk:
                    pipe.xrange(stream, count=limit - len(found))
                replies = await pipe.execute()
            for (stream, score), entries in zip(chunk, replies, strict=True):
                if not entries and now - float(score) > STALE_HINT_MS:
                    stale.append((stream, score))
                name = stream.decode()
                for entry, fields in entries[: limit - len(found)]:
                    found.append(StoredEvent(name, entry.decode(), _event(fields)))
            if len(found) >= limit:
                break
        hints = self.keys.hints(partition)
        for stream, score in stale:
            await self._unhint(keys=[hints], args=[stream, score])
        return found

    async def confirm(self, events: Sequence[StoredEvent]) -> None:
        done: dict[str, list[str]] = {}
        for event in events:
            done.setdefault(event.stream, []).append(event.entry)
        if not done:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, entries in done.items():  # EVAL: a short script, cached there
                pipe.execute_command("EVAL", scripts.CONFIRM, 1, stream, *entries)
            await pipe.execute()

    async def backlog(self, partition: int) -> Backlog:
        count, oldest = 0, None
        for chunk in batched(await self._hinted_streams(partition), READS_TOGETHER):
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream, _ in chunk:
                    pipe.xlen(stream)
                    pipe.xrange(stream, count=1)
                replies = await pipe.execute()
            for length, first in batched(replies, 2):
                count += int(length)
                if first:
                    ts = int(_event(first[0][1])["ts"])
                    oldest = ts if oldest is None else min(oldest, ts)
        return Backlog(count, oldest)

    async def sweep(self) -> int:
        found = 0
        async for raw in self._redis.scan_iter(
            match=self.keys.pattern(), count=1000, _type="stream"
        ):
            stream = raw.decode()
            if await self._redis.xlen(stream):
                await self.hint(stream)
                found += 1
        return found


def _event(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stored entry as the event POSTed: its JSON, a message's offset put in."""
    event: dict[str, Any] = orjson.loads(fields[b"e"])
    offset = fields.get(b"o")
    if offset is not None:
        event["offset"] = offset.decode()
    return event


class EventScript:
    """A write script that stores an event when given one (`events` is on), else runs
    plain: with events off its callers pass none, and it costs nothing more."""

    def __init__(self, redis: RedisClient, body: str, events: RedisEventLog | None) -> None:
        self._events = events
        self.plain = Lua(redis, plain(body))
        self._stored = Lua(redis, with_events(body)) if events is not None else None

    async def __call__(
        self,
        keys: Sequence[Any],
        args: Sequence[Any],
        event: tuple[str, Sequence[Any]] | None = None,
        runner: Runner = _run,
    ) -> Any:
        """The script's result. `event`: the stream and the script's event arguments;
        `runner` runs a Lua (ReplicaWaits.run, to wait for the replicas)."""
        if event is None or self._events is None or self._stored is None:
            return await runner(self.plain, keys, args)
        events = self._events
        stream, event_args = event
        event_keys, score = [stream], ""
        if events.hint_due(stream):
            if events.sharded:  # the hints live in another slot: before the script
                with contextlib.suppress(*REDIS_ERRORS):
                    # Their shard down must not refuse the rooms of healthy shards: the
                    # event is stored all the same, hinted again at the next write (not
                    # marked hinted) or found by the sweep; no node reads that
                    # partition's hints while their shard is down anyway.
                    await events.hint(stream)
            else:
                event_keys = [events.keys.hints(partition_of(stream)), stream]
                score = str(int(time.time() * 1000))
        result, dropped = await runner(
            self._stored, [*keys, *event_keys], [*args, *event_args, score, events.bound]
        )
        if score:
            events.hinted(stream)
        if dropped:
            self._events.dropped(stream, int(dropped))
        return result
