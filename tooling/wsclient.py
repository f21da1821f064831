"""A raw WebSocket client (RFC 6455) on an asyncio Protocol, for the load generator
(tooling/rawsocket.py has one on a bare socket, for the tests and the fuzzer).

The handshake, the masking of client frames and the parsing of server frames are done
by hand here, with no client library, so that what a client costs the load generator is
small and exactly the same whichever server it talks to. Only what the bench needs:
text frames out, text and binary frames in (fragmented or not), ping answered with
pong, the close handshake.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import Callable
from typing import cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

Message = tuple[int, bytes]  # (opcode, payload): a whole message or a control frame
OnMessage = Callable[["WsProtocol", int, bytes], None]


class ProtocolViolation(Exception):
    """The server broke RFC 6455 framing, or its handshake was not a valid 101."""


def mask(payload: bytes, key: bytes) -> bytes:
    """`payload` XOR the 4-byte `key` repeated (RFC 6455 5.3): one big-int XOR."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int,
    payload: bytes,
    key: bytes | None = None,
    *,
    masked: bool = True,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One client frame: `fin`, the `rsv` bits, `opcode`, the mask bit and a random (or
    given) key. The defaults make a final, well-formed frame; the rest writes what a
    client must not send, for the tests and the fuzzer: `masked=False` unmasked, `fin`
    False a fragment, `rsv` reserved bits set, `length` a length other than the
    payload's in the header."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    bit = 0x80 if masked else 0
    if n < 126:
        header = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return header + payload
    key = os.urandom(4) if key is None else key
    return header + key + mask(payload, key)


class FrameParser:
    """Turns a byte stream from the server into messages, whatever the read boundaries.

    A read may end inside a header, inside a payload, or hold many frames; a message may
    come as a first frame and continuations, with control frames between them. `feed`
    returns the messages and control frames completed by the bytes given so far.
    """

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._fragment_bytes = 0

    def feed(self, data: bytes) -> list[Message]:
        """Add `data`; return every message it completed, in order."""
        buf = self._buffer
        buf += data
        out: list[Message] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length, start = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
            if length > self._max:
                raise ProtocolViolation(f"a frame of {length} bytes")
            masked = second & 0x80
            stop = start + (4 if masked else 0) + length
            if stop > end:
                break
            payload = bytes(buf[start + 4 : stop]) if masked else bytes(buf[start:stop])
            if masked:
                payload = mask(payload, bytes(buf[start : start + 4]))
            pos = stop
            self._add(first & 0x80, first & 0x0F, payload, out)
        del buf[:pos]
        return out

    def _add(self, fin: int, opcode: int, payload: bytes, out: list[Message]) -> None:
        if opcode >= CLOSE:  # control frames are never fragmented, and may interleave
            if not fin or len(payload) > 125:
                raise ProtocolViolation("a fragmented or oversize control frame")
            out.append((opcode, payload))
            return
        if opcode == CONTINUATION:
            if self._fragment_opcode is None:
                raise ProtocolViolation("a continuation frame with no message to continue")
        elif self._fragment_opcode is not None:
            raise ProtocolViolation("a new message inside a fragmented one")
        elif fin:
            out.append((opcode, payload))
            return
        else:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > self._max:
            raise ProtocolViolation(f"a message over {self._max} bytes")
        if fin:
            assert self._fragment_opcode is not None
            out.append((self._fragment_opcode, b"".join(self._fragments)))
            self._fragments, self._fragment_opcode, self._fragment_bytes = [], None, 0


def handshake_request(
    host: str, port: int, path: str, subprotocol: str | None
) -> tuple[bytes, str]:
    """The HTTP/1.1 upgrade request and the Sec-WebSocket-Accept it must be answered with."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), accept


def check_response(head: bytes, accept: str) -> None:
    """Raise ProtocolViolation unless `head` is a 101 with the right accept key."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise ProtocolViolation(f"handshake answered {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != accept:
        raise ProtocolViolation("wrong Sec-WebSocket-Accept")


class WsProtocol(asyncio.Protocol):
    """One client connection. `on_message(protocol, opcode, payload)` gets each text and
    binary message (the first may come in the same read as the 101, before `connect`
    returns, hence the protocol as an argument); `opened` resolves after the 101, `closed`
    when the connection is gone (any reason)."""

    def __init__(
        self,
        request: bytes,
        accept: str,
        on_message: OnMessage,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._request, self._accept = request, accept
        self._on_message = on_message
        self._head = bytearray()
        self._parser: FrameParser | None = None
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = tcp = cast(asyncio.Transport, transport)  # uvloop's: no subclass
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tcp.write(self._request)

    def data_received(self, data: bytes) -> None:
        try:
            if self._parser is None:
                data = self._read_head(data)
                if self._parser is None:
                    return
            for opcode, payload in self._parser.feed(data):
                if opcode in (TEXT, BINARY):
                    self._on_message(self, opcode, payload)
                elif opcode == PING:
                    self._write(PONG, payload)
                elif opcode == CLOSE:
                    self._got_close(payload)
        except ProtocolViolation as exc:
            self._fail(exc)

    def _read_head(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEADER_BYTES:
                raise ProtocolViolation("handshake response headers too long")
            return b""
        check_response(bytes(self._head[:end]), self._accept)
        rest = bytes(self._head[end + 4 :])
        self._parser = FrameParser()
        if not self.opened.done():
            self.opened.set_result(None)
        return rest

    def _got_close(self, payload: bytes) -> None:
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        self._write(CLOSE, payload[:2])
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def _write(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode_frame(opcode, payload))

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send_text(self, text: str) -> None:
        """Send one text frame (dropped silently once the connection is closing)."""
        self._write(TEXT, text.encode())

    def close(self, code: int = 1000) -> None:
        """Start the close handshake; `closed` resolves when the server has answered."""
        self._write(CLOSE, struct.pack("!H", code))

    def abort(self) -> None:
        """Drop the connection at once: no close frame, and RST (no TIME_WAIT left)."""
        if self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()


async def connect(
    host: str,
    port: int,
    path: str,
    on_message: OnMessage,
    *,
    subprotocol: str | None = None,
    within: float = 10.0,
) -> WsProtocol:
    """Open a WebSocket to `host:port` + `path` within `within` seconds; returns once
    the server sent its 101."""
    loop = asyncio.get_running_loop()
    request, accept = handshake_request(host, port, path, subprotocol)
    async with asyncio.timeout(within):
        _, protocol = await loop.create_connection(
            lambda: WsProtocol(request, accept, on_message, loop), host, port
        )
        try:
            await protocol.opened
        except BaseException:
            protocol.abort()
            raise
    return protocol
