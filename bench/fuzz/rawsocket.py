"""The fuzzer's raw-frame client: WebSocket frames and handshakes written by hand."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from bench.fuzz.config import JSON_PROTOCOL, STEP, Outcome


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True,
    length: int | None = None,
) -> bytes:  # fmt: skip
    """A client frame written by hand; `length` claims a length other than the payload's."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    stream = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        len(payload), "big"
    )
    return bytes(head) + key + masked


class RawSocket:
    """A WebSocket client written by hand, for what aiohttp's client will not send:
    invalid UTF-8, broken framing, handshakes dropped half way, reads that never come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.texts: list[str] = []  # text frames received

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawSocket:
        sock = socket.socket()
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            async with asyncio.timeout(STEP):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
                reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    @staticmethod
    def request(query: str, *, json_mode: bool, headers: str | None = None) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = headers if headers is not None else (
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + (f"Sec-WebSocket-Protocol: {JSON_PROTOCOL}\r\n" if json_mode else "")
        )  # fmt: skip
        return f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode()

    async def upgrade(self, query: str, *, json_mode: bool) -> int:
        """Send the handshake; the HTTP status of the answer."""
        self.writer.write(self.request(query, json_mode=json_mode))
        return await self.status()

    async def status(self) -> int:
        async with asyncio.timeout(STEP):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1])

    def send(self, opcode: int, payload: bytes, **options: Any) -> None:
        self.writer.write(encode_frame(opcode, payload, **options))

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame (servers neither mask nor, here, fragment)."""
        first, second = await self.reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0xF, await self.reader.readexactly(n)

    async def until(self, match: Callable[[str], bool]) -> bool:
        """Read text frames until one matches; False if the connection ended first, or
        after STEP seconds."""
        try:
            async with asyncio.timeout(STEP):
                while True:
                    opcode, payload = await self.frame()
                    if opcode == 0x8:
                        return False
                    if opcode == 0x1:
                        text = payload.decode(errors="replace")
                        self.texts.append(text)
                        if match(text):
                            return True
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False

    async def ending(self, within: float = STEP) -> Outcome:
        """Read until the server ends the connection: its close code, "eof" (closed
        without a close frame), "reset", or "no answer" after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                while True:
                    opcode, payload = await self.frame()
                    if opcode == 0x1:
                        self.texts.append(payload.decode(errors="replace"))
                    elif opcode == 0x8:
                        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                        return f"close {code}"
        except TimeoutError:
            return "no answer"
        except asyncio.IncompleteReadError:
            return "eof"
        except ConnectionError:
            return "reset"

    def abort(self) -> None:
        """Drop the connection with a TCP reset, as a crashed client or a cut cable does."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STEP):
                await self.writer.wait_closed()
