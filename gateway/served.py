"""A connection after its handshake: its frames run in order, and its end.

Once /ws has named and welcomed a connection (gateway/ws.py), the handler hands it over
(`Served.hand_over`): aiohttp forgets it, and from then on the connection is its link
(gateway/link.py), its session and this small object, which carries out what the link
reports: each message run in turn, a refused frame or the client's Close answered, and
once the TCP connection has ended, its rooms left and its name freed. The counts the
request held (the node's connections, the guard's WebSockets) are released then.

The node's `Handovers` knows the connections handed over, so that a shutdown waits for
them to end (every end is awaited: no task is left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import ErrorCode, ProtocolError
from gateway.events import ErrorReply
from gateway.guard import HOLDS
from gateway.handlers import handle
from gateway.link import Item, Link
from gateway.membership import leave_everything
from gateway.metrics import FRAME_REFUSALS
from gateway.node import Node
from gateway.session import Session

log = logging.getLogger(__name__)


class Handovers:
    """The connections a node's handlers handed over, until each has ended."""

    def __init__(self) -> None:
        self.served: set[Served] = set()
        self._ended = asyncio.Event()
        self._ended.set()
        self._ending: set[asyncio.Task[None]] = set()

    def add(self, served: Served) -> None:
        self.served.add(served)
        self._ended.clear()

    def end(self, served: Served, ending: Awaitable[None]) -> None:
        """Run `ending` (the connection's end) as an owned task; forget `served` after."""
        task = asyncio.ensure_future(ending)
        self._ending.add(task)
        task.add_done_callback(lambda _: self._done(served, task))

    def _done(self, served: Served, task: asyncio.Task[None]) -> None:
        self._ending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the end of a connection failed", exc_info=task.exception())
        self.served.discard(served)
        if not self.served:
            self._ended.set()

    async def all_ended(self, seconds: float) -> None:
        """Wait up to `seconds` for every connection handed over to end; cut those
        still open then, and wait (as long again at most) for their ends."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ended.wait()
        for served in list(self.served):
            if served.link is not None and not served.link.is_lost:
                served.link.outbox.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ended.wait()


HANDOVERS = web.AppKey("handovers", Handovers)


class Served:
    """One connection's owner (a `LinkOwner`): what its link reports, carried out."""

    __slots__ = ("_handovers", "_name_released", "_releases", "link", "node", "session")

    def __init__(self, node: Node, handovers: Handovers) -> None:
        self.node = node
        self._handovers = handovers
        self.session: Session | None = None
        self.link: Link | None = None  # set once handed over
        self._releases: list[Callable[[], None]] = []
        self._name_released: Callable[[], None] | None = None  # NameReleases.begin's

    def hand_over(self, request: web.Request, link: Link) -> None:
        """Take the connection from aiohttp: its counts, and its transport, which the
        request handler must neither close nor read any more. The handler returns next;
        the request, its task and aiohttp's protocol object are then garbage."""
        self.link = link
        self._releases = [hold.take() for hold in request.get(HOLDS, ())]
        forget(request)
        self._handovers.add(self)
        link.serve()

    # LinkOwner -------------------------------------------------------------------

    def refused(self, code: int, reason: str) -> None:
        assert self.session is not None
        refuse_frame(self.node, self.session, code, reason)

    def peer_closing(self, code: int) -> None:
        assert self.session is not None
        self._ending()  # the client may connect again before this connection has ended
        self.session.close(code, "", notice=False)  # the answer to the client's Close

    def run(self, item: Item) -> Awaitable[None]:
        assert self.session is not None
        return run_item(self.node, self.session, item)

    def lost(self) -> None:
        self._ending()
        self._handovers.end(self, self._end())

    def _ending(self) -> None:
        """Mark the connection's name as being released here (once): a claim of it on
        this node waits for that (gateway/releases.py)."""
        session = self.session
        if self._name_released is None and session is not None and session.name_key:
            self._name_released = self.node.releases.begin(session.name_key)

    async def _end(self) -> None:
        assert self.session is not None and self.link is not None
        try:
            await self.link.idle()
            self.node.metrics.connection_gauges[self.session.codec.name].dec()
            await end(self.node, self.session, self.link)
        finally:
            for release in self._releases:
                release()
            self.drop()

    def drop(self) -> None:
        """Let go of the session and the link once the connection has ended (its name
        released: a claim of it here waits no more): the link holds this owner, and the
        session its link, so these references would close reference cycles, and the
        node freezes what survives a full collection (gateway/collector.py): the
        connection is freed by reference counting instead."""
        if self._name_released is not None:
            self._name_released()
            self._name_released = None
        self.session = None
        self.link = None


def forget(request: web.Request) -> None:
    """Tell aiohttp the connection of `request` is gone: its server forgets the
    connection and its request handler ends without closing or reading the transport
    (the link's since the upgrade, so aiohttp would never hear of its end)."""
    protocol = request.protocol
    protocol.transport = None  # so that aiohttp's "connection lost" closes nothing
    protocol.connection_lost(None)


def refuse_frame(node: Node, session: Session, code: int, reason: str) -> None:
    """A frame the link refused (unmasked: 1002; too large: 1009; not UTF-8: 1007):
    close with `code`."""
    node.metrics.frames_refused.labels(reason=FRAME_REFUSALS.get(code, "protocol")).inc()
    log.info("closing %s (%s): %s", session.ref, session.name or "no name", reason)
    session.close(code, reason)


async def end(node: Node, session: Session, link: Link) -> None:
    """Log why a connection broke, if it did; leave its rooms, free its name, close it."""
    # No pong within the heartbeat: the link cut the connection.
    broken = session.broken or (None if session.closing else link.broken)
    if broken is not None:
        log.info("closed %s (%s): %s", session.ref, session.name or "no name", broken)
    await leave_everything(node, session)
    session.close(1000, "bye")  # nothing is written when the connection is gone
    await session.finish()


async def run_item(node: Node, session: Session, item: Item) -> None:
    """Run one message of a connection: a text frame's command, or refuse a binary one."""
    if isinstance(item, str):
        await _run_frame(node, session, item)
    else:
        session.send(ErrorReply(ErrorCode.BAD_FRAME, "send text frames, not binary"))
        node.metrics.errors.labels(code=ErrorCode.BAD_FRAME).inc()


async def _run_frame(node: Node, session: Session, frame: str) -> None:
    command = None
    try:
        command = session.codec.decode(frame)
        if command is not None:
            await handle(node, session, command)
    except ProtocolError as error:
        ref = error.ref if error.ref is not None else getattr(command, "ref", None)
        # Counted at once, logged only at DEBUG: a client can make these as fast as it
        # can send, and must not be able to flood the logs.
        log.debug("refused a frame of %s (%s): %r", session.ref, error.code, error.message)
        session.send(ErrorReply(error.code, error.message, ref, error.until))
        node.metrics.errors.labels(code=error.code).inc()
    except Exception:
        log.exception("a frame of %s (%s) failed", session.ref, session.name)
        session.close(1011, "internal error")
