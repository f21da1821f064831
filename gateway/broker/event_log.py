"""The events a broker keeps for the application (PROTOCOL section 11.2) until it
confirms them.

With `--events-url` every broker stores an event in the same atomic step as what it
tells of (a message's event in its publish script), in a stream of its own: one per
room (messages, deletes, presence, removals) and one per name for the direct messages
it receives. A stream belongs to one of `PARTITIONS` partitions (by its hash slot, so
on a Redis Cluster the partitions spread over the shards as rooms do); one node at a
time holds a partition's lease and posts its events (gateway/feed.py), oldest first in
each stream, and confirms them once the application answered 2xx.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.crc import key_slot

PARTITIONS = 16


def partition_of(stream: str) -> int:
    """The partition of a stream: its Redis Cluster hash slot (its hash tag's, so a
    room's stream falls with the room's keys) modulo `PARTITIONS`, on every broker."""
    return int(key_slot(stream.encode())) % PARTITIONS


class EventIds:
    """Event ids unique per process: a random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        """A new id."""
        return f"{self._prefix}-{next(self._counter)}"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event waiting for the application: the stream it waits in, its place there
    (what `EventLog.confirm` removes) and the JSON object POSTed (`id`, `type`, `ts`, ...)."""

    stream: str
    entry: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Backlog:
    """A partition's waiting events: how many, and when the oldest happened (epoch ms)."""

    count: int
    oldest_ts: int | None


# Called with the stream and how many of its oldest events the bound dropped.
DropReport = Callable[[str, int], None]


class EventLog(Protocol):
    """A broker's store of events for the application; every method may raise
    BrokerUnavailable."""

    def on_dropped(self, report: DropReport) -> None:
        """Call `report` whenever `--events-backlog` drops events from a stream."""

    async def lease(self, partition: int, ttl: float) -> bool:
        """Take or renew this node's lease of `partition` for `ttl` seconds; False while
        another node holds it."""

    async def release(self, partition: int) -> None:
        """Give `partition`'s lease up (a node stopping), if this node holds it."""

    async def pending(self, partition: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` of the partition's waiting events, each stream's oldest first."""

    async def confirm(self, events: Sequence[StoredEvent]) -> None:
        """The application has these: remove them (a repeat is harmless)."""

    async def backlog(self, partition: int) -> Backlog:
        """How many events of `partition` wait, and the oldest one's time."""

    async def sweep(self) -> int:
        """The backstop for a publisher that stalled between its hint and its event:
        find every stream that holds events (a SCAN of the keyspace: call it every few
        minutes, from one node) and hint it again; how many were found."""
