"""The chat client: one JSON-mode connection kept alive across drops. No terminal code.

A UI calls `start()`, reads `events()`, calls the actions (`say`, `join`, ...) and
finally `close()`. After a drop the client reconnects with backoff and resumes (`Link`):
`session` takes the name back, `since` (or a history backfill) fills the gap, offsets
already shown are dropped (`RoomView`), and unacked sends go out again with the same
`id` (`Outbox`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any
from uuid import uuid4

import aiohttp

from cli.events import ChatEvent, DirectMessage, ErrorLine, Status
from cli.link import CLOSE_NORMAL, ClientConfig, Link
from cli.moderation import ms_field, until_text
from cli.outbox import Outbox, Outgoing
from cli.view import RoomView, now_ms

__all__ = ["ChatClient", "ClientConfig", "describe"]

MAX_FRAME_BYTES = 64 * 1024
_LABELS = {"send": "message", "dm": "direct message"}  # other frames: "/" + their type
ROOM_RESERVE = 80  # room name and its key, added when the frame is first sent


class ChatClient:
    """One user's connection to the gateway, reconnecting on its own until closed."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self.exit_code = 0
        self.failure = ""  # why the client gave up, when it did
        self._events: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self._outbox = Outbox()
        self._view = RoomView(config.room, config.name, self.notify)
        self._link = Link(
            config, self._view, self._outbox, notify=self.notify, answered=self._answered
        )
        self._task: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()

    @property
    def name(self) -> str:
        """The name the server welcomed us with."""
        return self._view.name

    @property
    def room(self) -> str:
        """The current room."""
        return self._view.room

    @property
    def present(self) -> bool:
        """False once a moderator removed this user from the current room (until /join)."""
        return self._view.present

    @property
    def moderating(self) -> bool:
        """Whether the `welcome` says this user moderates the current room (its messages
        then show their numbers, for /delete)."""
        return self._view.moderating

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._link.ws is not None and not self._link.ws.closed

    @property
    def unanswered(self) -> tuple[str, ...]:
        """What still waits for the server's answer, oldest first: "message" for a room
        message, "direct message", or the command ("/who", "/join", ...)."""
        return tuple(_LABELS.get(item.kind, f"/{item.kind}") for item in self._outbox)

    @property
    def pending(self) -> tuple[str, ...]:
        """The texts of the room messages not acknowledged yet (queued or sent), oldest first."""
        return tuple(str(item.frame["text"]) for item in self._outbox if item.kind == "send")

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect for the first time; raises NameRejected, Rejected or ConnectFailed."""
        self._link.http = aiohttp.ClientSession()
        try:
            ws = await self._link.open(resume=False)
        except BaseException:
            await self._link.http.close()
            raise
        self._task = asyncio.create_task(self._run(ws), name="chat-client")

    async def close(self) -> None:
        """Close with 1000 and stop reconnecting; the event stream then ends."""
        self._link.quitting = True
        ws, task = self._link.ws, self._task
        if ws is not None and not ws.closed:
            with suppress(aiohttp.ClientError, ConnectionError):
                await ws.close(code=CLOSE_NORMAL)
        if task is not None:
            if ws is not None:  # the link sees the close and returns on its own
                await asyncio.wait({task}, timeout=self._config.connect_timeout)
            task.cancel()
            await asyncio.wait({task})
        self._finish()
        if self._link.http is not None:
            await self._link.http.close()
        if task is not None and not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

    async def __aenter__(self) -> ChatClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[ChatEvent]:
        """Everything to show, in order; ends once the client has stopped."""
        while (event := await self._events.get()) is not None:
            yield event

    async def wait_closed(self) -> None:
        """Wait until the client has stopped (closed, or given up for good)."""
        await self._finished.wait()

    async def drain(self, idle_timeout: float) -> bool:
        """Wait until every queued frame is answered; False when some are not, after
        `idle_timeout` s without an answer or because the client stopped."""
        while len(self._outbox) and not self._finished.is_set():
            seen = self._outbox.answered  # read with the length: no answer goes unseen
            waits = {
                asyncio.ensure_future(self._outbox.wait_answered(seen)),
                asyncio.ensure_future(self._finished.wait()),
            }
            done, pending = await asyncio.wait(
                waits, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for waiting in pending:
                waiting.cancel()
            await asyncio.wait(waits)
            if not done:
                break
        return not len(self._outbox)

    # --- actions -------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Send `text` to the current room (queued until acked, resent after a drop)."""
        if self._in_a_room():
            msg_id = uuid4().hex
            self._queue({"type": "send", "text": _utf8(text), "id": msg_id}, ref=msg_id)

    def direct(self, to: str, text: str) -> None:
        """Send a direct message to the user `to`."""
        self._queue({"type": "dm", "to": _utf8(to), "text": _utf8(text)})

    def join(self, room: str) -> None:
        """Enter `room`; once the server confirms, leave the current one."""
        ref = uuid4().hex
        self._queue(self._view.join_frame(room, ref), ref=ref)

    def who(self) -> None:
        """Ask for the members of the current room."""
        if self._in_a_room():
            self._queue({"type": "who"})

    def rooms(self) -> None:
        """Ask for the rooms and their member counts."""
        self._queue({"type": "rooms"})

    def history(self, limit: int) -> None:
        """Ask for the last `limit` messages of the current room."""
        if self._in_a_room():
            self._queue({"type": "history", "limit": limit})

    def kick(self, name: str, seconds: int = 0) -> None:
        """Remove `name` from the current room (moderators); `seconds` > 0 bans it that long."""
        if self._in_a_room(pending_join=False):
            frame: dict[str, Any] = {"type": "kick", "room": self.room, "name": _utf8(name)}
            self._queue(frame | ({"seconds": seconds} if seconds else {}))

    def delete(self, number: int) -> None:
        """Delete the current room's message shown as `#number` (moderators)."""
        if not self._in_a_room(pending_join=False):
            return
        offset = self._view.offset_of(number)
        if offset is None:
            why = "" if self.moderating else " (numbers show in rooms your token moderates)"
            self.notify(ErrorLine(f"no message #{number} in {self.room}{why}"))
        else:
            self._queue({"type": "delete", "room": self.room, "offset": offset})

    def notify(self, event: ChatEvent) -> None:
        """Put a line to show (also local ones: help, usage errors) into the stream."""
        self._events.put_nowait(event)

    # --- internals -----------------------------------------------------------------

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            if failure := await self._link.run(ws):
                self._fail(failure)
        except Exception as exc:  # a bug: say so now, and close() raises it
            self._fail(f"internal error: {exc!r}")
            raise
        finally:
            self._finish()

    def _queue(self, frame: dict[str, Any], ref: str | None = None) -> None:
        item = Outgoing(ref or uuid4().hex, frame)
        frame["ref"] = item.ref
        size = len(json.dumps(frame, ensure_ascii=False).encode()) + ROOM_RESERVE
        if size > MAX_FRAME_BYTES:
            self.notify(ErrorLine("message too long: not sent", "too_long"))
        else:
            self._outbox.put(item)

    def _in_a_room(self, *, pending_join: bool = True) -> bool:
        """True when in a room (or, with `pending_join`, entering one); else says so."""
        if self._view.present or (pending_join and self._view.joining):
            return True
        self.notify(ErrorLine(f"you are in no room (removed from {self.room}): /join ROOM"))
        return False

    def _answered(self, item: Outgoing, reply: dict[str, Any]) -> None:
        if reply.get("type") == "error":
            self._view.refused(item.ref)
            until = ms_field(reply.get("until"))
            self.notify(ErrorLine(str(reply.get("message")), str(reply.get("code")), until))
        elif item.kind == "dm":
            to, text = str(item.frame["to"]), str(item.frame["text"])
            self.notify(DirectMessage(self.name, to, text, now_ms(), outgoing=True))
        elif item.kind == "kick":
            seconds = int(item.frame.get("seconds") or 0)
            ban = f", banned until {until_text(now_ms() + seconds * 1000)}" if seconds else ""
            self.notify(Status(f"kicked {item.frame['name']} from {item.frame['room']}{ban}"))

    def _fail(self, message: str) -> None:
        self.exit_code, self.failure = 1, message
        self.notify(ErrorLine(message))

    def _finish(self) -> None:
        if not self._finished.is_set():
            self._finished.set()
            self._events.put_nowait(None)


def describe(unanswered: tuple[str, ...]) -> str:
    """`ChatClient.unanswered` in words: "2 messages, /who", "1 direct message"."""
    counts: dict[str, int] = {}
    for label in unanswered:
        counts[label] = counts.get(label, 0) + 1
    parts = []
    for label, count in counts.items():
        if label.startswith("/"):
            parts.append(label if count == 1 else f"{label} ({count} times)")
        else:
            parts.append(f"{count} {label}{'s' if count > 1 else ''}")
    return ", ".join(parts) or "nothing"


def _utf8(text: str) -> str:
    """`text` made encodable: lone surrogates (undecodable input bytes) become "?"."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
