"""What one user sees: the current room, the offsets shown there, a pending /join, a
resume in progress and the history owed before live messages (a room's recent messages
on entering it, or the gap of a resume); and moderation: the messages' numbers for a
moderator, the ones deleted, a removal from the room. No I/O: server frames go in,
events to show (and frames to send back) come out, so the resume rules live in one
small place.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cli.events import (
    ChatEvent,
    DirectMessage,
    ErrorLine,
    HistoryPage,
    Joined,
    MemberList,
    MessageDeleted,
    Presence,
    Removed,
    RoomList,
    RoomMessage,
    Status,
)
from cli.fetch import FETCH_REF, Frame, HistoryFetch
from cli.moderation import RoomMarks, ms_field
from cli.outbox import SeenOffsets
from gateway.access import NO_ROOM, Rooms

RECENT_LIMIT = 20  # messages of a room shown on entering it
BACKFILL_LIMIT = 100  # messages read to fill a gap that no `since` could resume
Handler = Callable[[Frame], list[Frame] | None]


def now_ms() -> int:
    """The local clock in ms since the epoch, like a server `ts`."""
    return int(time.time() * 1000)


class RoomView:
    """The one current room of the UI, and how each server frame changes what is shown.

    `notify` receives the events to show. `moderates`: the rooms whose messages get a
    number, for `/delete` (the `welcome` says; the server decides what is allowed).
    After a moderator removed the user from it, `room` stays the room last entered
    but `present` is False until a /join enters another one.
    """

    def __init__(self, room: str, name: str, notify: Callable[[ChatEvent], None]) -> None:
        self.room = room
        self.name = name
        self.present = True  # False once removed from `room` by a moderator
        self.moderates = NO_ROOM  # from the `welcome`
        self._notify = notify
        self._seen: dict[str, SeenOffsets] = {}  # room -> offsets already shown there
        self._joins: dict[str, str] = {}  # ref -> room of each /join not answered yet
        self._resuming = False  # the next `subscribed` for self.room answers a resume
        self._since: str | None = None  # `since` sent for the resume in progress
        self._fetch: HistoryFetch | None = None  # history owed before live messages
        self._entering: str | None = None  # the /join that the handshake's room answers
        self._marks = RoomMarks()  # the current room's numbers and deleted messages
        self._handlers: dict[str, Handler] = {
            "subscribed": self._on_subscribed,
            "message": self._on_message,
            "presence": self._on_presence,
            "dm": self._on_dm,
            "members": self._on_members,
            "rooms": self._on_rooms,
            "history": self._on_history,
            "removed": self._on_removed,
            "deleted": self._on_deleted,
            "error": self._on_error,
        }

    # --- connection events ---------------------------------------------------------

    @property
    def moderating(self) -> bool:
        """Whether the token names the current room among those its user moderates."""
        return self.present and self.moderates.allows(self.room)

    @property
    def joining(self) -> bool:
        """Whether a /join waits for its answer."""
        return bool(self._joins)

    def since(self) -> str | None:
        """The offset to resume the current room after: the last one shown there."""
        seen = self._seen.get(self.room) if self.present else None
        return seen.last if seen is not None else None

    def offset_of(self, number: int) -> str | None:
        """The offset of the current room's message shown as `#number`, if any."""
        return self._marks.numbers.offset(number) if self.present else None

    def connected(
        self,
        name: str,
        *,
        resume: bool,
        since: str | None,
        entering: str | None = None,
        moderates: Rooms = NO_ROOM,
    ) -> None:
        """A `welcome` arrived, for a first connection or a resume after `since`;
        `entering`: the ref of the /join whose room the handshake entered."""
        self.name, self.moderates = name, moderates
        self._resuming, self._since = resume, since
        self._entering = entering

    def out_of_room(self) -> None:
        """The user is out of the current room: removed, or refused it at a reconnect."""
        self.present, self._fetch, self._marks = False, None, RoomMarks()
        self._seen.pop(self.room, None)

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
        ref = frame.get("ref")
        if ref is None and self._entering is not None:  # the handshake entered a /join's room
            ref, self._entering = self._entering, None
        if self._joins.pop(str(ref), None) == room:  # the answer to a /join
            old, self.room = self.room, room
            was_present, self.present = self.present, True
            self._seen.pop(old, None)
            self._notify(Joined(room, members))
            leave = [{"type": "leave", "room": old}] if was_present and old != room else []
            return [*leave, *self._entered(room, offset)]
        if not self._here(room):
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
        self._fetch, self._marks = None, RoomMarks()
        if offset is None:
            return []
        self._fetch = HistoryFetch(room, str(offset), RECENT_LIMIT, recent=True)
        return [self._fetch.request()]

    def _here(self, room: object) -> bool:
        """Whether `room` is the current room, and the user is still in it."""
        return self.present and room == self.room

    def _on_message(self, frame: Frame) -> None:
        msg = self._message(frame)
        if not self._here(msg.room):
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
            deleted=frame.get("deleted") is True,  # a tombstone: history, a replay
            by=str(frame.get("by") or ""),
        )

    def _show(self, msg: RoomMessage) -> None:
        if self._seen.setdefault(msg.room, SeenOffsets()).add(msg.offset):
            self._emit(msg)
        elif msg.deleted:  # shown before with its text: deleted since
            self._delete(msg.room, msg.offset, msg.by)

    def _emit(self, event: ChatEvent) -> None:
        """Show `event`, its messages marked: numbered for a moderator, and as deleted
        when a `deleted` for them came first."""
        if isinstance(event, RoomMessage):
            event = self._mark(event)
        elif isinstance(event, HistoryPage):
            event = HistoryPage(event.room, tuple(self._mark(m) for m in event.messages))
        elif isinstance(event, MessageDeleted):
            event = MessageDeleted(self._mark(event.message))
        self._notify(event)

    def _mark(self, msg: RoomMessage) -> RoomMessage:
        if msg.room != self.room:
            return msg
        return self._marks.mark(msg, numbered=self.moderating)

    def _delete(self, room: str, offset: str, by: str) -> None:
        """The message at `offset` was deleted: shown again as deleted if it was shown;
        a copy still on its way (held, or in a history answer) shows as deleted."""
        if self._here(room) and (tombstone := self._marks.delete(offset, by)) is not None:
            self._emit(MessageDeleted(tombstone))

    def _on_deleted(self, frame: Frame) -> None:
        self._delete(str(frame.get("room")), str(frame.get("offset")), str(frame.get("by") or ""))

    def _on_removed(self, frame: Frame) -> None:
        room = str(frame.get("room"))
        current = self._here(room)
        if current:  # out of it: no message, no resume, no /delete there any more
            self.out_of_room()
        until = ms_field(frame.get("until"))
        self._notify(Removed(room, str(frame.get("by") or ""), until, current))

    def _on_presence(self, frame: Frame) -> None:
        name = str(frame.get("name"))
        if self._here(frame.get("room")) and name.casefold() != self.name.casefold():
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
        listed = frame.get("rooms") or ()
        rooms = tuple((str(r.get("room")), int(r.get("members", 0))) for r in listed)
        total = frame.get("total")
        self._notify(RoomList(rooms, total if isinstance(total, int) else len(rooms)))

    def _on_history(self, frame: Frame) -> None:
        messages = [self._message(m) for m in frame.get("messages") or ()]
        ref = str(frame.get("ref"))
        if self._fetch is not None and ref == self._fetch.ref:
            self._end_fetch(messages)
        elif not ref.startswith(FETCH_REF):  # not the answer to a fetch given up
            self._emit(HistoryPage(str(frame.get("room")), tuple(messages)))

    def _end_fetch(self, messages: list[RoomMessage]) -> None:
        """Show the fetch's answer, then the live messages held meanwhile, each once."""
        fetch, self._fetch = self._fetch, None
        assert fetch is not None
        older = fetch.older(messages)
        if older is None and not fetch.recent:
            self._notify(Status("some messages may have been missed while disconnected"))
        seen = self._seen.setdefault(fetch.room, SeenOffsets())
        fresh: list[RoomMessage] = []
        for msg in older or ():
            if seen.add(msg.offset):
                fresh.append(msg)
            elif msg.deleted:  # shown before with its text: deleted since
                self._delete(msg.room, msg.offset, msg.by)
        if fetch.recent and fresh:
            self._emit(HistoryPage(fetch.room, tuple(fresh)))
        elif not fetch.recent:
            for msg in fresh:
                self._emit(msg)
        for msg in fetch.held:
            self._show(msg)

    def _on_error(self, frame: Frame) -> None:
        if self._fetch is not None and frame.get("ref") == self._fetch.ref:
            self._end_fetch([])
        message = str(frame.get("message") or frame.get("code"))
        until = ms_field(frame.get("until"))
        self._notify(ErrorLine(message, str(frame.get("code") or ""), until))
