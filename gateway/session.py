"""One WebSocket connection: who it is, its rooms, and what is on its way to it.

A session never waits for its peer on anyone else's behalf: frames go straight into its
transport's buffer (gateway/wire.py), with no task of its own. Every close the server
starts is a closing handshake (RFC 6455 7.1.1): a text-mode peer first gets a last line
saying why (`* bye`, `! REASON`), then the close frame goes out, and the TCP connection
is closed once the peer's Close has come back (gateway/link.py watches for it), or
after CLOSE_TIMEOUT without it. A peer that reads too slowly to keep its unsent bytes
under the limit loses what was queued for it: its close frame is written at once, and
without the peer's Close within CUT_AFTER the connection is aborted.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.access import EVERY_ROOM, NO_ROOM
from gateway.codecs import Codec
from gateway.codecs.frames import close_frame, text_frame
from gateway.events import Direct, Event, Message, RoomEvent, Subscribed, Welcome
from gateway.link import Link
from gateway.metrics import Metrics
from gateway.offsets import parse_offset
from gateway.ratelimit import TokenBucket
from gateway.wire import CUT_AFTER, Outbox

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 5.0  # more seconds for the peer's Close while what was queued goes out
CLOSE_TIMEOUT = 2.0  # seconds the peer has to answer a close frame before TCP is closed

# A per-event cache of complete frames, keyed by (codec name, outgoing).
FrameCache = dict[tuple[str, bool], bytes | None]


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: 125 bytes of payload, 2 for the code


def close_reason(reason: str) -> bytes:
    """`reason` as UTF-8 within the close frame's limit, never cutting a character in two
    (a broken one makes the client fail the close with 1007 instead of its code)."""
    cut = reason.encode()[:MAX_CLOSE_REASON_BYTES]
    return cut.decode(errors="ignore").encode()


def farewell(code: int, reason: str) -> str:
    """The last line a text-mode connection gets before a close with `code`."""
    return "* bye" if code == 1000 else f"! {reason}"


class Session:
    """A connection's state. Its room membership is kept by the hub and presence."""

    def __init__(
        self,
        codec: Codec,
        ref: str,
        *,
        outbox: Outbox,
        history_budget: TokenBucket,
        joins: TokenBucket,
        address: str,
        link: Link,
        metrics: Metrics,
    ) -> None:
        self.codec = codec
        self.ref = ref
        self.is_text = codec.name == "text"  # one room at a time, no own echo
        self._room_key = (codec.name, False)  # its frames' key in a FrameCache
        self.name = ""
        self.name_key = ""
        self.rooms: dict[str, None] = {}  # rooms in join order (a set that keeps order)
        self.rooms_allowed = EVERY_ROOM  # where its token lets it go (auth on)
        self.moderates = NO_ROOM  # the rooms its token lets it moderate
        self.history_budget = history_budget  # history messages it may still ask for
        self.address = address  # the client's (behind a trusted proxy, from X-Forwarded-For)
        self.joins = joins  # its own budget of announced joins (gateway/budgets.py)
        self.rate_strikes = 0  # rate-limited messages in a row
        self.broken: object = None  # why the connection broke, if it did
        self._metrics = metrics
        self._outbox = outbox
        self._link = link
        self._pending: dict[str, list[RoomEvent]] = {}  # room -> events held during a join
        self._floors: dict[str, tuple[str, int]] = {}  # room -> newest offset sent at join
        self._acking = False  # a send of this connection awaits its ack
        self._ack_held: list[RoomEvent] = []  # room events that arrived before that ack
        # Direct messages to its name before its welcome (None once welcomed): the name
        # is indexed right after its claim, and the first room's entry may follow.
        self._unwelcomed: list[tuple[Direct, bool]] | None = []
        self._closer: asyncio.Task[None] | None = None

    @property
    def current_room(self) -> str | None:
        """The room a text-mode connection is in (its first room in JSON mode)."""
        return next(iter(self.rooms), None)

    @property
    def closing(self) -> bool:
        """True once a close was asked for; nothing more is queued after it."""
        return self._closer is not None

    # sending -----------------------------------------------------------------

    def send(self, event: Event, *, outgoing: bool = False) -> None:
        """Encode `event` for this connection alone and queue it."""
        frame = self.codec.frame(event, outgoing=outgoing)
        if frame is not None:
            self._push(frame)

    def send_raw(self, line: str) -> None:
        """Queue one text frame of `line`, already in its wire form."""
        self._push(text_frame(line.encode()))

    def _send_cached(self, event: Event, cache: FrameCache, outgoing: bool) -> None:
        key = (self.codec.name, outgoing)
        frame = cache[key] if key in cache else self._encode_into(cache, event, key)
        if frame is not None:
            self._push(frame)

    def _encode_into(self, cache: FrameCache, event: Event, key: tuple[str, bool]) -> bytes | None:
        frame = cache[key] = self.codec.frame(event, outgoing=key[1])
        return frame

    def _push(self, frame: bytes) -> None:
        if self._closer is None and not self._outbox.push(frame):
            self._overflow()

    def unsent(self) -> int:
        """Bytes queued to this connection and not yet written to its socket."""
        return self._outbox.unsent()

    def _overflow(self) -> None:
        log.warning("closing %s (%s): reads too slowly", self.ref, self.name)
        self._metrics.slow_consumers.inc()
        self.close(1008, "too slow: the send queue is full", flush=False)

    # delivery from the hub ---------------------------------------------------

    def deliver_room(self, event: RoomEvent, cache: FrameCache) -> None:
        """A room event; held back while this connection is joining the room."""
        if not (self._pending or self._acking or self._floors or self.is_text) and (
            event.room in self.rooms
        ):
            # The common case, once per delivery: nothing held, nothing to filter.
            key = self._room_key
            frame = cache[key] if key in cache else self._encode_into(cache, event, key)
            if frame is not None and self._closer is None and not self._outbox.push(frame):
                self._overflow()
            return
        pending = self._pending.get(event.room)
        if pending is not None:
            pending.append(event)
            return
        if event.room not in self.rooms:
            return
        if self._acking:
            self._ack_held.append(event)  # the ack comes first; order is kept behind it
            return
        if isinstance(event, Message):
            if self._at_or_below_floor(event):
                return
            if self.is_text and event.origin == self.ref:
                return  # a text-mode connection does not get its own messages back
        self._send_cached(event, cache, outgoing=False)

    def _at_or_below_floor(self, message: Message) -> bool:
        """True for a live message at or before what the join already sent (the newest
        offset then); the first one past it ends the check for its room."""
        floor = self._floors.get(message.room)
        if floor is None:
            return False
        position = parse_offset(message.offset)
        if position is not None and position[0] == floor[0] and position[1] <= floor[1]:
            return True
        del self._floors[message.room]
        return False

    def begin_send(self) -> None:
        """A send is on its way: hold room events (its own message among them) until its ack."""
        self._acking = True

    def end_send(self, ack: Event | None) -> None:
        """Queue the send's ack (if any), then the room events held behind it."""
        self._acking = False
        if ack is not None:
            self.send(ack)
        held, self._ack_held = self._ack_held, []
        for event in held:
            self.deliver_room(event, {})

    def deliver_direct(self, event: Direct, cache: FrameCache, *, outgoing: bool) -> None:
        """A direct message to or from this connection's name (not the sending one);
        held until the connection's `welcome`, which always comes first."""
        if event.origin == self.ref:
            return
        if self._unwelcomed is not None:
            self._unwelcomed.append((event, outgoing))
            return
        self._send_cached(event, cache, outgoing)

    def welcome(self, welcome: Welcome) -> None:
        """Send `welcome`, then the direct messages that reached the name before it."""
        held, self._unwelcomed = self._unwelcomed or [], None
        self.send(welcome)
        for event, outgoing in held:
            self.send(event, outgoing=outgoing)

    def begin_join(self, room: str) -> None:
        """Enter `room`, holding its live events until `finish_join`."""
        self.rooms[room] = None
        self._pending[room] = []

    def finish_join(self, subscribed: Subscribed, replay: list[Message]) -> None:
        """Send `subscribed`, the replay, then the held events not in the replay."""
        room = subscribed.room
        held = self._pending.pop(room, [])
        self.send(subscribed)
        for message in replay:
            self.send(message)
        newest = replay[-1].offset if replay else subscribed.offset
        floor = parse_offset(newest) if newest else None
        if floor is not None:
            self._floors[room] = floor
        for event in held:
            self.deliver_room(event, {})

    def joining(self, room: str) -> bool:
        """Whether a join of `room` is under way (between `begin_join` and `finish_join`)."""
        return room in self._pending

    def abandon_join(self, room: str) -> None:
        """Forget `room`: undo `begin_join`, or leave."""
        self._pending.pop(room, None)
        self._floors.pop(room, None)
        self.rooms.pop(room, None)

    # closing -----------------------------------------------------------------

    def close(self, code: int, reason: str, *, flush: bool = True, notice: bool = True) -> None:
        """Close the connection with `code`: a closing handshake, bounded in time.

        A text-mode connection first gets a last line saying why (`notice`: not when it
        was just told in an error line). With `flush` what is queued goes out first and
        the peer has CLOSE_TIMEOUT (more while what was queued is still going out) to
        answer; without, the peer is not reading: its queue is dropped, and it is
        aborted unless it answers within CUT_AFTER."""
        if self._closer is not None:
            return
        frames = close_frame(code, close_reason(reason))
        if notice and self.is_text:
            frames = text_frame(farewell(code, reason).encode()) + frames
        self._link.closing()
        written = self._outbox.close(frames, flush=flush)
        self._closer = asyncio.create_task(
            self._handshake(flush) if written else asyncio.sleep(0), name=f"closer-{self.ref}"
        )

    async def _handshake(self, flush: bool) -> None:
        """Wait for the peer's Close, then close TCP (or abort a peer that is not reading)."""
        outbox = self._outbox
        if flush:
            if not await self._answered(CLOSE_TIMEOUT) and outbox.unsent():
                await self._answered(FLUSH_TIMEOUT)
            outbox.finish()
        elif await self._answered(CUT_AFTER):
            outbox.finish()
        else:
            outbox.abort()

    async def _answered(self, seconds: float) -> bool:
        """Whether the peer's Close comes (or the connection ends) within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                await self._link.peer_closed()
        except TimeoutError:
            return False
        return True

    async def finish(self) -> None:
        """Wait for a close in progress (bounded by its own timeouts)."""
        if self._closer is not None:
            await asyncio.wait([self._closer])
