"""The connection loop under `ChatClient`: one JSON-mode connection at a time, kept up.

`Link` opens a connection with the credentials (the token as `Authorization: Bearer`,
the session secret as a `chat.session.` subprotocol: never in the URL, which proxies
log), serves it (server frames into the `RoomView`, the `Outbox` out), and after a drop
reconnects with backoff, resuming the room after the last offset shown. Out of every
room (a moderator removed the user, or a ban refused the room at a reconnect) it
connects again only into the room of the user's next /join; after 4000, 4001 (an
operator's disconnect) or 1008 it stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiohttp

from cli.connection import (
    CLOSE_BY_OPERATOR,
    OPERATOR_CLOSED,
    ROOM_REFUSALS,
    ConnectFailed,
    NameRejected,
    Rejected,
    Unauthorized,
    backoff,
    decode,
    open_connection,
    usable_secret,
)
from cli.events import ChatEvent, ErrorLine, Status
from cli.fetch import Frame
from cli.moderation import moderated_rooms
from cli.outbox import Answered, Outbox, Outgoing
from cli.view import RoomView

CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1001, 1008, 1009
CLOSE_TAKEN_OVER = 4000
CLOSE = aiohttp.WSMsgType.CLOSE
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


class Link:
    """Opens, serves and reopens the connection of one client until it stops."""

    def __init__(
        self,
        config: ClientConfig,
        view: RoomView,
        outbox: Outbox,
        *,
        notify: Callable[[ChatEvent], None],
        answered: Answered,
    ) -> None:
        self._config = config
        self._view = view
        self._outbox = outbox
        self._notify = notify
        self._answered = answered
        self.http: aiohttp.ClientSession | None = None  # set by the client before open()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.quitting = False  # set when the client closes: a close is then no drop
        self._session: str | None = None  # secret from the last welcome
        self._close_reason = ""  # what the server said when it last closed
        self._early: tuple[Frame, ...] = ()  # read by open() after the welcome
        self._early_close: str | None = None  # the close open() read meanwhile, if any

    async def open(
        self, *, resume: bool, joining: Outgoing | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """Connect and read up to the first room's answer; raises like `open_connection`.

        `joining`: a queued /join whose room the connection enters first (out of
        every room, the client connects again only for one).
        """
        assert self.http is not None, "the client opens the HTTP session first"
        since = self._view.since() if resume else None
        query = {"room": str(joining.frame["room"]) if joining else self._view.room}
        optional = {"name": self._view.name, "since": since}
        query.update({key: value for key, value in optional.items() if value})
        token = self._config.token
        try:
            opened = await open_connection(
                self.http,
                self._config.url,
                query,
                wait_limit=self._config.connect_timeout,
                heartbeat=self._config.heartbeat,
                headers={"Authorization": f"Bearer {token}"} if token else None,
                session=self._session,
            )
        except Unauthorized as exc:
            raise Unauthorized(_unauthorized_text(exc.message, token), exc.code) from None
        self._session = usable_secret(opened.welcome.get("session")) or self._session
        welcome = opened.welcome
        self._view.connected(
            str(welcome.get("name") or self._view.name),
            resume=resume,
            since=since,
            entering=joining.ref if joining else None,
            moderates=moderated_rooms(welcome.get("moderates")),
        )
        self._early, self._early_close = opened.early, opened.close_reason
        self.ws = opened.ws
        return opened.ws

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Serve `ws`, then reconnect after each drop, until the client closes or a close
        is final; returns why the client must give up, or "" when it was closed."""
        try:
            while True:
                code = await self._serve(ws)
                self.ws = None
                if self.quitting:
                    return ""
                if failure := self._final(code):
                    return failure
                self._interrupted(code)
                ws = await self._connect_again(at_once=code == CLOSE_GOING_AWAY)
        except Rejected as exc:
            prefix = "cannot take the name back: " if isinstance(exc, NameRejected) else ""
            return prefix + str(exc)
        finally:
            if self.ws is not None:
                await self.ws.close()

    def _final(self, code: int | None) -> str:
        """Why a connection closed with `code` must not be opened again ("": it may)."""
        reason = self._close_reason
        if code == CLOSE_TAKEN_OVER:
            return "session taken over by another connection"
        if code == CLOSE_POLICY:
            return f"the server closed the connection: {reason or 'policy violation'}"
        if code == CLOSE_BY_OPERATOR:  # the operator wants this user gone: stay gone
            said = f" ({reason})" if reason and reason.casefold() != OPERATOR_CLOSED else ""
            return f"{OPERATOR_CLOSED}{said}; not reconnecting"
        return ""

    async def _connect_again(self, *, at_once: bool) -> aiohttp.ClientWebSocketResponse:
        """A new connection after a drop: resuming the current room, or, out of every
        room (removed by a moderator), once the user asks for one with /join."""
        if self._view.present:
            self._notify(Status("reconnecting..."))
            try:
                ws = await self._reconnect(at_once=at_once)
            except Rejected as exc:
                if exc.code not in ROOM_REFUSALS:  # the user, not the room, is refused
                    raise
                self._view.out_of_room()  # banned from it while away
                self._notify(ErrorLine(exc.message, exc.code, exc.until))
            else:
                self._notify(Status("reconnected"))
                return ws
        if not self._view.joining:
            self._notify(Status("disconnected, in no room: /join ROOM connects again"))
        return await self._rejoin()

    async def _rejoin(self) -> aiohttp.ClientWebSocketResponse:
        """Connect into the room of the oldest queued /join, once there is one; a join
        the server refuses (banned, forbidden) is answered as such, and the next awaited."""
        delays = backoff(self._config.backoff_initial, self._config.backoff_max)
        while True:
            item = await self._outbox.first("join")
            try:
                ws = await self.open(resume=False, joining=item)
            except ConnectFailed:
                await asyncio.sleep(next(delays))
                continue
            except Rejected as exc:
                if exc.code not in ROOM_REFUSALS:
                    raise
                self._outbox.done(item)
                refusal = {"type": "error", "code": exc.code, "message": exc.message}
                self._answered(item, refusal | {"until": exc.until})
                continue
            self._outbox.done(item)  # answered by the handshake's `subscribed`
            return ws

    async def _reconnect(self, *, at_once: bool) -> aiohttp.ClientWebSocketResponse:
        delays = backoff(self._config.backoff_initial, self._config.backoff_max)
        delay = 0.0 if at_once else next(delays)
        while True:
            await asyncio.sleep(delay)
            try:
                return await self.open(resume=True)
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
        early, self._early = self._early, ()
        for frame in early:
            await self._handle(ws, frame)
        if self._early_close is not None:
            self._close_reason, self._early_close = self._early_close, None
            return
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                if (decoded := decode(msg.data)) is not None:
                    await self._handle(ws, decoded)
            elif msg.type is not aiohttp.WSMsgType.BINARY:  # closed, or broken
                self._close_reason = str(msg.extra or "") if msg.type is CLOSE else ""
                return

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
        for reply in self._view.handle(frame, claimed=self._outbox.answer(frame)):
            await self._send_quietly(ws, reply)

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
            item.frame.setdefault("room", self._view.room)
        return await self._send_quietly(ws, item.frame)

    def _interrupted(self, code: int | None) -> None:
        """Tidy what a dropped connection left half done."""
        head = self._outbox.peek()
        if code == CLOSE_TOO_BIG and head is not None:
            self._outbox.done(head)
            self._notify(ErrorLine("message too large for the server: not sent", "too_long"))


def _unauthorized_text(message: str, token: str | None) -> str:
    """The server's reason for refusing us, with what to do about it."""
    if token:
        return f"the server refused the token: {message}"
    return f"{message} (give one with --token or CHAT_TOKEN)"
