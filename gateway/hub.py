"""Local connections by room, name and ref; fans the broker's events out to them.

The hub is the node's `BrokerListener`. It subscribes a room at the broker while the
node has a connection in it, and encodes each event once per codec for all of them.
What a moderator's or an operator's action sends back through the broker (a removal, a
disconnect) is carried out here too: a removal takes the name's connections out of the
room at once (no grace period) and tells them why (docs/protocol.md, "Moderators").
"""

from __future__ import annotations

import asyncio
import logging

from gateway.broker.base import Broker
from gateway.events import Direct, Removed, RoomEvent
from gateway.metrics import Metrics
from gateway.names import name_key as _key
from gateway.presence import Presence
from gateway.session import FrameCache, Session
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)

DISCONNECT_CODE = 4001
DISCONNECT_REASON = "disconnected by an operator"


class Hub:
    """Who is connected to this node, and where."""

    def __init__(self, broker: Broker, metrics: Metrics, presence: Presence) -> None:
        self._broker = broker
        self._metrics = metrics
        self._presence = presence  # a removal takes the name out at once, no grace
        self._by_ref: dict[str, Session] = {}  # connection ref -> session
        self._by_name: dict[str, dict[str, Session]] = {}  # name key -> ref -> session
        self._by_room: dict[str, dict[str, Session]] = {}  # room -> ref -> session
        self._subscribed: set[str] = set()  # rooms subscribed at the broker
        self._subscription_lock = asyncio.Lock()
        self._exits: set[asyncio.Task[None]] = set()  # removed connections leaving rooms

    def sessions(self) -> list[Session]:
        """Every open connection on this node, named or not yet."""
        return list(self._by_ref.values())

    def room_count(self) -> int:
        """Rooms with a connection on this node."""
        return len(self._by_room)

    def unsent_bytes(self) -> int:
        """Bytes queued to this node's connections, not yet written to their sockets."""
        return sum(session.unsent() for session in self._by_ref.values())

    def connect(self, session: Session) -> None:
        """Register a new connection."""
        self._by_ref[session.ref] = session

    def named(self, key: str) -> list[Session]:
        """The connections here of the name key `key`."""
        return list(self._by_name.get(key, {}).values())

    def add_name(self, session: Session) -> None:
        """Index a connection by its name once it has one."""
        self._by_name.setdefault(session.name_key, {})[session.ref] = session

    def remove(self, session: Session) -> None:
        """Forget a connection (after it left its rooms)."""
        self._by_ref.pop(session.ref, None)
        named = self._by_name.get(session.name_key)
        if named is not None:
            named.pop(session.ref, None)
            if not named:
                del self._by_name[session.name_key]

    async def enter(self, session: Session, room: str) -> None:
        """Add `session` to `room`; returns once the node receives the room's events."""
        self._by_room.setdefault(room, {})[session.ref] = session
        if room not in self._subscribed:
            async with self._subscription_lock:
                if room not in self._subscribed and room in self._by_room:
                    await self._broker.subscribe(room)
                    self._subscribed.add(room)

    async def exit(self, session: Session, room: str) -> None:
        """Take `session` out of `room`; unsubscribe when it was the last one here."""
        members = self._by_room.get(room)
        if members is None:
            return
        members.pop(session.ref, None)
        if members:
            return
        del self._by_room[room]
        async with self._subscription_lock:
            if room in self._subscribed and room not in self._by_room:
                self._subscribed.discard(room)
                await self._broker.unsubscribe(room)

    # BrokerListener ----------------------------------------------------------

    def on_room_event(self, event: RoomEvent) -> None:
        members = self._by_room.get(event.room)
        if not members:
            return
        cache: FrameCache = {}
        for session in list(members.values()):
            session.deliver_room(event, cache)
        self._metrics.frames_sent.inc(len(members))

    def on_direct(self, event: Direct, name_key: str) -> None:
        outgoing = name_key != _key(event.to)
        cache: FrameCache = {}
        for session in list(self._by_name.get(name_key, {}).values()):
            session.deliver_direct(event, cache, outgoing=outgoing)

    def on_kick(self, connection: str) -> None:
        session = self._by_ref.get(connection)
        if session is not None:
            session.close(4000, "session taken over")

    def on_removed(self, name: str, room: str, by: str, until: int | None) -> None:
        sessions = [s for s in self.named(_key(name)) if room in s.rooms]
        self._presence.expel(room, name)  # the name left here a moment ago: no grace
        settled = []  # those in the room; a join under way undoes itself (enter_room)
        for session in sessions:
            if not session.joining(room):
                settled.append(session)
                self._presence.exit(room, session.name, at_once=True)
            session.abandon_join(room)  # nothing more of the room reaches it
            session.send(Removed(room, by, until))
        if settled:
            task = asyncio.create_task(self._exit_all(settled, room), name=f"removed-{room}")
            self._exits.add(task)
            task.add_done_callback(self._exits.discard)

    async def _exit_all(self, sessions: list[Session], room: str) -> None:
        for session in sessions:
            try:
                await self.exit(session, room)
            except Exception:
                log.exception("unsubscribing %s after a removal failed", room)

    def on_disconnect(self, name_key: str) -> None:
        for session in self.named(name_key):
            log.info("closing %s (%s): %s", session.ref, session.name, DISCONNECT_REASON)
            session.close(DISCONNECT_CODE, DISCONNECT_REASON)

    async def close(self) -> None:
        """Wait for the removed connections still leaving their rooms."""
        await stop_tasks(*self._exits)
