"""The in-process broker's events (PROTOCOL section 11.2), kept in memory until the
application confirms them: one stream per room and one per recipient of direct
messages, as on Redis, in the same partitions. There is one node, so every lease is
granted; the backlog is lost with the process (docs/operations.md says so)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gateway.broker.event_log import (
    Backlog,
    DropReport,
    EventIds,
    StoredEvent,
    partition_of,
)


def room_stream(room: str) -> str:
    """The stream of a room's events (messages, deletes, presence, removals)."""
    return f"room:{{{room}}}:events"


def dm_stream(name_key: str) -> str:
    """The stream of the direct messages name key `name_key` received."""
    return f"name:{{{name_key}}}:events"


class MemoryEventLog:
    """The EventLog of the in-process broker; the broker calls `add` in the same step
    as what the event tells of (no await in between)."""

    def __init__(self, backlog: int) -> None:
        self._bound = backlog  # events kept per stream
        self._streams: dict[str, deque[StoredEvent]] = {}
        self._entries = itertools.count(1)  # entry ids, increasing: a stream's order
        self._report: DropReport | None = None
        self.new_id = EventIds()

    def on_dropped(self, report: DropReport) -> None:
        self._report = report

    def add(self, stream: str, event: dict[str, Any]) -> None:
        """Store `event` at the end of `stream`, dropping its oldest beyond the bound."""
        queue = self._streams.setdefault(stream, deque())
        dropped = 0
        while len(queue) >= self._bound:
            queue.popleft()
            dropped += 1
        queue.append(StoredEvent(stream, str(next(self._entries)), event))
        if dropped and self._report is not None:
            self._report(stream, dropped)

    def record(self, stream: str, build: Callable[..., dict[str, Any]], *fields: Any) -> None:
        """Store the event `build(new id, *fields)` (gateway/broker/event_bodies.py)."""
        self.add(stream, build(self.new_id(), *fields))

    async def lease(self, partition: int, ttl: float) -> bool:
        return True  # one node: every partition is its own

    async def release(self, partition: int) -> None:
        """Nothing to give up: no other node could take it."""

    def _streams_of(self, partition: int) -> list[deque[StoredEvent]]:
        """The partition's non-empty streams, the one with the oldest event first."""
        held = [q for s, q in self._streams.items() if q and partition_of(s) == partition]
        return sorted(held, key=lambda queue: int(queue[0].entry))

    async def pending(self, partition: int, limit: int) -> list[StoredEvent]:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        picked: list[StoredEvent] = []
        for queue in self._streams_of(partition):
            picked.extend(itertools.islice(queue, limit - len(picked)))
            if len(picked) >= limit:
                break
        return picked

    async def confirm(self, events: Sequence[StoredEvent]) -> None:
        done: dict[str, set[str]] = {}
        for event in events:
            done.setdefault(event.stream, set()).add(event.entry)
        for stream, entries in done.items():
            queue = self._streams.get(stream)
            if queue is None:
                continue
            while queue and queue[0].entry in entries:  # the usual case: the oldest
                entries.discard(queue.popleft().entry)
            if entries:
                queue = self._streams[stream] = deque(e for e in queue if e.entry not in entries)
            if not queue:
                del self._streams[stream]

    async def backlog(self, partition: int) -> Backlog:
        queues = self._streams_of(partition)
        oldest = min((int(q[0].event["ts"]) for q in queues), default=None)
        return Backlog(sum(len(q) for q in queues), oldest)

    async def sweep(self) -> int:
        """Nothing to find: every stream here is in the table already."""
        return 0
