"""The read side of a connection's frame layer: what aiohttp is not asked to judge.

A `FrameWatch` sits between a WebSocket connection's transport and aiohttp's protocol
(`transport.set_protocol`): every chunk the client sends passes through it. It reads
only frame headers (two to ten bytes per frame; a chunk in the middle of a payload costs
one subtraction) and hands the chunk on unchanged, so the hot path stays one call.
It refuses, before aiohttp sees them:

- a frame without the mask bit: RFC 6455 5.1 says a server MUST close on it, with 1002,
  and aiohttp's reader accepts it; the other header-level breaches of the protocol
  (reserved bits, unknown opcodes, a fragmented or long control frame, a fragment out
  of sequence), also 1002, which aiohttp would refuse too, but without a handshake;
- a message (its fragments added up) over the frame limit: 1009, detected at the header,
  so the session can still write a last line and its close frame in order.

Both stop the hand-over to aiohttp there (frames before the bad one still reach it) and
report the refusal to the session (`attach`), which closes with that code. From then
on, and from the moment the session starts any close of its own (`closing`), the watch
keeps reading frame headers but hands nothing on: it waits for the client's Close
frame (RFC 6455 7.1.1: the server closes TCP once both sides have sent one), which
`peer_closed` awaits. A Close the client starts is left to aiohttp, which answers it
and closes the connection.

The watch is installed before the 101 answer goes out, so it sees every frame of a
client that waits for that answer before sending, as RFC 6455 4.1 requires. Bytes a
client sent before it (aiohttp keeps them aside) are not seen: if they end inside a
frame, the watch misreads what follows, and may close that client (1002 or 1009).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

OPCODE_CLOSE = 0x8
Violation = tuple[int, str]  # close code, reason
UNMASKED_REASON = "frames from a client must be masked"


def size_text(limit: int) -> str:
    """`64 KiB`, `2 KiB`, or `1500 bytes`: the frame limit as a person reads it."""
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


class FrameWatch(asyncio.Protocol):
    """Frame headers of one connection, checked on their way to aiohttp's protocol."""

    def __init__(self, transport: asyncio.Transport, max_message: int) -> None:
        self._transport = transport
        self._inner: asyncio.Protocol = transport.get_protocol()  # type: ignore[assignment]
        self._max_message = max_message
        self._need = 0  # bytes of the current frame's mask key and payload still to come
        self._head = b""  # the start of a header cut off at the end of the last chunk
        self._message = 0  # bytes of the fragmented data message under way
        self._fragmented = False  # a data message's first fragment came, not its last
        self._in_close = False  # the frame being skipped is the client's Close
        self._closing = False  # hand nothing on any more; wait for the client's Close
        self._violation: Violation | None = None
        self._on_violation: Callable[[int, str], None] | None = None
        self._peer_closed = asyncio.get_running_loop().create_future()
        transport.set_protocol(self)

    def attach(self, on_violation: Callable[[int, str], None]) -> None:
        """Call `on_violation(code, reason)` on a refused frame (at once if one was)."""
        self._on_violation = on_violation
        if self._violation is not None:
            on_violation(*self._violation)

    def closing(self) -> None:
        """The server sent its Close: hand nothing more on; watch for the client's.

        Reading resumes if aiohttp had paused it (its queue full): nothing reaches
        aiohttp any more, and the client's Close must be read."""
        self._closing = True
        if not self._transport.is_closing() and not self._transport.is_reading():
            self._transport.resume_reading()

    async def peer_closed(self) -> None:
        """Return once the client's Close has come, or the connection has ended."""
        await asyncio.shield(self._peer_closed)

    # asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        need = self._need
        if need >= len(data) and not self._head:
            self._need = need - len(data)  # the middle of a payload: the usual chunk
            if self._in_close and not self._need:
                self._close_received()
            if not self._closing:
                self._inner.data_received(data)
            return
        refused_at = self._scan(data)
        if self._closing:
            if refused_at is not None and refused_at > 0:
                self._inner.data_received(data[:refused_at])
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._peer_closed.done():
            self._peer_closed.set_result(None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # headers ---------------------------------------------------------------------

    def _scan(self, chunk: bytes) -> int | None:
        """Walk the frame headers in `chunk`; the offset in it where a refused frame
        starts (0 when it started in an earlier chunk), if one does."""
        carried = len(self._head)
        data = self._head + chunk if carried else chunk
        self._head = b""
        pos, end = self._need, len(data)
        if self._need and self._in_close and pos <= end:
            self._close_received()
        refused_at: int | None = None
        while pos < end:
            if end - pos < 2:
                self._head = data[pos:]
                break
            first, second = data[pos], data[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length >= 126:
                start += 2 if length == 126 else 8
                if start > end:
                    self._head = data[pos:]
                    break
                length = int.from_bytes(data[pos + 2 : start], "big")
            masked = second & 0x80
            frame_end = start + (4 if masked else 0) + length
            opcode = first & 0x0F
            if not self._closing:
                violation = self._judge(first, opcode, masked, length)
                if violation is not None:
                    refused_at = max(0, pos - carried)
                    self._refuse(violation)
            self._in_close = self._closing and opcode == OPCODE_CLOSE
            if frame_end > end:
                self._need = frame_end - end
                return refused_at
            pos = frame_end
            if self._in_close:
                self._close_received()
        self._need = 0
        return refused_at

    def _judge(self, first: int, opcode: int, masked: int, length: int) -> Violation | None:
        """Why this frame is refused, if it is (RFC 6455 5.2 to 5.5)."""
        if not masked:
            return 1002, UNMASKED_REASON
        if first & 0x70:
            return 1002, "reserved bits set: no extension was agreed"
        if opcode >= 0x8:  # close, ping, pong
            if opcode > 0xA:
                return 1002, f"unknown opcode {opcode}"
            if not first & 0x80 or length > 125:
                return 1002, "a control frame must be one frame of at most 125 bytes"
            return None
        if opcode > 0x2:
            return 1002, f"unknown opcode {opcode}"
        if (opcode == 0) != self._fragmented:  # a continuation needs a message under way
            return 1002, "a fragment out of sequence"
        total = length + self._message  # (0 unless a fragmented message is under way)
        if total > self._max_message:
            return 1009, f"frame too large ({size_text(self._max_message)} at most)"
        self._fragmented = not first & 0x80
        self._message = total if self._fragmented else 0
        return None

    def _refuse(self, violation: Violation) -> None:
        self._closing = True
        self._violation = violation
        if self._on_violation is not None:
            self._on_violation(*violation)

    def _close_received(self) -> None:
        self._in_close = False
        if not self._peer_closed.done():
            self._peer_closed.set_result(None)
