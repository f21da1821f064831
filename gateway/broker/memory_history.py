"""The in-process broker's room history: each room's newest messages, numbered in this
process's epoch (`<epoch>-<seq>`; a new process starts a new one, so an offset from
before is foreign: `recovered` false, never a wrong place), with tombstones in the
place of deleted messages and the ids of recent messages, so a repeat publishes once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.broker.base import Published, Replay
from gateway.events import Message, tombstone
from gateway.names import name_key
from gateway.offsets import parse_offset


@dataclass
class _RoomLog:
    """One room's retained history; offsets are `<epoch>-<seq>`."""

    messages: deque[tuple[int, Message]]
    last_seq: int = 0


class LocalHistory:
    """Every room's retained messages, and the message ids seen lately."""

    def __init__(self, size: int, id_ttl: float, clock: Callable[[], float]) -> None:
        self._size = size  # messages kept per room
        self._id_ttl = id_ttl  # seconds a message id is remembered
        self._clock = clock
        self._epoch = secrets.token_hex(4)
        self._logs: dict[str, _RoomLog] = {}  # room -> its history
        # (room, sender, id) -> offset, expiry
        self._seen_ids: dict[tuple[str, str, str], tuple[str, float]] = {}

    def _parse(self, offset: str | None) -> int | None:
        """The sequence number of one of our offsets; None when foreign or malformed."""
        position = parse_offset(offset) if offset is not None else None
        if position is None or position[0] != self._epoch:
            return None
        return position[1]

    def _remember_id(self, key: tuple[str, str, str], offset: str) -> None:
        now = self._clock()
        while self._seen_ids:
            oldest = next(iter(self._seen_ids))
            if self._seen_ids[oldest][1] > now:
                break
            del self._seen_ids[oldest]
        self._seen_ids[key] = (offset, now + self._id_ttl)

    def append(
        self, room: str, sender: str, text: str, origin: str, message_id: str | None
    ) -> tuple[Published, Message | None]:
        """Store a message at the room's next offset: where it landed, and the message
        (None for a repeat of a message id seen lately, which stores nothing)."""
        id_key = (room, name_key(sender), message_id) if message_id is not None else None
        if id_key is not None:
            seen = self._seen_ids.get(id_key)
            if seen is not None and seen[1] > self._clock():
                return Published(seen[0], duplicate=True), None
        log_ = self._logs.get(room)
        if log_ is None:
            log_ = self._logs[room] = _RoomLog(deque(maxlen=self._size))
        log_.last_seq += 1
        offset = f"{self._epoch}-{log_.last_seq}"
        message = Message(room, sender, text, offset, int(time.time() * 1000), origin)
        log_.messages.append((log_.last_seq, message))
        if id_key is not None:
            self._remember_id(id_key, offset)
        return Published(offset), message

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        """The newest `limit` messages before `before` (all when None), oldest first."""
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        log_ = self._logs.get(room)
        if log_ is None:
            return []
        if before is None:
            picked = [m for _, m in log_.messages]
        else:
            before_seq = self._parse(before)
            if before_seq is None:
                return []
            picked = [m for seq, m in log_.messages if seq < before_seq]
        return picked[-limit:]

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        """Messages after `since`; `recovered` false (and the newest `limit`) if unknown."""
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        log_ = self._logs.get(room)
        newest = f"{self._epoch}-{log_.last_seq}" if log_ and log_.last_seq else None
        since_seq = self._parse(since)
        if since is None:
            return Replay(False, [], newest)
        last_seq = log_.last_seq if log_ else 0
        first_seq = log_.messages[0][0] if log_ and log_.messages else last_seq + 1
        if since_seq is None or since_seq > last_seq or since_seq < first_seq - 1:
            return Replay(False, await self.history(room, None, limit), newest)
        messages = [m for seq, m in log_.messages if seq > since_seq] if log_ else []
        return Replay(True, messages, newest)

    def delete(self, room: str, offset: str, by: str) -> tuple[bool, Message | None]:
        """Put a tombstone by `by` in the place of the message at `offset`: whether the
        room holds one there, and the message deleted now (None: deleted before)."""
        seq = self._parse(offset)
        log_ = self._logs.get(room)
        if seq is None or log_ is None:
            return False, None
        for index, (held_seq, message) in enumerate(log_.messages):
            if held_seq == seq:
                if message.deleted_by is not None:
                    return True, None  # deleted before: nothing more to tell
                log_.messages[index] = (seq, tombstone(message, by))
                return True, message
        return False, None

    def counts(self, rooms: list[str]) -> list[int]:
        """Each room's newest sequence number (0 for a room without messages)."""
        return [log_.last_seq if (log_ := self._logs.get(r)) else 0 for r in rooms]
