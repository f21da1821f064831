"""What one user sees: the current room, the offsets shown there, a pending /join and a
resume in progress. No I/O: server frames go in, events to show (and at most one frame
to send back) come out, so the resume rules live in one small place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from cli.events import (
    ChatEvent,
    DirectMessage,
    ErrorLine,
    HistoryPage,
    Joined,
    MemberList,
    Presence,
    RoomList,
    RoomMessage,
    Status,
)
from cli.outbox import SeenOffsets

BACKFILL_LIMIT = 100

Frame = dict[str, Any]
Handler = Callable[[Frame], Frame | None]


def now_ms() -> int:
    """The local clock in ms since the epoch, like a server `ts`."""
    return int(time.time() * 1000)


class RoomView:
    """The one current room of the UI, and how each server frame changes what is shown.

    `notify` receives the events to show.
    """

    def __init__(self, room: str, name: str, notify: Callable[[ChatEvent], None]) -> None:
        self.room = room
        self.name = name
        self._notify = notify
        self._seen: dict[str, SeenOffsets] = {}  # room -> offsets already shown there
        self._joins: dict[str, str] = {}  # ref -> room of each /join not answered yet
        self._resuming = False  # the next `subscribed` for self.room answers a resume
        self._since: str | None = None  # `since` sent for the resume in progress
        self._held: list[RoomMessage] | None = None  # live messages held during a backfill
        self._backfill_ref = ""
        self._handlers: dict[str, Handler] = {
            "subscribed": self._on_subscribed,
            "message": self._on_message,
            "presence": self._on_presence,
            "dm": self._on_dm,
            "members": self._on_members,
            "rooms": self._on_rooms,
            "history": self._on_history,
            "error": self._on_error,
        }

    # --- connection events ---------------------------------------------------------

    def since(self) -> str | None:
        """The offset to resume the current room after: the last one shown there."""
        seen = self._seen.get(self.room)
        return seen.last if seen is not None else None

    def connected(self, name: str, *, resume: bool, since: str | None) -> Frame | None:
        """A `welcome` arrived; returns a history request when a resume must backfill.

        Without `since` (the room was empty when we joined) the server replays nothing,
        so the gap is read from history; live messages are held back until it arrives.
        """
        self.name = name
        self._resuming, self._since = resume, since
        self._held = None
        if not resume or since is not None:
            return None
        self._held = []
        self._backfill_ref = f"backfill-{uuid4().hex}"
        return {
            "type": "history",
            "room": self.room,
            "limit": BACKFILL_LIMIT,
            "ref": self._backfill_ref,
        }

    def join_frame(self, room: str, ref: str) -> Frame:
        """The frame asking to enter `room`; its answer switches the current room."""
        self._joins[ref] = room
        return {"type": "join", "room": room, "ref": ref}

    def refused(self, ref: str) -> None:
        """The server refused the frame `ref` for good (a /join stays where we are)."""
        self._joins.pop(ref, None)

    def handle(self, frame: Frame, *, claimed: bool = False) -> Frame | None:
        """Apply one server frame; returns a frame to send back, if any.

        `claimed`: the frame answered a queued request, whose errors the client shows.
        """
        if claimed and frame.get("type") == "error":
            return None
        handler = self._handlers.get(str(frame.get("type")))
        return handler(frame) if handler is not None else None

    # --- frames --------------------------------------------------------------------

    def _on_subscribed(self, frame: Frame) -> Frame | None:
        room = str(frame.get("room"))
        members = tuple(str(m) for m in frame.get("members") or ())
        if self._joins.pop(str(frame.get("ref")), None) == room:
            old, self.room = self.room, room
            self._seen.pop(old, None)
            self._seen[room] = SeenOffsets(frame.get("offset"))
            self._notify(Joined(room, members))
            return {"type": "leave", "room": old}
        if room == self.room and self._resuming:
            self._resuming = False
            if self._since is not None and frame.get("recovered") is False:
                self._notify(Status("some messages may have been missed while disconnected"))
        elif room == self.room:
            self._seen[room] = SeenOffsets(frame.get("offset"))
            self._notify(Joined(room, members))
        return None

    def _on_message(self, frame: Frame) -> None:
        msg = self._message(frame)
        if msg.room != self.room:
            return
        if self._held is not None:
            self._held.append(msg)
        else:
            self._show(msg)

    def _message(self, frame: Frame) -> RoomMessage:
        sender = str(frame.get("from"))
        return RoomMessage(
            room=str(frame.get("room")),
            sender=sender,
            text=str(frame.get("text")),
            offset=str(frame.get("offset")),
            ts=int(frame.get("ts") or now_ms()),
            own=sender.casefold() == self.name.casefold(),
        )

    def _show(self, msg: RoomMessage) -> None:
        if self._seen.setdefault(msg.room, SeenOffsets()).add(msg.offset):
            self._notify(msg)

    def _on_presence(self, frame: Frame) -> None:
        name = str(frame.get("name"))
        if frame.get("room") == self.room and name.casefold() != self.name.casefold():
            self._notify(Presence(self.room, str(frame.get("event")), name))

    def _on_dm(self, frame: Frame) -> None:
        sender = str(frame.get("from"))
        self._notify(
            DirectMessage(
                sender=sender,
                to=str(frame.get("to")),
                text=str(frame.get("text")),
                ts=int(frame.get("ts") or now_ms()),
                outgoing=sender.casefold() == self.name.casefold(),
            )
        )

    def _on_members(self, frame: Frame) -> None:
        members = tuple(str(m) for m in frame.get("members") or ())
        self._notify(MemberList(str(frame.get("room")), members))

    def _on_rooms(self, frame: Frame) -> None:
        rooms = frame.get("rooms") or ()
        self._notify(RoomList(tuple((str(r.get("room")), int(r.get("members", 0))) for r in rooms)))

    def _on_history(self, frame: Frame) -> None:
        messages = [self._message(m) for m in frame.get("messages") or ()]
        if self._held is not None and frame.get("ref") == self._backfill_ref:
            self._end_backfill(messages)
        else:
            self._notify(HistoryPage(str(frame.get("room")), tuple(messages)))

    def _end_backfill(self, messages: list[RoomMessage]) -> None:
        held, self._held = self._held or [], None
        for msg in [*messages, *held]:
            if msg.room == self.room:
                self._show(msg)

    def _on_error(self, frame: Frame) -> None:
        if self._held is not None and frame.get("ref") == self._backfill_ref:
            self._end_backfill([])
        message = str(frame.get("message") or frame.get("code"))
        self._notify(ErrorLine(message, str(frame.get("code") or "")))
