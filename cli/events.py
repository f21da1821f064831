"""What the client hands to a UI: one small frozen dataclass per kind of line to show.

The client turns server frames (and its own state changes) into these; the UIs only
render them (`cli.render`), so the terminal and pipe modes cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A message in the current room; `own` when it came from this user."""

    room: str
    sender: str
    text: str
    offset: str
    ts: int
    own: bool = False


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
    """The answer to /rooms: (room, member count) pairs."""

    rooms: tuple[tuple[str, int], ...]


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
    """An error to show; `code` is the protocol's error code, or "" for local errors."""

    message: str
    code: str = ""


ChatEvent = (
    RoomMessage
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
