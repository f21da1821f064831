"""What one user sees: the current room, the offsets shown there, a pending /join, a
resume in progress and the history owed before live messages (a room's recent messages
on entering it, or the gap of a resume). No I/O: server frames go in, events to show
(and frames to send back) come out, so the resume rules live in one small place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

RECENT_LIMIT = 20  # messages of a room shown on entering it
BACKFILL_LIMIT = 100  # messages read to fill a gap that no `since` could resume
FETCH_REF = "fetch-"  # the refs of the view's own history requests

Frame = dict[str, Any]
Handler = Callable[[Frame], list[Frame] | None]


def now_ms() -> int:
    """The local clock in ms since the epoch, like a server `ts`."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class HistoryFetch:
    """A history request whose answer is shown before the room's live messages.

    The answer is cut after `up_to`, the room's newest offset when it was entered:
    everything after it arrives live (or as the replay of a resume from `up_to`), and
    is held until the answer is shown, so the order stays right and nothing shows twice.
    """

    room: str
    up_to: str
    limit: int
    recent: bool  # the room's recent history, shown as a page; else a gap, shown as live
    ref: str = ""
    held: list[RoomMessage] = field(default_factory=list)

    def request(self) -> Frame:
        """The history request (again, after a reconnect: held messages are replayed)."""
        self.ref, self.held = f"{FETCH_REF}{uuid4().hex}", []
        return {"type": "history", "room": self.room, "limit": self.limit, "ref": self.ref}

    def older(self, messages: list[RoomMessage]) -> list[RoomMessage] | None:
        """The answer's messages up to `up_to`; None when it is not among them."""
        offsets = [msg.offset for msg in messages]
        return messages[: offsets.index(self.up_to) + 1] if self.up_to in offsets else None


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
        self._fetch: HistoryFetch | None = None  # history owed before live messages
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

    def connected(self, name: str, *, resume: bool, since: str | None) -> None:
        """A `welcome` arrived, for a first connection or a resume after `since`."""
        self.name = name
        self._resuming, self._since = resume, since

    def join_frame(self, room: str, ref: str) -> Frame:
        """The frame asking to enter `room`; its answer switches the current room."""
        self._joins[ref] = room
        return {"type": "join", "room": room, "ref": ref}

    def refused(self, ref: str) -> None:
        """The server refused the frame `ref` for good (a /join stays where we are)."""
        self._joins.pop(ref, None)

    def handle(self, frame: Frame, *, claimed: bool = False) -> list[Frame]:
        """Apply one server frame; returns the frames to send back, if any.

        `claimed`: the frame answered a queued request, whose errors the client shows.
        """
        if claimed and frame.get("type") == "error":
            return []
        handler = self._handlers.get(str(frame.get("type")))
        return (handler(frame) or []) if handler is not None else []

    # --- frames --------------------------------------------------------------------

    def _on_subscribed(self, frame: Frame) -> list[Frame]:
        room, offset = str(frame.get("room")), frame.get("offset")
        members = tuple(str(m) for m in frame.get("members") or ())
        if self._joins.pop(str(frame.get("ref")), None) == room:  # the answer to a /join
            old, self.room = self.room, room
            self._seen.pop(old, None)
            self._notify(Joined(room, members))
            return [{"type": "leave", "room": old}, *self._entered(room, offset)]
        if room != self.room:
            return []
        if not self._resuming:  # the first room, at start
            self._notify(Joined(room, members))
            return self._entered(room, offset)
        self._resuming = False
        if self._since is not None and frame.get("recovered") is False:
            self._notify(Status("some messages may have been missed while disconnected"))
        if self._fetch is not None and self._fetch.room == room:  # its answer was lost
            return [self._fetch.request()]
        if self._since is None and offset is not None:
            # Nothing shown and the room was empty when entered: no `since` to resume
            # from, so the server replayed nothing and the gap is read from history.
            self._seen.setdefault(room, SeenOffsets()).last = str(offset)
            self._fetch = HistoryFetch(room, str(offset), BACKFILL_LIMIT, recent=False)
            return [self._fetch.request()]
        return []

    def _entered(self, room: str, offset: object) -> list[Frame]:
        """`room` was entered afresh: ask for its recent history, unless it is empty."""
        self._seen[room] = SeenOffsets(None if offset is None else str(offset))
        self._fetch = None
        if offset is None:
            return []
        self._fetch = HistoryFetch(room, str(offset), RECENT_LIMIT, recent=True)
        return [self._fetch.request()]

    def _on_message(self, frame: Frame) -> None:
        msg = self._message(frame)
        if msg.room != self.room:
            return
        if self._fetch is not None and self._fetch.room == msg.room:
            self._fetch.held.append(msg)
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
        ref = str(frame.get("ref"))
        if self._fetch is not None and ref == self._fetch.ref:
            self._end_fetch(messages)
        elif not ref.startswith(FETCH_REF):  # not the answer to a fetch given up
            self._notify(HistoryPage(str(frame.get("room")), tuple(messages)))

    def _end_fetch(self, messages: list[RoomMessage]) -> None:
        """Show the fetch's answer, then the live messages held meanwhile, each once."""
        fetch, self._fetch = self._fetch, None
        assert fetch is not None
        older = fetch.older(messages)
        if older is None and not fetch.recent:
            self._notify(Status("some messages may have been missed while disconnected"))
        seen = self._seen.setdefault(fetch.room, SeenOffsets())
        fresh = [msg for msg in older or () if seen.add(msg.offset)]
        if fetch.recent and fresh:
            self._notify(HistoryPage(fetch.room, tuple(fresh)))
        elif not fetch.recent:
            for msg in fresh:
                self._notify(msg)
        for msg in fetch.held:
            self._show(msg)

    def _on_error(self, frame: Frame) -> None:
        if self._fetch is not None and frame.get("ref") == self._fetch.ref:
            self._end_fetch([])
        message = str(frame.get("message") or frame.get("code"))
        self._notify(ErrorLine(message, str(frame.get("code") or "")))
