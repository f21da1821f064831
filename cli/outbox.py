"""Frames waiting for the server's answer, and the offsets already shown per room."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cli.connection import backoff

RETRY_LATER = frozenset({"unavailable", "rate_limited"})


@dataclass(slots=True)
class Outgoing:
    """One client frame, kept (with its `ref`, and `id` for a send) until answered.

    Every command the user types is one, so they run in the order typed; a send whose
    `room` is not set yet goes to the room current when it is first sent.
    """

    ref: str
    frame: dict[str, Any]

    @property
    def kind(self) -> str:
        """The frame's `type`: "send", "dm", "join", "who", ..."""
        return str(self.frame["type"])


Answered = Callable[["Outgoing", dict[str, Any]], None]


@dataclass(slots=True)
class InFlight:
    """The frame sent and waiting for its answer, and who gets that answer."""

    item: Outgoing
    reply: asyncio.Future[dict[str, Any]]
    answered: Answered


class Outbox:
    """A FIFO of unanswered frames, sent one at a time so their order is kept.

    The head stays queued until the server answers it (the frame with its `ref`);
    across a reconnect it is sent again unchanged: a send keeps its `id`, which the
    server dedupes.
    """

    def __init__(self, retry_initial: float = 0.25, retry_max: float = 5.0) -> None:
        self._items: deque[Outgoing] = deque()
        self._nonempty = asyncio.Event()
        self._added = asyncio.Event()
        self._answered = 0  # frames answered so far: only grows
        self._progress = asyncio.Event()  # set at each answer; cleared by a waiter
        self._in_flight: InFlight | None = None
        self._retry = (retry_initial, retry_max)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Outgoing]:
        return iter(tuple(self._items))

    def put(self, item: Outgoing) -> None:
        """Queue a frame behind the others."""
        self._items.append(item)
        self._nonempty.set()
        self._added.set()

    async def head(self) -> Outgoing:
        """The oldest unanswered frame, waiting until there is one."""
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._items[0]

    async def first(self, kind: str) -> Outgoing:
        """The oldest unanswered frame of `kind`, waiting until there is one."""
        while True:
            for item in self._items:
                if item.kind == kind:
                    return item
            self._added.clear()
            await self._added.wait()

    def peek(self) -> Outgoing | None:
        """The oldest unanswered frame, or None."""
        return self._items[0] if self._items else None

    def done(self, item: Outgoing) -> None:
        """Forget a frame the server answered (acked or refused for good)."""
        if self._items and self._items[0] is item:
            self._items.popleft()
        else:
            self._items.remove(item)
        self._answered += 1
        self._progress.set()

    @property
    def answered(self) -> int:
        """How many frames have been answered so far (it only grows)."""
        return self._answered

    async def wait_answered(self, seen: int) -> None:
        """Wait until more than `seen` frames have been answered; at once if they are.

        `seen` is read (`answered`) when the caller looks at the queue, so an answer
        that comes between that look and this wait's first step is not missed: a
        waiter started with `ensure_future` runs a loop iteration later, and the
        reader may hand over the last answer in between.
        """
        while self._answered == seen:
            self._progress.clear()
            await self._progress.wait()

    def answer(self, frame: dict[str, Any]) -> bool:
        """Hand a server frame to the frame in flight; True when it answers it (by `ref`).

        An answer for good (not "try later") is dealt with at once, before any later
        server frame is read: the frame leaves the queue and `answered` gets it, so a
        send is no longer pending once its `ack` is in, and its `message` (the next
        frame) never shows beside it.
        """
        flight = self._in_flight
        if flight is None or frame.get("ref") != flight.item.ref:
            return False
        if not flight.reply.done():
            flight.reply.set_result(frame)
            if not _retry_later(frame):
                self.done(flight.item)
                flight.answered(flight.item, frame)
        return True

    async def pump(self, send: Callable[[Outgoing], Awaitable[bool]], answered: Answered) -> None:
        """Send the head, wait for its answer, repeat, on one connection.

        `send` returns False once the connection is broken: then this returns and the
        head stays queued for the next connection. What the server did not accept
        (`unavailable`, `rate_limited`) is sent again after a growing pause.
        `answered` gets every other outcome (the ack, or the refusal).
        """
        retry = backoff(*self._retry)
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await self.head()
                self._in_flight = InFlight(item, loop.create_future(), answered)
                if not await send(item):
                    return
                reply = await self._in_flight.reply
                self._in_flight = None
                if _retry_later(reply):
                    await asyncio.sleep(next(retry))
                else:
                    retry = backoff(*self._retry)
        finally:
            self._in_flight = None


def _retry_later(reply: dict[str, Any]) -> bool:
    """True for a refusal that asks for the frame again later."""
    return reply.get("type") == "error" and reply.get("code") in RETRY_LATER


class SeenOffsets:
    """The offsets of one room's messages already shown, and the newest of them.

    Offsets are opaque: only compared for equality. The window is bounded; a resume
    never replays more than the server's history, far below the bound.
    """

    def __init__(self, last: str | None = None, limit: int = 5000) -> None:
        self.last = last
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        self._limit = limit

    def add(self, offset: str) -> bool:
        """Record `offset` as shown; False when it already was (a duplicate)."""
        if offset in self._set:
            return False
        self._set.add(offset)
        self._order.append(offset)
        if len(self._order) > self._limit:
            self._set.discard(self._order.popleft())
        self.last = offset
        return True
