"""What the client knows of moderation (docs/protocol.md, "Moderators"): which rooms its user
moderates (the `welcome`'s `moderates`, from the token), the short numbers that name a
room's messages for `/delete`, the deleted ones, and how a ban's end is shown.

Which rooms are moderated only decides whether messages get numbers; the gateway
decides what a moderator may do (`forbidden` otherwise).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace

from cli.events import RoomMessage
from gateway.access import NO_ROOM, PATTERN, Rooms

MAX_NUMBERED = 1000  # messages of a room that keep their number; older ones lose it


def moderated_rooms(patterns: object) -> Rooms:
    """The rooms a `welcome`'s `moderates` names (room names, or prefixes ending in
    `*`); none when it is absent or not a list of patterns."""
    if not isinstance(patterns, list):
        return NO_ROOM
    valid = [p for p in patterns if isinstance(p, str) and PATTERN.fullmatch(p)]
    return Rooms(tuple(valid))


def until_text(ms: int, now: float | None = None) -> str:
    """A ban's end (ms since the epoch) in local time: `HH:MM`, with the date when it
    is not today."""
    moment = time.localtime(ms / 1000)
    today = time.localtime(time.time() if now is None else now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def with_until(message: str, until: int | None) -> str:
    """`message`, followed by when what it refuses ends (a ban) in local time, if it ends."""
    return message if until is None else f"{message} (ends {until_text(until)} local time)"


def ms_field(value: object) -> int | None:
    """A frame's time field (`until`) as ms, or None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


class MessageNumbers:
    """Short numbers (1, 2, ...) for the messages shown in one room, both ways.

    A message shown again (in /history, or as deleted) keeps its number. Only the
    newest MAX_NUMBERED keep one: the oldest number is forgotten first.
    """

    def __init__(self, limit: int = MAX_NUMBERED) -> None:
        self._next = 1
        self._offsets: OrderedDict[int, str] = OrderedDict()  # number -> offset
        self._numbers: dict[str, int] = {}  # offset -> number
        self._limit = limit

    def number(self, offset: str) -> int:
        """The number of the message at `offset`, given now if it had none."""
        if (known := self._numbers.get(offset)) is not None:
            return known
        number, self._next = self._next, self._next + 1
        self._offsets[number], self._numbers[offset] = offset, number
        if len(self._offsets) > self._limit:
            _, old = self._offsets.popitem(last=False)
            del self._numbers[old]
        return number

    def offset(self, number: int) -> str | None:
        """The offset of message `number`, or None when there is no such message (now)."""
        return self._offsets.get(number)


class RoomMarks:
    """How moderation changes the way one room's messages show: numbered (for a
    moderator), and as tombstones once deleted, also when a deleted one comes again
    (held behind a history answer, or in one read before the delete)."""

    def __init__(self) -> None:
        self.numbers = MessageNumbers()
        self._shown: OrderedDict[str, RoomMessage] = OrderedDict()  # offset -> as shown
        self._deleted: dict[str, str] = {}  # offset -> the moderator who deleted it

    def mark(self, msg: RoomMessage, *, numbered: bool) -> RoomMessage:
        """`msg` as it is to be shown now (and remembered so)."""
        by = self._deleted.get(msg.offset)
        if by is not None and not msg.deleted:
            msg = replace(msg, text="", deleted=True, by=by)
        if numbered and msg.number is None:
            msg = replace(msg, number=self.numbers.number(msg.offset))
        self._shown[msg.offset] = msg
        self._shown.move_to_end(msg.offset)
        if len(self._shown) > MAX_NUMBERED:
            self._shown.popitem(last=False)
        return msg

    def delete(self, offset: str, by: str) -> RoomMessage | None:
        """Record that the message at `offset` was deleted; its tombstone when it was
        shown with its text (to show again as deleted), else None."""
        self._deleted[offset] = by
        if len(self._deleted) > MAX_NUMBERED:
            del self._deleted[next(iter(self._deleted))]
        shown = self._shown.get(offset)
        if shown is None or shown.deleted:
            return None
        return replace(shown, text="", deleted=True, by=by)
