"""Reading a room's history on Redis: its stream, numbered within the meta hash's epoch.

Offsets are `EPOCH-SEQ`: the stream entry `SEQ-0` of the room's log, while the meta
hash still names that epoch (a Redis that lost the room starts a new one, and an old
offset is then foreign: `recovered` false, never a wrong place).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

from gateway.broker.base import Replay
from gateway.broker.redis_scripts import Keys
from gateway.errors import BrokerUnavailable
from gateway.events import Message
from gateway.offsets import parse_offset

# What a failed Redis call raises: redis-py's errors, socket errors, and the cluster
# client's own (a slot no primary serves, no reachable node), which is no RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Any Redis or socket error is BrokerUnavailable: the operation did not happen (on a
    cluster too: a slot no primary serves is a RedisClusterException)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(str(exc)) from exc


def decode_message(offset: str, payload: bytes) -> Message:
    """A message as the publish script stored and published it."""
    fields = orjson.loads(payload)
    return Message(
        fields["room"], fields["from"], fields["text"], offset, fields["ts"], fields["origin"]
    )


def _seq_of(stream_id: str, default: float) -> float:
    """The sequence number of a stream id bound (`-`, `+` or `SEQ-0`)."""
    if stream_id in ("-", "+"):
        return default
    return int(stream_id.split("-")[0])


def tombstones(
    room: str,
    epoch: str,
    messages: list[Message],
    deleted: dict[bytes, bytes],
    bounds: tuple[str, str],
    count: int | None,
) -> list[Message]:
    """`messages` (read from `bounds`, the newest `count` if given) with the tombstones
    of that range put back in their places, oldest first."""
    if not deleted:
        return messages
    low, high = _seq_of(bounds[0], 0), _seq_of(bounds[1], float("inf"))
    merged = {int(m.offset.rpartition("-")[2]): m for m in messages}
    if count is not None and len(messages) >= count:
        low = max(low, min(merged))  # older entries were not read: nor their tombstones
    for field, value in deleted.items():
        seq = int(field)
        if low <= seq <= high and seq not in merged:
            stone = orjson.loads(value)
            offset = f"{epoch}-{seq}"
            merged[seq] = Message(room, stone["from"], "", offset, stone["ts"], "", stone["by"])
    ordered = [merged[seq] for seq in sorted(merged)]
    return ordered[-count:] if count is not None else ordered


class RoomHistory:
    """History, replay and positions of rooms, read from their streams."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def position(self, room: str) -> tuple[str, int] | None:
        """The room's epoch and newest sequence number; None for a room with no log."""
        epoch, seq = await self._redis.hmget(self._keys.meta(room), ["epoch", "seq"])
        return (epoch.decode(), int(seq)) if epoch is not None and seq is not None else None

    async def read_log(self, room: str, low: str, high: str, count: int | None) -> list[Message]:
        """Entries from `low` to `high` (stream ids), the newest `count` of them if
        given, with the tombstones of deleted ones in their places. One round trip."""
        keys = self._keys
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.meta(room), "epoch")
                if count is None:
                    pipe.xrange(keys.log(room), min=low, max=high)
                else:
                    pipe.xrevrange(keys.log(room), max=high, min=low, count=count)
                pipe.hgetall(keys.deleted(room))
                epoch, entries, deleted = await pipe.execute()
        if epoch is None:
            return []
        if count is not None:
            entries.reverse()
        return self._with_tombstones(room, epoch, entries, deleted, (low, high), count)

    def _with_tombstones(
        self,
        room: str,
        epoch: bytes,
        entries: list[Any],
        deleted: dict[bytes, bytes],
        bounds: tuple[str, str],
        count: int | None,
    ) -> list[Message]:
        prefix = epoch.decode()
        messages = [
            decode_message(f"{prefix}-{entry_id.decode().split('-')[0]}", fields[b"m"])
            for entry_id, fields in entries
        ]
        return tombstones(room, prefix, messages, deleted, bounds, count)

    async def _parse(self, room: str, offset: str | None) -> int | None:
        """The sequence number of `offset` in the room's current epoch, else None."""
        position = parse_offset(offset) if offset is not None else None
        if position is None:
            return None
        with unavailable_on_error():
            current = await self._redis.hget(self._keys.meta(room), "epoch")
        return position[1] if current is not None and current.decode() == position[0] else None

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        """The newest `limit` messages before `before` (all when None), oldest first."""
        if before is None:
            return await self.read_log(room, "-", "+", limit)
        seq = await self._parse(room, before)
        if seq is None or seq <= 1:
            return []
        return await self.read_log(room, "-", f"{seq - 1}-0", limit)

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        """Messages after `since`; `recovered` false (and the newest `limit`) if unknown."""
        with unavailable_on_error():
            position = await self.position(room)
        newest = f"{position[0]}-{position[1]}" if position else None
        if since is None:
            return Replay(False, [], newest)
        seq = await self._parse(room, since)
        if seq is None or position is None or seq > position[1]:
            return Replay(False, await self.history(room, None, limit), newest)
        if seq == position[1]:
            return Replay(True, [], newest)
        messages = await self.read_log(room, f"{seq + 1}-0", f"{position[1]}-0", None)
        if not messages or messages[0].offset != f"{position[0]}-{seq + 1}":
            return Replay(False, await self.history(room, None, limit), newest)  # trimmed
        return Replay(True, messages, newest)

    async def gap(self, room: str, last: tuple[str, int] | None) -> list[Message]:
        """What the room's log holds after `last` (all of it in a new epoch): the gap a
        resubscription must fill."""
        epoch = await self._redis.hget(self._keys.meta(room), "epoch")
        if epoch is None:
            return []
        same_epoch = last is not None and last[0] == epoch.decode()
        start = f"{last[1] + 1}-0" if last is not None and same_epoch else "-"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._keys.log(room), min=start)
            pipe.hgetall(self._keys.deleted(room))
            entries, deleted = await pipe.execute()
        return self._with_tombstones(room, epoch, entries, deleted, (start, "+"), None)
