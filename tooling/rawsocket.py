"""A WebSocket client on a bare TCP socket that reads only when told to, for tests of
slow readers and of what a client library will not send (an unmasked frame).

A small receive buffer and no reading make a peer that stalls for real: nothing in a
client library drains the socket behind the test's back. The handshake and the frames
are tooling/wsclient.py's.
"""

from __future__ import annotations

import asyncio
import socket

from tooling.wsclient import CLOSE, TEXT, FrameParser, check_response, encode_frame
from tooling.wsclient import handshake_request as make_handshake

HANDSHAKE_TIMEOUT = 5.0  # seconds for the 101


class RawWebSocket:
    """One connection; `frames` takes what has been read so far, as messages."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self._parser = FrameParser()

    @classmethod
    async def connect(
        cls, host: str, port: int, query: str, protocol: str | None, rcvbuf: int = 4096
    ) -> RawWebSocket:
        """Open /ws?`query` on `host`:`port` (with `protocol` as its subprotocol, if any)
        and read the 101; the socket's receive buffer is `rcvbuf` bytes."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        raw = cls(sock)
        try:
            await loop.sock_connect(sock, (host, port))
            request, accept = make_handshake(host, port, f"/ws?{query}", protocol)
            await loop.sock_sendall(sock, request)
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                while b"\r\n\r\n" not in raw.buffer:
                    assert await raw.read(), "closed during the handshake"
            head, _, rest = bytes(raw.buffer).partition(b"\r\n\r\n")
            check_response(head, accept)
            raw.buffer = bytearray(rest)
        except BaseException:
            sock.close()
            raise
        return raw

    async def read(self) -> bool:
        """Read what is there; False at EOF or reset."""
        try:
            chunk = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        except ConnectionResetError:
            return False
        self.buffer += chunk
        return bool(chunk)

    def frames(self) -> list[tuple[int, bytes]]:
        """Take the complete messages and control frames (opcode, payload) off the buffer."""
        data, self.buffer = bytes(self.buffer), bytearray()
        return self._parser.feed(data)

    async def send_frame(self, opcode: int, payload: bytes, *, masked: bool = True) -> None:
        """Send one frame, masked as a client must unless told otherwise."""
        frame = encode_frame(opcode, payload, masked=masked)
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def read_until_text(self, needle: bytes, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Read until a text frame containing `needle` has arrived."""
        async with asyncio.timeout(timeout):
            while True:
                if any(op == TEXT and needle in data for op, data in self.frames()):
                    return
                assert await self.read(), "closed while waiting"

    async def read_to_the_end(self, timeout: float) -> int | None:
        """Read everything until the connection ends; the close code, if a close frame came.

        A close frame is answered, as a client should, so the server can finish.
        """
        code = None
        async with asyncio.timeout(timeout):
            while True:
                for opcode, data in self.frames():
                    if opcode == CLOSE and code is None:
                        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                        await self.send_frame(CLOSE, data[:2])
                if not await self.read():
                    return code

    def close(self) -> None:
        self.sock.close()
