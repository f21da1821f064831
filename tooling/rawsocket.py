"""A WebSocket client on a bare TCP socket that writes exactly what it is told and reads
only when told to: for the tests of slow readers and of what a client library will not
send (an unmasked frame, broken framing), and for the fuzzer's hand-made cases
(bench/fuzz: invalid UTF-8, broken handshakes, drops half way).

A small receive buffer and no reading make a peer that stalls for real: nothing in a
client library drains the socket behind the caller's back. The handshake, the frames
and their parsing are tooling/wsclient.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable

from tooling.wsclient import (
    CLOSE,
    TEXT,
    FrameParser,
    Message,
    ProtocolViolation,
    check_response,
    encode_frame,
    handshake_request,
)

HANDSHAKE_TIMEOUT = 5.0  # seconds for the 101, and the default for every other wait
Ending = str  # how a connection ended: "close 1008", "eof", "reset", "no answer", ...


def close_code(payload: bytes) -> int:
    """The code of a close frame's payload (1005 when it has none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


class RawWebSocket:
    """One connection. `buffer` holds the bytes read and not parsed yet; `frames` takes
    the messages read so far, `message` waits for the next one; `texts` keeps the text
    messages `until` and `ending` went through, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.texts: list[str] = []
        self._parser = FrameParser()
        self._pending: deque[Message] = deque()

    # opening ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls, host: str, port: int, *, rcvbuf: int | None = None, timeout: float = HANDSHAKE_TIMEOUT
    ) -> RawWebSocket:
        """A TCP connection to `host`:`port`, nothing sent yet; the socket's receive
        buffer is `rcvbuf` bytes (the system's default if None)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @classmethod
    async def connect(
        cls, host: str, port: int, query: str, protocol: str | None, rcvbuf: int = 4096
    ) -> RawWebSocket:
        """Open /ws?`query` on `host`:`port` (with `protocol` as its subprotocol, if any)
        and read the 101, checked; the socket's receive buffer is `rcvbuf` bytes."""
        raw = await cls.open(host, port, rcvbuf=rcvbuf)
        try:
            request, accept = handshake_request(host, port, f"/ws?{query}", protocol)
            await raw.write(request)
            check_response(await raw.response_head(), accept)
        except BaseException:
            raw.close()
            raise
        return raw

    async def upgrade(
        self, query: str, protocol: str | None, timeout: float = HANDSHAKE_TIMEOUT
    ) -> int:
        """Ask for /ws?`query` (with `protocol`, if any); the HTTP status it is answered
        with, not checked further (101: the frames follow)."""
        host, port = self.sock.getpeername()[:2]
        await self.write(handshake_request(host, port, f"/ws?{query}", protocol)[0])
        return await self.status(timeout)

    async def response_head(self, timeout: float = HANDSHAKE_TIMEOUT) -> bytes:
        """Read an HTTP response head (without its blank line); what follows it stays in
        `buffer`. ConnectionError if the connection ends first."""
        async with asyncio.timeout(timeout):
            while b"\r\n\r\n" not in self.buffer:
                if not await self.read():
                    raise ConnectionError("closed before an HTTP answer")
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        return head

    async def status(self, timeout: float = HANDSHAKE_TIMEOUT) -> int:
        """The status of the HTTP response read next (ValueError if it is not one)."""
        head = await self.response_head(timeout)
        line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if not line[0].startswith(b"HTTP/1.") or len(line) < 2 or not line[1].isdigit():
            raise ValueError(f"not an HTTP answer: {head[:200]!r}")
        return int(line[1])

    # writing ---------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Send `data` as it is; ConnectionError if the peer has dropped the connection."""
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        masked: bool = True,
        fin: bool = True,
        rsv: int = 0,
        length: int | None = None,
    ) -> None:
        """Send one frame, masked and final as a client's must be unless told otherwise
        (the options are `encode_frame`'s)."""
        frame = encode_frame(opcode, payload, masked=masked, fin=fin, rsv=rsv, length=length)
        await self.write(frame)

    # reading ---------------------------------------------------------------------

    async def _receive(self) -> bool:
        """Read what is there into `buffer`; False at EOF, ConnectionResetError at a reset."""
        chunk = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        self.buffer += chunk
        return bool(chunk)

    async def read(self) -> bool:
        """Read what is there; False at EOF or reset."""
        try:
            return await self._receive()
        except ConnectionResetError:
            return False

    def _parse(self) -> None:
        data, self.buffer = bytes(self.buffer), bytearray()
        self._pending.extend(self._parser.feed(data))

    def frames(self) -> list[Message]:
        """Take the complete messages and control frames (opcode, payload) read so far."""
        self._parse()
        taken = list(self._pending)
        self._pending.clear()
        return taken

    async def message(self) -> Message:
        """The next message or control frame, read if need be: EOFError at EOF,
        ConnectionResetError at a reset, ProtocolViolation for broken framing."""
        while True:
            self._parse()
            if self._pending:
                return self._pending.popleft()
            if not await self._receive():
                raise EOFError("the connection ended")

    async def until(self, match: Callable[[str], bool], timeout: float = HANDSHAKE_TIMEOUT) -> bool:
        """Read text messages until one matches; False if the connection ended (or its
        close frame came) first, or after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    opcode, payload = await self.message()
                    if opcode == CLOSE:
                        return False
                    if opcode == TEXT:
                        text = payload.decode(errors="replace")
                        self.texts.append(text)
                        if match(text):
                            return True
        except (TimeoutError, EOFError, ConnectionError, ProtocolViolation):
            return False

    async def read_until_text(self, needle: bytes, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Read until a text message containing `needle` has arrived (AssertionError if
        it did not within `timeout` seconds)."""
        wanted = needle.decode()
        found = await self.until(lambda text: wanted in text, timeout)
        assert found, f"no text frame with {needle!r} in {timeout} s; the last: {self.texts[-3:]}"

    async def ending(self, timeout: float = HANDSHAKE_TIMEOUT) -> Ending:
        """Read until the server ends the connection: "close <its code>" at its close
        frame (not answered), "eof" (closed without one), "reset", "broken framing", or
        "no answer" after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    opcode, payload = await self.message()
                    if opcode == TEXT:
                        self.texts.append(payload.decode(errors="replace"))
                    elif opcode == CLOSE:
                        return f"close {close_code(payload)}"
        except TimeoutError:
            return "no answer"
        except EOFError:
            return "eof"
        except ConnectionError:
            return "reset"
        except ProtocolViolation:
            return "broken framing"

    async def read_to_the_end(self, timeout: float) -> int | None:
        """Read everything until the connection ends; the close code, if a close frame came.

        A close frame is answered, as a client should, so the server can finish.
        """
        code = None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    opcode, data = await self.message()
                except (EOFError, ConnectionResetError):
                    return code
                if opcode == CLOSE and code is None:
                    code = close_code(data)
                    await self.send_frame(CLOSE, data[:2])

    # ending ----------------------------------------------------------------------

    def shut_write(self) -> None:
        """Shut our sending side (a FIN); reading goes on."""
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Drop the connection with a TCP reset, as a crashed client or a cut cable does."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Close the socket (no close frame)."""
        self.sock.close()


async def http_status(
    host: str, port: int, request: bytes, timeout: float = HANDSHAKE_TIMEOUT
) -> int:
    """Send `request` (any bytes) on a new connection; the status of the HTTP answer
    (ConnectionError if the connection ends without one)."""
    raw = await RawWebSocket.open(host, port, timeout=timeout)
    try:
        with contextlib.suppress(ConnectionError):  # refused half way: the answer tells
            await raw.write(request)
        return await raw.status(timeout)
    finally:
        raw.close()
