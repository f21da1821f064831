"""One upgraded WebSocket connection, from the 101 on: our own asyncio protocol.

aiohttp answers the HTTP request and the upgrade; right before its 101 goes out, a
`Link` takes the transport (`transport.set_protocol`), so it sees every frame from the
first byte, and aiohttp sees none. Once the connection is named and welcomed the
handler returns and aiohttp forgets the connection (gateway/ws.py): what stays per
idle connection is this object, its `FrameReader` (gateway/inbound.py), its `Outbox`
(gateway/wire.py) and the session; no task, no request, no aiohttp reader or writer.

The link does what aiohttp's WebSocketResponse did:

- a text message is checked for UTF-8 (1007 otherwise) and queued; the queue is run in
  order by a task that exists only while it holds something (`serve`), or read one at
  a time by the handshake (`receive`). Over INBOX_PAUSE queued messages the transport
  stops reading until the queue is drained to half that;
- a ping is answered with its pong; a pong only proves the peer alive;
- the heartbeat: after `heartbeat` seconds in which nothing came, a ping; nothing within
  half that more, and the connection is cut (`broken` says why);
- a Close the client starts is answered (its code echoed, 1000 for none; 1002 for an
  invalid one, 1007 for a reason that is not UTF-8), once the messages queued before it
  have run, by the owner, whose session writes
  the answer and then closes TCP (FIN); a refused frame (1002, 1009, 1007) is handed to
  the owner to close with that code. Either way the reader then waits only for the
  client's Close (`peer_closed`).

Bytes a client sent before the 101 (aiohttp keeps them aside, and RFC 6455 4.1 says a
client must wait for the answer) are not seen.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Protocol

from gateway.codecs.frames import ping_frame, pong_frame
from gateway.inbound import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_TEXT,
    FrameReader,
    Violation,
    close_answer,
)
from gateway.wire import Corker, Outbox

INBOX_PAUSE = 32  # messages queued before the transport stops reading
INVALID_TEXT_REASON = "text frames must be valid UTF-8"

Item = str | bytes  # a text message, or a binary one (refused by the owner, in order)


class LinkOwner(Protocol):
    """What a link tells the one that serves its connection (gateway/ws.py)."""

    def refused(self, code: int, reason: str) -> None:
        """A frame broke the protocol: close with `code`."""

    def peer_closing(self, code: int) -> None:
        """The client sent its Close first: answer it with `code`."""

    def run(self, item: Item) -> Awaitable[None]:
        """Run one message (after `serve`), in arrival order."""

    def lost(self) -> None:
        """The TCP connection ended (after `serve`)."""


class Link(asyncio.Protocol):
    """A connection's frames in, its heartbeat, and its outbox (see the module)."""

    __slots__ = (
        "_closed_waiter",
        "_heartbeat",
        "_inbox",
        "_owner",
        "_paused",
        "_peer_closed",
        "_peer_code",
        "_pinged",
        "_reader",
        "_runner",
        "_seen",
        "_serving",
        "_timer",
        "_transport",
        "_waiter",
        "broken",
        "is_lost",
        "outbox",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        corker: Corker,
        send_limit: int,
        max_message: int,
        heartbeat: float,
        owner: LinkOwner,
    ) -> None:
        self._transport = transport
        self._reader = FrameReader(max_message)
        self._owner = owner
        self.outbox = Outbox(transport, corker, send_limit)
        self._heartbeat = heartbeat
        self._inbox: deque[Item] | None = None  # messages not yet run (None: none)
        self._waiter: asyncio.Future[None] | None = None  # `receive` waits for a message
        self._serving = False
        self._runner: asyncio.Task[None] | None = None  # runs the inbox while it has any
        self._paused = False
        self._peer_closed = False  # the client's Close came, or the connection ended
        self._peer_code: int | None = None  # its answer, held while earlier messages run
        self._closed_waiter: asyncio.Future[None] | None = None
        self._seen = True  # something came since the last heartbeat tick
        self._pinged = False
        self._timer: asyncio.TimerHandle | None = None
        self.is_lost = False
        self.broken: str | None = None  # why the connection was cut, if it was
        transport.set_protocol(self)
        if heartbeat:
            self._timer = asyncio.get_running_loop().call_later(heartbeat, self._beat)

    # what the owner asks ---------------------------------------------------------

    async def receive(self) -> Item | None:
        """The next message (the handshake's name); None once the connection closes."""
        while not self._inbox:
            if self.is_lost or self._reader.closing:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._pop(self._inbox)

    def serve(self) -> None:
        """From now on, run each message with the owner's `run` and tell it `lost`."""
        self._serving = True
        if self._inbox:
            self._start_runner()

    def abandon(self) -> None:
        """The upgrade failed and aiohttp has the transport back: stop the heartbeat,
        so nothing of the link touches that transport again."""
        self._stop_heartbeat()

    async def idle(self) -> None:
        """Return once no message is being run."""
        if self._runner is not None:
            await asyncio.wait([self._runner])

    def closing(self) -> None:
        """The server sent its Close: run nothing more; wait for the client's Close
        (reading again if the full inbox had paused it)."""
        self._reader.closing = True
        self._inbox = None
        self._stop_heartbeat()
        self._wake()
        if self._paused:
            self._resume()

    async def peer_closed(self) -> None:
        """Return once the client's Close has come, or the connection has ended."""
        if self._peer_closed:
            return
        if self._closed_waiter is None or self._closed_waiter.done():
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    # asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._seen = True
        reader = self._reader
        refused = False  # a text of this chunk was not UTF-8: only a Close counts after
        for opcode, payload in reader.feed(data):
            if opcode == OPCODE_CLOSE:
                self._report(reader)  # a frame refused before this Close: the answer
                self._close_received(payload)
                return
            if refused:
                continue
            if opcode == OPCODE_TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    reader.violation = None  # a later frame's: this refusal came first
                    self._refuse((1007, INVALID_TEXT_REASON))
                    refused = True
                    continue
                self._put(text)
            elif opcode == OPCODE_BINARY:
                self._put(payload)
            elif opcode == OPCODE_PING:
                self.outbox.push(pong_frame(payload))
            # a pong: that something came (`_seen`) is all it says
        self._report(reader)

    def eof_received(self) -> bool | None:
        # The client's Close came and its answer waits for the messages before it:
        # keep the transport open for it (the session's closer ends TCP); otherwise
        # the transport closes and connection_lost follows.
        return True if self._peer_code is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        self._set_peer_closed()
        self._stop_heartbeat()
        self._wake()
        if self._serving:
            self._owner.lost()

    # the rest ----------------------------------------------------------------------

    def _put(self, item: Item) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(item)
        if len(inbox) >= INBOX_PAUSE and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        if self._serving:
            if self._runner is None:
                self._start_runner()
        else:
            self._wake()

    def _pop(self, inbox: deque[Item]) -> Item:
        item = inbox.popleft()
        if not inbox:
            self._inbox = None
        if self._paused and len(inbox) <= INBOX_PAUSE // 2:
            self._resume()
        return item

    def _resume(self) -> None:
        self._paused = False
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def _start_runner(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._inbox:  # None once a close is under way (`closing`, `_refuse`)
                await self._owner.run(self._pop(self._inbox))
        finally:
            self._runner = None
            code, self._peer_code = self._peer_code, None
            if code is not None:
                self._answer_close(code)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _report(self, reader: FrameReader) -> None:
        """Refuse the frame the reader refused, if it did (once)."""
        if reader.violation is not None:
            violation, reader.violation = reader.violation, None
            self._refuse(violation)

    def _refuse(self, violation: Violation) -> None:
        self._reader.closing = True
        self._inbox = None
        self._wake()
        self._owner.refused(*violation)

    def _close_received(self, payload: bytes) -> None:
        started_by_us = self._reader.closing
        self._set_peer_closed()
        if started_by_us:
            return  # the answer to our Close: the session's closer ends TCP now
        code, refusal = close_answer(payload)
        if refusal:
            self._refuse((code, refusal))
            return
        self._reader.closing = True  # nothing after a Close is read (RFC 6455 5.5.1)
        self._stop_heartbeat()
        if self._runner is not None:
            self._peer_code = code  # answered once the messages before it have run
            return
        self._answer_close(code)

    def _answer_close(self, code: int) -> None:
        self._inbox = None
        self._wake()
        self._owner.peer_closing(code)

    def _set_peer_closed(self) -> None:
        self._peer_closed = True
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    def _stop_heartbeat(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self) -> None:
        """One heartbeat tick: quiet for a period, ping; quiet after the ping, cut."""
        self._timer = None
        if self.is_lost:
            return
        delay = self._heartbeat
        if self._seen or self._paused:  # paused: its pong could not be read; not its fault
            self._seen = self._pinged = False
        elif not self._pinged:
            self._pinged = True
            self.outbox.push(ping_frame())
            delay /= 2
        else:
            self.broken = f"no PONG within {delay / 2:g}s of a ping"
            self.outbox.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self._beat)
