"""What the server sends: room events, direct messages and answers to one connection.

Each class knows its JSON wire form (`wire()`); the text form lives in the text codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Message:
    """A room message as stored and delivered. `origin` is the sending connection's ref."""

    room: str
    sender: str
    text: str
    offset: str
    ts: int
    origin: str = ""
    deleted_by: str | None = None  # a tombstone: the moderator who deleted it (no text)

    def wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "message",
            "room": self.room,
            "from": self.sender,
            "text": self.text,
            "offset": self.offset,
            "ts": self.ts,
        }
        if self.deleted_by is not None:
            frame["deleted"] = True
            frame["by"] = self.deleted_by
        return frame


def tombstone(message: Message, by: str) -> Message:
    """What is left of `message` once `by` deleted it: its place, sender and time."""
    return Message(message.room, message.sender, "", message.offset, message.ts, "", by)


@dataclass(frozen=True, slots=True)
class Deleted:
    """A moderator deleted the message at `offset` of `room`."""

    room: str
    offset: str
    by: str

    def wire(self) -> dict[str, Any]:
        return {"type": "deleted", "room": self.room, "offset": self.offset, "by": self.by}


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A name's first connection entered a room, or its last one left."""

    room: str
    event: Literal["join", "leave"]
    name: str

    def wire(self) -> dict[str, Any]:
        return {"type": "presence", "room": self.room, "event": self.event, "name": self.name}


@dataclass(frozen=True, slots=True)
class Direct:
    """A direct message; goes to every connection of `to` and the sender's other ones."""

    sender: str
    to: str
    text: str
    ts: int
    origin: str = ""

    def wire(self) -> dict[str, Any]:
        return {"type": "dm", "from": self.sender, "to": self.to, "text": self.text, "ts": self.ts}


RoomEvent = Message | PresenceChange | Deleted


@dataclass(frozen=True, slots=True)
class Removed:
    """This connection was taken out of `room` by a moderator (banned until `until`)."""

    room: str
    by: str
    until: int | None = None

    def wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "removed", "room": self.room, "by": self.by}
        if self.until is not None:
            frame["until"] = self.until
        return frame


@dataclass(frozen=True, slots=True)
class Welcome:
    """Always the first JSON frame."""

    name: str
    node: str
    session: str
    moderates: tuple[str, ...] = ()  # the token's `moderates` patterns, if any

    def wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "welcome",
            "name": self.name,
            "node": self.node,
            "session": self.session,
            "protocol": 1,
        }
        if self.moderates:
            frame["moderates"] = list(self.moderates)
        return frame


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The answer to a join: who is there and where the room stands."""

    room: str
    members: list[str]
    offset: str | None
    recovered: bool
    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        return _with_ref(
            {
                "type": "subscribed",
                "room": self.room,
                "members": self.members,
                "offset": self.offset,
                "recovered": self.recovered,
            },
            self.ref,
        )


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The answer to a leave."""

    room: str
    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        return _with_ref({"type": "unsubscribed", "room": self.room}, self.ref)


@dataclass(frozen=True, slots=True)
class Members:
    """The answer to who."""

    room: str
    members: list[str]
    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        return _with_ref({"type": "members", "room": self.room, "members": self.members}, self.ref)


@dataclass(frozen=True, slots=True)
class RoomList:
    """The answer to rooms: (room, member count) pairs."""

    rooms: list[tuple[str, int]]
    total: int  # rooms in all (more than listed when the list was cut)
    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        rooms = [{"room": room, "members": count} for room, count in self.rooms]
        return _with_ref({"type": "rooms", "rooms": rooms, "total": self.total}, self.ref)


@dataclass(frozen=True, slots=True)
class History:
    """The answer to history: messages, oldest first."""

    room: str
    messages: list[Message]
    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        messages = [m.wire() for m in self.messages]
        return _with_ref({"type": "history", "room": self.room, "messages": messages}, self.ref)


@dataclass(frozen=True, slots=True)
class Ack:
    """A send or dm was accepted; `offset` for room messages."""

    ref: str | None
    offset: str | None = None

    def wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "ack", "ref": self.ref}
        if self.offset is not None:
            frame["offset"] = self.offset
        return frame


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ping."""

    ref: str | None = None

    def wire(self) -> dict[str, Any]:
        return _with_ref({"type": "pong"}, self.ref)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error answer; the connection stays open unless it is closed next."""

    code: str
    message: str
    ref: str | None = None
    until: int | None = None  # `banned`: when the ban ends (epoch milliseconds)

    def wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.until is not None:
            frame["until"] = self.until
        return _with_ref(frame, self.ref)


@dataclass(frozen=True, slots=True)
class Notice:
    """Text mode only: an informational line (help, welcome). Not sent in JSON mode."""

    lines: list[str] = field(default_factory=list)

    def wire(self) -> dict[str, Any] | None:
        return None


Event = (
    Message
    | PresenceChange
    | Deleted
    | Removed
    | Direct
    | Welcome
    | Subscribed
    | Unsubscribed
    | Members
    | RoomList
    | History
    | Ack
    | Pong
    | ErrorReply
    | Notice
)


def _with_ref(frame: dict[str, Any], ref: str | None) -> dict[str, Any]:
    if ref is not None:
        frame["ref"] = ref
    return frame
