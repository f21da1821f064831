"""The chat client: one JSON-mode connection kept alive across drops. No terminal code.

A UI calls `start()`, reads `events()`, calls the actions (`say`, `join`, ...) and
finally `close()`. After a drop the client reconnects with backoff and resumes:
`session` takes the name back, `since` (or a history backfill) fills the gap, offsets
already shown are dropped (`RoomView`), and unacked sends go out again with the same
`id` (`Outbox`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any
from uuid import uuid4

import aiohttp

from cli.connection import (
    ConnectFailed,
    NameRejected,
    Rejected,
    Unauthorized,
    backoff,
    decode,
    open_connection,
)
from cli.events import ChatEvent, DirectMessage, ErrorLine, Status
from cli.outbox import Outbox, Outgoing
from cli.view import RoomView, now_ms

CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1001, 1008, 1009
CLOSE_TAKEN_OVER = 4000
CLOSE = aiohttp.WSMsgType.CLOSE
MAX_FRAME_BYTES = 64 * 1024
ROOM_RESERVE = 80  # room name and its key, added when the frame is first sent
ROOM_COMMANDS = frozenset({"send", "who", "history"})


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Where and who to connect as, and the timing knobs."""

    url: str
    name: str  # may be "" with a token: the token's name is taken
    room: str = "lobby"
    token: str | None = None  # sent as `Authorization: Bearer`, on every (re)connect
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    connect_timeout: float = 10.0
    heartbeat: float = 20.0


class ChatClient:
    """One user's connection to the gateway, reconnecting on its own until closed."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self.exit_code = 0
        self.failure = ""  # why the client gave up, when it did
        self._events: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self._outbox = Outbox()
        self._view = RoomView(config.room, config.name, self.notify)
        self._session: str | None = None  # secret from the last welcome
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._quitting = False
        self._close_reason = ""  # what the server said when it last closed

    @property
    def name(self) -> str:
        """The name the server welcomed us with."""
        return self._view.name

    @property
    def room(self) -> str:
        """The current room."""
        return self._view.room

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._ws is not None and not self._ws.closed

    @property
    def unacked(self) -> int:
        """How many sends still wait for their ack."""
        return len(self._outbox)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect for the first time; raises NameRejected, Rejected or ConnectFailed."""
        self._http = aiohttp.ClientSession()
        try:
            ws = await self._open(resume=False)
        except BaseException:
            await self._http.close()
            raise
        self._task = asyncio.create_task(self._supervise(ws), name="chat-client")

    async def close(self) -> None:
        """Close with 1000 and stop reconnecting; the event stream then ends."""
        self._quitting = True
        ws, task = self._ws, self._task
        if ws is not None and not ws.closed:
            with suppress(aiohttp.ClientError, ConnectionError):
                await ws.close(code=CLOSE_NORMAL)
        if task is not None:
            if ws is not None:  # the supervisor sees the close and returns on its own
                await asyncio.wait({task}, timeout=self._config.connect_timeout)
            task.cancel()
            await asyncio.wait({task})
        self._finish()
        if self._http is not None:
            await self._http.close()
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
        """Wait until every send is answered; False after `idle_timeout` s without progress."""
        while len(self._outbox) and not self._finished.is_set():
            waits = {
                asyncio.ensure_future(self._outbox.wait_progress()),
                asyncio.ensure_future(self._finished.wait()),
            }
            done, pending = await asyncio.wait(
                waits, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for waiting in pending:
                waiting.cancel()
            await asyncio.wait(waits)
            if not done:
                return False
        return not len(self._outbox)

    # --- actions -------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Send `text` to the current room (queued until acked, resent after a drop)."""
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
        self._queue({"type": "who"})

    def rooms(self) -> None:
        """Ask for the rooms and their member counts."""
        self._queue({"type": "rooms"})

    def history(self, limit: int) -> None:
        """Ask for the last `limit` messages of the current room."""
        self._queue({"type": "history", "limit": limit})

    def notify(self, event: ChatEvent) -> None:
        """Put a line to show (also local ones: help, usage errors) into the stream."""
        self._events.put_nowait(event)

    # --- connection loop -----------------------------------------------------------

    async def _open(self, *, resume: bool) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None, "start() opens the HTTP session first"
        since = self._view.since() if resume else None
        query = {"room": self.room}
        optional = {"name": self.name, "since": since, "session": self._session}
        query.update({key: value for key, value in optional.items() if value})
        token = self._config.token
        try:
            opened = await open_connection(
                self._http,
                self._config.url,
                query,
                wait_limit=self._config.connect_timeout,
                heartbeat=self._config.heartbeat,
                # A header, not ?token=: URLs end up in access logs.
                headers={"Authorization": f"Bearer {token}"} if token else None,
            )
        except Unauthorized as exc:
            raise Unauthorized(_unauthorized_text(exc.message, token), exc.code) from None
        self._session = opened.welcome.get("session") or self._session
        name = str(opened.welcome.get("name") or self.name)
        backfill = self._view.connected(name, resume=resume, since=since)
        if backfill is not None:
            await self._send_quietly(opened.ws, backfill)
        self._ws = opened.ws
        return opened.ws

    async def _supervise(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                code = await self._serve(ws)
                self._ws = None
                if self._quitting:
                    return
                if code == CLOSE_TAKEN_OVER:
                    self._fail("session taken over by another connection")
                    return
                if code == CLOSE_POLICY:
                    reason = self._close_reason or "policy violation"
                    self._fail(f"the server closed the connection: {reason}")
                    return
                self._interrupted(code)
                self.notify(Status("reconnecting..."))
                ws = await self._reconnect(at_once=code == CLOSE_GOING_AWAY)
                self.notify(Status("reconnected"))
        except Rejected as exc:
            prefix = "cannot take the name back: " if isinstance(exc, NameRejected) else ""
            self._fail(prefix + exc.message)
        except Exception as exc:  # a bug: say so now, and close() raises it
            self._fail(f"internal error: {exc!r}")
            raise
        finally:
            if self._ws is not None:
                await self._ws.close()
            self._finish()

    async def _reconnect(self, *, at_once: bool) -> aiohttp.ClientWebSocketResponse:
        delays = backoff(self._config.backoff_initial, self._config.backoff_max)
        delay = 0.0 if at_once else next(delays)
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._open(resume=True)
            except ConnectFailed:
                delay = next(delays)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> int | None:
        """Read and send on one connection until it ends; returns its close code."""
        send = partial(self._transmit, ws)
        sender = asyncio.create_task(self._outbox.pump(send, self._answered), name="chat-send")
        reader = asyncio.create_task(self._read_loop(ws), name="chat-read")
        tasks = {sender, reader}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if reader not in done:  # sending failed: the reader will see why, soon
                await asyncio.wait({reader}, timeout=self._config.connect_timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        return ws.close_code

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                frame = decode(msg.data)
                if frame is None:
                    continue
                reply = self._view.handle(frame, claimed=self._outbox.answer(frame))
                if reply is not None:
                    await self._send_quietly(ws, reply)
            elif msg.type is not aiohttp.WSMsgType.BINARY:  # closed, or broken
                self._close_reason = str(msg.extra or "") if msg.type is CLOSE else ""
                return

    async def _send_quietly(self, ws: aiohttp.ClientWebSocketResponse, frame: object) -> bool:
        """Send one frame; False when the connection is already broken."""
        try:
            await ws.send_str(json.dumps(frame, ensure_ascii=False))
        except (aiohttp.ClientError, ConnectionError):
            return False
        return True

    async def _transmit(self, ws: aiohttp.ClientWebSocketResponse, item: Outgoing) -> bool:
        """Send a queued frame; a room command not sent before goes to the current room."""
        if item.kind in ROOM_COMMANDS:
            item.frame.setdefault("room", self.room)
        return await self._send_quietly(ws, item.frame)

    def _queue(self, frame: dict[str, Any], ref: str | None = None) -> None:
        item = Outgoing(ref or uuid4().hex, frame)
        frame["ref"] = item.ref
        size = len(json.dumps(frame, ensure_ascii=False).encode()) + ROOM_RESERVE
        if size > MAX_FRAME_BYTES:
            self.notify(ErrorLine("message too long: not sent", "too_long"))
        else:
            self._outbox.put(item)

    def _answered(self, item: Outgoing, reply: dict[str, Any]) -> None:
        if reply.get("type") == "error":
            self._view.refused(item.ref)
            self.notify(ErrorLine(str(reply.get("message")), str(reply.get("code"))))
        elif item.kind == "dm":
            to, text = str(item.frame["to"]), str(item.frame["text"])
            self.notify(DirectMessage(self.name, to, text, now_ms(), outgoing=True))

    def _interrupted(self, code: int | None) -> None:
        """Tidy what a dropped connection left half done."""
        head = self._outbox.peek()
        if code == CLOSE_TOO_BIG and head is not None:
            self._outbox.done(head)
            self.notify(ErrorLine("message too large for the server: not sent", "too_long"))

    def _fail(self, message: str) -> None:
        self.exit_code, self.failure = 1, message
        self.notify(ErrorLine(message))

    def _finish(self) -> None:
        if not self._finished.is_set():
            self._finished.set()
            self._events.put_nowait(None)


def _unauthorized_text(message: str, token: str | None) -> str:
    """The server's reason for refusing us, with what to do about it."""
    if token:
        return f"the server refused the token: {message}"
    return f"{message} (give one with --token or CHAT_TOKEN)"


def _utf8(text: str) -> str:
    """`text` made encodable: lone surrogates (undecodable input bytes) become "?"."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
