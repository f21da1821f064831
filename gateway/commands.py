"""What a client can ask for, decoded from either mode into one shape.

`room=None` means "the connection's current room" (text mode has exactly one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Send:
    """Post `text` to `room`; `id` makes a resend idempotent."""

    room: str | None
    text: str
    id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Enter `room`, replaying after `since` when given."""

    room: str
    since: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave `room`."""

    room: str | None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Who:
    """List the members of `room`."""

    room: str | None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ListRooms:
    """List rooms with their member counts."""

    ref: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """The newest `limit` messages of `room` before offset `before`."""

    room: str | None
    before: str | None = None
    limit: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class DirectSend:
    """A direct message to the user `to`."""

    to: str
    text: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Kick:
    """A moderator takes `name` out of `room`, banning it for `seconds` (0: no ban)."""

    room: str | None
    name: str
    seconds: int = 0
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """A moderator deletes the message at `offset` of `room`."""

    room: str
    offset: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness check; answered with `pong`."""

    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """Text mode's /help."""

    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Quit:
    """Text mode's /quit: close with 1000."""

    ref: str | None = None


Command = (
    Send
    | Join
    | Leave
    | Who
    | ListRooms
    | HistoryQuery
    | DirectSend
    | Kick
    | Delete
    | Ping
    | ShowHelp
    | Quit
)
