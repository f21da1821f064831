"""The campaign's chat clients: JSON mode, one room each, sending with `id`s at a modest
rate, and on any close reconnecting to a random node with `session` and `since`, as the
shipped clients do (docs/protocol.md: Offsets and resume).

A send waits for its answer: `ack` records it, `unavailable` (or any error) sends it
again with the same `id` a moment later, and a close or an answer that does not come
within ACK_TIMEOUT reconnects and sends it again: the same `id` counts once. A node
that stops answering (SIGSTOP) is noticed by the WebSocket heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from bench.chaos.history import History

SUBPROTOCOL = "chat.v1.json"
SESSION_SUBPROTOCOL = "chat.session."


@dataclass(frozen=True)
class ClientTimers:
    """How a client paces itself and how long it waits (seconds)."""

    send_every: tuple[float, float] = (0.5, 2.0)
    ack_timeout: float = 5.0
    heartbeat: float = 3.0
    connect_timeout: float = 5.0
    retry_after: tuple[float, float] = (0.2, 1.0)
    sends: bool = True  # False: a reader, that only listens


# A reader that only listens, with the heartbeat `chat` has: it stays on a node that
# stopped answering for up to half a minute, as a real user's idle client does.
READER = ClientTimers(heartbeat=20.0, sends=False)


class ChaosClient:
    """One chat user: `name` in `room`, against the nodes on `ports`."""

    def __init__(
        self,
        name: str,
        room: str,
        ports: list[int],
        rng: random.Random,
        history: History,
        timers: ClientTimers = ClientTimers(),
    ) -> None:
        self.name, self.room, self.ports = name, room, ports
        self._rng, self._history, self._timers = rng, history, timers
        self.session: str | None = None
        self.since: str | None = None  # the newest offset seen in the room
        self.connected = False  # open and subscribed
        self.sending = timers.sends
        self._seq = 0
        self._pending: int | None = None  # the id being sent, until acked
        self._answers: dict[str, asyncio.Future[dict[str, object]]] = {}
        self._subscribed: asyncio.Event = asyncio.Event()

    @property
    def idle(self) -> bool:
        """Whether every message this client sent has been acked."""
        return self._pending is None

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set; every wait bounded."""
        while not stop.is_set():
            port = self._rng.choice(self.ports)
            try:
                async with asyncio.timeout(self._timers.connect_timeout):
                    ws = await self._connect(http, port)
            except (aiohttp.ClientError, TimeoutError, OSError):
                await self._pause(stop, self._timers.retry_after)
                continue
            try:
                await self._serve(ws, stop)
            finally:
                self.connected = False
                await ws.close()
                self._history.add(self.name, "closed", code=ws.close_code)
            await self._pause(stop, self._timers.retry_after)

    async def _pause(self, stop: asyncio.Event, span: tuple[float, float]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._rng.uniform(*span))

    async def _connect(
        self, http: aiohttp.ClientSession, port: int
    ) -> aiohttp.ClientWebSocketResponse:
        query = {"name": self.name, "room": self.room}
        if self.since is not None:
            query["since"] = self.since
        protocols = [SUBPROTOCOL]
        if self.session:
            protocols.append(SESSION_SUBPROTOCOL + self.session)
        return await http.ws_connect(
            f"ws://127.0.0.1:{port}/ws?{urlencode(query)}",
            protocols=protocols,
            heartbeat=self._timers.heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            autoping=True,
        )

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        self._subscribed = asyncio.Event()
        reader = asyncio.create_task(self._read(ws))
        sender = asyncio.create_task(self._send_loop(ws))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({reader, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender, stopper):
                task.cancel()
            await asyncio.gather(reader, sender, stopper, return_exceptions=True)
            for answer in self._answers.values():
                answer.cancel()
            self._answers.clear()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            self._handle(json.loads(frame.data))

    def _handle(self, event: dict[str, object]) -> None:
        kind = event.get("type")
        if kind == "welcome":
            self.session = str(event.get("session") or "") or self.session
            self._history.add(self.name, "connected", node=str(event.get("node")))
        elif kind == "subscribed" and event.get("room") == self.room:
            offset = event.get("offset")
            offset = offset if isinstance(offset, str) else None
            self._history.add(
                self.name,
                "subscribed",
                room=self.room,
                offset=offset,
                recovered=bool(event.get("recovered")),
            )
            if self.since is None:
                self.since = offset
            self.connected = True
            self._subscribed.set()
        elif kind == "message" and event.get("room") == self.room:
            offset = str(event.get("offset"))
            self._history.add(
                self.name,
                "message",
                room=self.room,
                offset=offset,
                sender=str(event.get("from")),
                msg_id=str(event.get("text")),
            )
            self.since = offset
        elif kind in ("ack", "error"):
            answer = self._answers.pop(str(event.get("ref")), None)
            if answer is not None and not answer.done():
                answer.set_result(event)

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send while `sending`; returns (so the connection is dropped) when an answer
        does not come in time."""
        async with asyncio.timeout(self._timers.connect_timeout):
            await self._subscribed.wait()
        attempt = 0
        while True:
            if self._pending is None:
                if not self.sending:
                    await asyncio.Event().wait()  # the reader or stop ends this connection
                await asyncio.sleep(self._rng.uniform(*self._timers.send_every))
                if not self.sending:
                    continue
                self._seq += 1
                self._pending = self._seq
            attempt += 1
            ref = f"{self._pending}.{attempt}"
            answer = asyncio.get_running_loop().create_future()
            self._answers[ref] = answer
            text = str(self._pending)
            await ws.send_str(
                json.dumps(
                    {"type": "send", "room": self.room, "text": text, "id": text, "ref": ref}
                )
            )
            try:
                async with asyncio.timeout(self._timers.ack_timeout):
                    reply = await answer
            except TimeoutError:
                return
            if reply.get("type") == "ack":
                self._history.add(
                    self.name, "acked", room=self.room, msg_id=text, offset=str(reply.get("offset"))
                )
                self._pending = None
            else:
                await asyncio.sleep(self._rng.uniform(*self._timers.retry_after))
