"""The write path to a connection's socket: complete WebSocket frames, built once (by
the codecs, with gateway/codecs/frames.py).

A server-to-client frame is unmasked (RFC 6455 5.1), so it is a few header bytes and
the payload: one `bytes` per message per mode serves every local connection of that
mode. `Outbox` writes such frames straight to the connection's transport, with no task
and no `await`; frames pushed to one connection within one loop iteration are joined
and go out in one `transport.write` (the `Corker` flushes every outbox it was given
once, at the end of the iteration). The transport's own buffer is the connection's
queue: a connection whose unsent bytes pass its limit is over it, and its session
closes it. This is the only module that writes to a transport: the frames of the
session, and the link's pongs and pings (gateway/link.py), all through the one outbox,
so they stay in order; an outbox is flushed before a close.
permessage-deflate is never negotiated, so a frame never needs compressing per
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

CUT_AFTER = 2.0  # seconds a closed transport has to write what it holds before it is aborted
_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() resets the connection at once


class Corker:
    """Outboxes with frames waiting, flushed together once per loop iteration.

    Flushes are paced by their own cost: after a flush that took t seconds the next one
    waits until t seconds have passed since it ended. With light traffic a flush costs
    microseconds and frames go out at the end of the iteration they were made in; when
    fan-out is heavy (a presence event to thousands of members, a busy room), frames
    accumulate meanwhile and each connection gets several in one write, so at most
    about half the time goes to writing and the added latency is at most one flush.
    """

    __slots__ = ("_dirty", "_loop", "_quiet_until")

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quiet_until = 0.0  # loop time before which the next flush waits

    def mark(self, outbox: Outbox) -> None:
        """`outbox` has frames: flush it soon (once, however many frames it gets)."""
        if not self._dirty:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            wait = self._quiet_until - loop.time()
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)
        self._dirty.append(outbox)

    def flush(self) -> None:
        """Write every waiting outbox's frames to its transport."""
        dirty, self._dirty = self._dirty, []
        loop = self._loop
        started = loop.time() if loop is not None else 0.0
        for outbox in dirty:
            outbox.flush()
        if loop is not None:
            ended = loop.time()
            self._quiet_until = ended + (ended - started)


class Outbox:
    """One connection's frames on their way to its transport."""

    __slots__ = ("_chunks", "_corker", "_limit", "_queued", "_transport")

    def __init__(self, transport: asyncio.Transport | None, corker: Corker, limit: int) -> None:
        self._transport = transport
        self._corker = corker
        self._limit = limit
        self._chunks: list[bytes] = []
        self._queued = 0  # bytes in _chunks

    def push(self, frame: bytes) -> bool:
        """Queue `frame` for this iteration's write; False when the connection's unsent
        bytes (ours and its transport's) are over the limit: the frame is not queued."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return True  # gone: nothing to send to, nothing to hold
        queued = self._queued + len(frame)
        if transport.get_write_buffer_size() + queued > self._limit:
            return False
        chunks = self._chunks
        if not chunks:
            self._corker.mark(self)
        chunks.append(frame)
        self._queued = queued
        return True

    def flush(self) -> None:
        """Write what is queued now (also before a close, so nothing is left behind)."""
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        self._queued = 0
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def unsent(self) -> int:
        """Bytes queued here or in the transport, not yet written to the socket."""
        transport = self._transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        return self._queued + held

    def close(self, frames: bytes, *, flush: bool) -> bool:
        """Write `frames` (a last line, the close frame) as the connection's last ones:
        after what is queued with `flush`, else instead of it (the peer does not read,
        the queue is dropped). The transport stays open for the peer's Close; `finish`
        ends it. False if it was already closing (nothing written)."""
        if flush:
            self.flush()
        self._chunks = []
        self._queued = 0
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        transport.write(frames)
        return True

    def finish(self) -> None:
        """Close the transport (FIN once what it holds is written), and abort it after
        CUT_AFTER seconds if it is still not gone (nothing waits for it meanwhile)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        asyncio.get_running_loop().call_later(CUT_AFTER, _abort, transport)

    def abort(self) -> None:
        """Drop everything and cut the connection (its peer stopped reading)."""
        self._chunks = []
        self._queued = 0
        if self._transport is not None:
            _abort(self._transport)


def _abort(transport: asyncio.Transport) -> None:
    """Cut `transport` with a TCP reset unless it is gone already (closing with nothing
    left to send means it has lost, or is losing, its connection, and asyncio's
    transports fail on an abort after that). Without the reset (SO_LINGER 0) the kernel
    would keep the socket and its unsent bytes, probing a peer that reads nothing, for
    minutes."""
    if transport.is_closing() and not transport.get_write_buffer_size():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()
