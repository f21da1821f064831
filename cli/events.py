"""What the client hands to a UI: one small frozen dataclass per kind of line to show.

The client turns server frames (and its own state changes) into these; the UIs only
render them (`cli.render`), so the terminal and pipe modes cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A message in the current room; `own` when it came from this user.

    `number` names it for `/delete` (shown to moderators of the room only); a
    `deleted` one is a tombstone, without its text, `by` naming the moderator.
    """

    room: str
    sender: str
    text: str
    offset: str
    ts: int
    own: bool = False
    number: int | None = None
    deleted: bool = False
    by: str = ""


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """A moderator deleted a message shown earlier: `message`, now its tombstone."""

    message: RoomMessage


@dataclass(frozen=True, slots=True)
class Removed:
    """A moderator removed this user from `room` (kicked; banned until `until`, ms).

    `current`: it was the current room, so the client is now in no room.
    """

    room: str
    by: str
    until: int | None = None
    current: bool = True


@dataclass(frozen=True, slots=True)
class Presence:
    """`name` entered (`join`) or left (`leave`) the current room."""

    room: str
    event: str
    name: str


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A direct message; `outgoing` when this user sent it (here or on another connection)."""

    sender: str
    to: str
    text: str
    ts: int
    outgoing: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    """This client is now in `room`, with these members."""

    room: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberList:
    """The answer to /who."""

    room: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoomList:
    """The answer to /rooms: (room, member count) pairs, and how many rooms there are
    in all (a gateway lists the busiest 100 at most)."""

    rooms: tuple[tuple[str, int], ...]
    total: int = 0


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The answer to /history: messages, oldest first."""

    room: str
    messages: tuple[RoomMessage, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """An informational line from the client itself (reconnecting, help, ...)."""

    text: str


@dataclass(frozen=True, slots=True)
class HelpText:
    """Lines of local help, shown as they are."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ErrorLine:
    """An error to show; `code` is the protocol's error code, or "" for local errors.

    `until` (ms since the epoch): when what was refused ends (a ban).
    """

    message: str
    code: str = ""
    until: int | None = None


ChatEvent = (
    RoomMessage
    | MessageDeleted
    | Removed
    | Presence
    | DirectMessage
    | Joined
    | MemberList
    | RoomList
    | HistoryPage
    | Status
    | HelpText
    | ErrorLine
)
