"""A chat user that keeps sending and reconnecting across node restarts, with its
backoff and pauses (tests/test_rolling_restart.py, tests/test_compose.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.conftest import JSON_PROTOCOL

ROOM = "lobby"


SEND_PAUSE = 0.2  # seconds between one client's acked message and its next one
RETRY_FIRST, RETRY_CAP = 0.05, 1.0  # reconnect backoff, seconds

LONG_WAIT = 20.0  # the most any one expectation of the cluster test waits, in seconds


class ChatUser:
    """One JSON client that keeps itself connected and records everything it gets."""

    def __init__(self, index: int, url: str, http: aiohttp.ClientSession) -> None:
        self.name = f"user{index:02d}"
        # Half come back at once, half after a pause as `chat` does (its backoff starts
        # at 0.5 s): those are still away when the stopped node is already running again.
        self.comeback = 0.0 if index % 2 == 0 else 0.25 + 0.2 * (index % 5)
        self.url = url
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.up = asyncio.Event()  # connected and in the room
        self.changed = asyncio.Event()  # pulses on every frame
        self.session: str | None = None
        self.secrets: set[str] = set()  # every session secret it was given
        self.since: str | None = None  # the last message offset received
        self.offsets: list[str] = []  # every message received, in order
        self.arrivals: list[float] = []  # when each arrived (monotonic)
        self.presence: list[dict[str, Any]] = []
        self.members_seen: set[str] = set()
        self.nodes: list[str] = []  # the node of each welcome
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}  # ref -> answer
        self.acked: dict[str, str] = {}  # message id -> offset
        self.close_codes: Counter[int | None] = Counter()
        self.refusals: list[str] = []  # errors before a welcome
        self.downtimes: list[float] = []  # seconds from a close to the next welcome
        self.resends = 0
        self.unavailable = 0
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"client-{self.name}")

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def _query(self) -> dict[str, str]:
        """The URL's query: no secret in it (the session goes as a subprotocol, as the
        page and `chat` send it), since nginx logs failed requests with their query."""
        query = {"name": self.name, "room": ROOM}
        if self.since:
            query["since"] = self.since
        return query

    def _protocols(self) -> tuple[str, ...]:
        if self.session:
            return (JSON_PROTOCOL, f"chat.session.{self.session}")
        return (JSON_PROTOCOL,)

    async def _run(self) -> None:
        delay = RETRY_FIRST
        down_since: float | None = None
        while not self.stopping:
            try:
                ws = await self.http.ws_connect(
                    self.url, params=self._query(), protocols=self._protocols()
                )
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(delay)  # backoff: nginx had no node for us just now
                delay = min(delay * 2, RETRY_CAP)
                continue
            self.ws = ws
            welcomed = False
            code: int | None = None
            try:
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        code = int(msg.data) if msg.type is aiohttp.WSMsgType.CLOSE else None
                        break
                    frame = json.loads(msg.data)
                    if frame["type"] == "welcome":
                        welcomed = True
                        if down_since is not None:
                            self.downtimes.append(time.monotonic() - down_since)
                    elif frame["type"] == "error" and not welcomed:
                        self.refusals.append(frame["code"])
                    self._on_frame(frame)
            finally:
                self.up.clear()
                self.ws = None
                for future in self.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionResetError("connection closed"))
                await ws.close()
            if self.stopping:
                return
            self.close_codes[code] += 1
            down_since = time.monotonic()
            if welcomed:
                delay = RETRY_FIRST
                await asyncio.sleep(self.comeback)  # a client's own reconnect pause
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.session = frame["session"]
            self.secrets.add(self.session)
            self.nodes.append(frame["node"])
        elif kind == "subscribed":
            self.members_seen.update(frame["members"])
            self.since = self.since or frame["offset"]
            self.up.set()
        elif kind == "message":
            self.offsets.append(frame["offset"])
            self.arrivals.append(time.monotonic())
            self.since = frame["offset"]
        elif kind == "presence":
            self.presence.append(frame)
            if frame["event"] == "join":
                self.members_seen.add(frame["name"])
        ref = frame.get("ref")
        if ref is not None and ref in self.pending and not self.pending[ref].done():
            self.pending[ref].set_result(frame)
        self.changed.set()
        self.changed.clear()

    async def request(self, frame: dict[str, Any], ref: str) -> dict[str, Any]:
        """Send `frame` on the current connection; its answer (raises if the connection
        drops first)."""
        await self.up.wait()
        ws = self.ws
        if ws is None:
            raise ConnectionResetError("not connected")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        try:
            await ws.send_str(json.dumps({**frame, "ref": ref}))
            return await future
        finally:
            self.pending.pop(ref, None)

    async def send_until_acked(self, msg_id: str, text: str) -> str:
        """Send with `msg_id` until acked; retried after `unavailable` and after a drop."""
        frame = {"type": "send", "room": ROOM, "text": text, "id": msg_id}
        async with asyncio.timeout(LONG_WAIT):
            while True:
                try:
                    answer = await self.request(frame, msg_id)
                except (ConnectionError, aiohttp.ClientError):
                    # The connection is closing (a send to it can fail before the reader
                    # has seen the close): yield to the reader, then wait for the reconnect.
                    self.resends += 1
                    await asyncio.sleep(RETRY_FIRST)
                    continue
                if answer["type"] == "ack":
                    self.acked[msg_id] = answer["offset"]
                    return str(answer["offset"])
                assert answer.get("code") == "unavailable", answer
                self.unavailable += 1
                await asyncio.sleep(RETRY_FIRST)  # the backend asked us to come back later

    async def chat(self, stop: asyncio.Event) -> None:
        """Send messages one after another until `stop` is set."""
        count = 0
        while not stop.is_set():
            count += 1
            await self.send_until_acked(f"{self.name}-{count}", f"{self.name} says {count}")
            await asyncio.sleep(SEND_PAUSE)  # pacing: under the rate limit

    def has_received(self, offsets: set[str]) -> bool:
        return offsets.issubset(self.offsets)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until `condition()` holds, re-checking on every frame."""
        try:
            async with asyncio.timeout(LONG_WAIT):
                while not condition():
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {what} within {LONG_WAIT:g}s") from None
