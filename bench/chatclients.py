"""Chat clients for the load generator, one per server protocol, over tooling/wsclient.py.

Every client has the same small surface, so a scenario runs unchanged against any
server: `open` (connected and in its room), `send` (with a callback for the ack),
`on_delivery` for each chat message received, `abort`. Message frames are not decoded
as JSON (the tag is found in the raw bytes, see bench/checker.py); the rarer frames
(acks, welcome, join answers) are.

- GatewayClient: the gateway's JSON mode (PROTOCOL.md sections 1, 3, 4).
- SocketIOClient: Engine.IO v4 / Socket.IO v5 over a plain WebSocket, for the peers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from tooling.wsclient import WsProtocol, connect

JSON_PROTOCOL = "chat.v1.json"
OFFSET = re.compile(rb'"offset":"([^"\\]+)"')

AckCallback = Callable[[bool], None]  # True: acked; False: refused with an error
Delivery = Callable[["ChatClient", bytes], None]


class JoinRefused(Exception):
    """The server refused the connection or its join (the reason is the message)."""


class ChatClient:
    """What every protocol's client has: an identity, its pending acks, its connection."""

    path = "/"
    subprotocol: str | None = None

    def __init__(self, ident: int, room: str, on_delivery: Delivery) -> None:
        self.ident = ident
        self.room = room
        self.on_delivery = on_delivery
        self.errors: list[str] = []
        self._acks: dict[str, AckCallback] = {}
        self._next_ref = 0
        self._ws: WsProtocol | None = None
        self._joined: asyncio.Future[bool] | None = None

    @property
    def in_flight(self) -> int:
        """Sends not answered yet."""
        return len(self._acks)

    @property
    def closed(self) -> asyncio.Future[int | None]:
        assert self._ws is not None, "not opened"
        return self._ws.closed

    @property
    def ever_opened(self) -> bool:
        """True once a connection was made (`closed` is there to wait on)."""
        return self._ws is not None

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self._ws.is_open

    def _connect_path(self) -> str:
        return self.path

    async def open(self, host: str, port: int, within: float = 10.0) -> bool:
        """Connect and enter `room`; returns the join's `recovered` (True when not a resume).

        Raises JoinRefused, ConnectionError, OSError or TimeoutError."""
        self._acks.clear()
        joined = self._joined = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(within):
            self._ws = await connect(
                host, port, self._connect_path(), self._on_message, subprotocol=self.subprotocol
            )
            closed = self._ws.closed
            waiters: set[asyncio.Future[Any]] = {joined, closed}
            try:
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:  # timed out or cancelled: no half-open client left behind
                self._ws.abort()
                raise
            if joined in done:
                return joined.result()
            joined.cancel()
            raise JoinRefused(f"closed {closed.result()} before joining: {self.errors[-1:]}")

    def _joined_with(self, recovered: bool) -> None:
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(recovered)

    def _ref(self, on_ack: AckCallback) -> str:
        self._next_ref += 1
        ref = str(self._next_ref)
        self._acks[ref] = on_ack
        return ref

    def _answer(self, ref: str, ok: bool) -> None:
        callback = self._acks.pop(ref, None)
        if callback is not None:
            callback(ok)

    def send(self, text: str, on_ack: AckCallback) -> None:
        """Send `text` to the room; `on_ack(ok)` runs when the server answers."""
        raise NotImplementedError

    def _on_message(self, ws: WsProtocol, opcode: int, payload: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection (RST); pending acks are forgotten."""
        self._acks.clear()
        if self._ws is not None:
            self._ws.abort()


class GatewayClient(ChatClient):
    """A JSON-mode connection to a gateway node; keeps its session and last offset for a
    resume (`open` again after a drop: `?session=` and `?since=`)."""

    subprotocol = JSON_PROTOCOL

    def __init__(
        self, ident: int, room: str, on_delivery: Delivery, track_offsets: bool = False
    ) -> None:
        super().__init__(ident, room, on_delivery)
        self.name = f"b{ident}"
        self.session: str | None = None
        self.last_offset: str | None = None
        self._track = track_offsets

    def _connect_path(self) -> str:
        query = {"name": self.name, "room": self.room}
        if self.session is not None:
            query["session"] = self.session
        if self.last_offset is not None:
            query["since"] = self.last_offset
        return "/ws?" + urlencode(query)

    def send(self, text: str, on_ack: AckCallback) -> None:
        frame = {"type": "send", "room": self.room, "text": text, "ref": self._ref(on_ack)}
        if self._ws is not None:
            self._ws.send_text(json.dumps(frame, separators=(",", ":")))

    def _on_message(self, ws: WsProtocol, opcode: int, payload: bytes) -> None:
        if payload.startswith(b'{"type":"message"'):
            if self._track:
                match = OFFSET.search(payload)
                if match is not None:
                    self.last_offset = match.group(1).decode()
            self.on_delivery(self, payload)
            return
        if payload.startswith(b'{"type":"presence"'):
            return
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "ack":
            self._answer(str(frame.get("ref")), True)
        elif kind == "welcome":
            self.session = frame["session"]
        elif kind == "subscribed":
            self._joined_with(bool(frame.get("recovered", True)))
        elif kind == "error":
            self.errors.append(f"{frame.get('code')}: {frame.get('message')}")
            if frame.get("ref") is not None:
                self._answer(str(frame["ref"]), False)


class SocketIOClient(ChatClient):
    """A Socket.IO v5 client over Engine.IO v4's websocket transport, no polling.

    Open `0{...}` -> we send `40` -> `40{...}` -> we emit `join` with an ack id ->
    `43N[...]`; events are `42[...]`, acks `43N[...]`; a ping `2` is answered `3`."""

    path = "/socket.io/?EIO=4&transport=websocket"

    def __init__(self, ident: int, room: str, on_delivery: Delivery) -> None:
        super().__init__(ident, room, on_delivery)
        self.name = f"b{ident}"

    def _emit(self, ws: WsProtocol | None, event: str, data: object, on_ack: AckCallback) -> None:
        packet = "42" + self._ref(on_ack) + json.dumps([event, data], separators=(",", ":"))
        if ws is not None:
            ws.send_text(packet)

    def send(self, text: str, on_ack: AckCallback) -> None:
        self._emit(self._ws, "send", {"room": self.room, "text": text}, on_ack)

    def _on_message(self, ws: WsProtocol, opcode: int, payload: bytes) -> None:
        if payload.startswith(b'42["msg"'):
            self.on_delivery(self, payload)
        elif payload.startswith(b"43"):
            self._answer(payload[2 : payload.index(b"[")].decode(), True)
        elif payload == b"2":
            ws.send_text("3")
        elif payload.startswith(b"0"):
            ws.send_text("40")
        elif payload.startswith(b"40"):
            self._emit(ws, "join", {"room": self.room, "name": self.name}, self._join_answer)
        elif payload.startswith(b"44"):
            self.errors.append(f"connect refused: {payload[2:200]!r}")
            ws.close()
        elif payload.startswith(b"41") or payload == b"1":
            self.errors.append("disconnected by the server")
            ws.close()

    def _join_answer(self, ok: bool) -> None:
        self._joined_with(True)


def client_class(peer: str) -> type[ChatClient]:
    """The client for a server kind: the gateway speaks its own protocol, peers Socket.IO."""
    return GatewayClient if peer == "gateway" else SocketIOClient
