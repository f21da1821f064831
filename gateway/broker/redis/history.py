"""Reading a room's history on Redis: its stream, numbered within the meta hash's epoch.

Offsets are `EPOCH-SEQ`: the stream entry `SEQ-0` of the room's log, while the meta
hash still names that epoch (a Redis that lost the room starts a new one, and an old
offset is then foreign: `recovered` false, never a wrong place).
"""

from __future__ import annotations

import orjson

from gateway.broker.base import Replay
from gateway.broker.redis.context import RedisContext
from gateway.broker.redis.errors import unavailable_on_error
from gateway.events import Message
from gateway.offsets import parse_offset


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


def _seq(message: Message) -> int:
    return int(message.offset.rpartition("-")[2])


def merge_log(
    room: str,
    epoch: str,
    messages: list[Message],
    deleted: dict[bytes, bytes],
    bounds: tuple[str, str],
    count: int | None,
    floor: int,
) -> list[Message]:
    """`messages` (read from `bounds`, the newest `count` if given, oldest first) with
    the tombstones of that range put back in their places. What lies below `floor`, the
    oldest sequence number the room keeps, is gone: trimming (`MINID ~`) may leave a few
    entries more, and a tombstone may outlive its entry's trimming."""
    low, high = max(_seq_of(bounds[0], 0), floor), _seq_of(bounds[1], float("inf"))
    if count is not None and len(messages) >= count and messages:
        low = max(low, _seq(messages[0]))  # older entries were not read: nor their tombstones
    merged = {_seq(m): m for m in messages if _seq(m) >= low}
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

    def __init__(self, context: RedisContext, history_size: int) -> None:
        self._redis = context.redis
        self._keys = context.keys
        self._size = history_size  # the room keeps the newest this many offsets

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
                pipe.hmget(keys.meta(room), ["epoch", "seq"])
                if count is None:
                    pipe.xrange(keys.log(room), min=low, max=high)
                else:
                    pipe.xrevrange(keys.log(room), max=high, min=low, count=count)
                pipe.hgetall(keys.deleted(room))
                meta, entries, deleted = await pipe.execute()
        if count is not None:
            entries.reverse()
        return self._merged(room, meta, entries, deleted, (low, high), count)

    def _merged(
        self,
        room: str,
        meta: list[bytes | None],
        entries: list[tuple[bytes, dict[bytes, bytes]]],  # XRANGE: (id, fields)
        deleted: dict[bytes, bytes],
        bounds: tuple[str, str],
        count: int | None,
    ) -> list[Message]:
        """The entries read as messages, tombstones in place, nothing below the floor."""
        epoch, newest = meta
        if epoch is None:
            return []
        prefix = epoch.decode()
        messages = [
            decode_message(f"{prefix}-{entry_id.decode().split('-')[0]}", fields[b"m"])
            for entry_id, fields in entries
        ]
        floor = int(newest) - self._size + 1 if newest is not None else 1
        return merge_log(room, prefix, messages, deleted, bounds, count, floor)

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
        if len(messages) != position[1] - seq:  # offsets are dense: some were trimmed
            return Replay(False, await self.history(room, None, limit), newest)
        return Replay(True, messages, newest)

    async def gap(self, room: str, last: tuple[str, int] | None) -> list[Message]:
        """What the room's log holds after `last` (all of it in a new epoch): the gap a
        resubscription must fill."""
        meta = await self._redis.hmget(self._keys.meta(room), ["epoch", "seq"])
        if meta[0] is None:
            return []
        same_epoch = last is not None and last[0] == meta[0].decode()
        start = f"{last[1] + 1}-0" if last is not None and same_epoch else "-"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._keys.log(room), min=start)
            pipe.hgetall(self._keys.deleted(room))
            entries, deleted = await pipe.execute()
        return self._merged(room, meta, entries, deleted, (start, "+"), None)
