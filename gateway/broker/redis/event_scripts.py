"""Where the Redis broker keeps the events for the application (PROTOCOL section 11.2),
and how their scripts are wrapped (the Lua itself: scripts/*.lua). (Not `events`: that
one decodes channel messages.)

Keys, under the prefix P (see keys.py for the tags):

    P room:{R}:events     stream  the room's events, in its slot: field `e` = the event
                                  JSON; a message's also `o` = its offset
    P name:{S}:events     stream  the direct messages the name holding S received
    P events:{T}:pending  zset    stream key -> ms when last hinted: the streams of
                                  partition p that may hold events (T: p's tag)
    P events:{T}:lease    string  the node that holds partition p (expires)

A stream's partition is its hash slot % 16 (`event_log.partition_of`); a partition's
tag T is a string whose slot lies in the p-th sixteenth of the slots, so on a Redis
Cluster the partitions' keys spread over the shards as evenly as the slots do.

A write script that may store an event exists twice: plain (`events` false, no event
key, nothing more to do), and with events, where its last key is the stream and its
last arguments the hint's score (or "") and the bound (`--events-backlog`); before its
XADD, a full stream is trimmed to one less than the bound and the number dropped is
returned beside the script's own result: `{result, dropped}`. On one Redis a hint due
is added by the script itself (the partition's hints then come before the stream in
its keys: no round trip more); on a cluster they live in another slot, and the node
adds the hint before it runs the script, with the score "" (`event_keys` counts the
keys the events added).
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.crc import key_slot

from gateway.broker.event_log import PARTITIONS
from gateway.broker.redis import scripts
from gateway.broker.redis.keys import Keys

SLOTS = 16384


def partition_tags() -> tuple[str, ...]:
    """For each partition p, the first tag `p.n` whose slot lies in p's share of slots."""
    tags = []
    share = SLOTS // PARTITIONS
    for partition in range(PARTITIONS):
        n = 0
        while key_slot(f"{partition}.{n}".encode()) // share != partition:
            n += 1
        tags.append(f"{partition}.{n}")
    return tuple(tags)


class EventKeys:
    """The names of the event keys, under one prefix."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._tags = partition_tags()

    def room(self, room: str) -> str:
        """The stream of a room's events (messages, deletes, presence, removals)."""
        return self._keys.room(room) + "events"

    def dm(self, name_key: str) -> str:
        """The stream of the direct messages name key `name_key` receives."""
        return self._keys.name(name_key) + ":events"

    def hints(self, partition: int) -> str:
        """The partition's streams that may hold events."""
        return f"{self._keys.prefix}events:{{{self._tags[partition]}}}:pending"

    def lease(self, partition: int) -> str:
        """Which node holds the partition."""
        return f"{self._keys.prefix}events:{{{self._tags[partition]}}}:lease"

    def pattern(self) -> str:
        """A SCAN pattern matching every event stream (and maybe a few other keys)."""
        return f"{self._keys.prefix}*:events"


def plain(body: str) -> str:
    """The script without events: `events` is false, no event key or argument."""
    return "local events = false\n" + body


def with_events(body: str) -> str:
    """The script storing its events: returns `{its result, events dropped}`."""
    return scripts.EVENTS_PRELUDE + body + "\nend\nreturn {main(), dropped}\n"


def open_event(fields: dict[str, Any]) -> bytes:
    """An event's JSON up to its `name`, which the script adds (and then its id)."""
    text = orjson.dumps({**fields, "name": None})
    assert text.endswith(b"null}")
    return text[: -len(b"null}")]
