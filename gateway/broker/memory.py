"""The in-process broker: one node, no Redis. The embedded default of `make run`.

It keeps the shape of the Redis broker: publishing stores and queues, and one
dispatcher task delivers to the node, so a client's ack may come before its message
and the hub's resume logic meets the same races it meets with Redis.

The broker builds its parts and hands each what it uses: each room's history is
`memory_history`, names and direct messages `memory_names`, the events kept for the
application `memory_events`, the console's node status and audit `memory_console`;
presence, bans and the delivery queue are its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.broker import event_bodies as told
from gateway.broker.base import (
    AuditEntry,
    Banned,
    BrokerListener,
    Entry,
    NodeStatus,
    Published,
    Replay,
    UserPlaces,
)
from gateway.broker.memory_console import LocalConsole
from gateway.broker.memory_events import MemoryEventLog, room_stream
from gateway.broker.memory_history import LocalHistory
from gateway.broker.memory_names import LocalNames
from gateway.config import Settings
from gateway.events import Deleted, Direct, Message, PresenceChange, RoomEvent
from gateway.names import name_key
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)


class MemoryBroker:
    """All state in this process; history is lost when it stops (a new epoch)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._history = LocalHistory(settings.history_size, settings.idempotency_ttl, clock)
        self._subscribed: set[str] = set()  # rooms this node listens to
        self._presence: dict[str, dict[str, str]] = {}  # room -> name key -> display name
        self._bans: dict[tuple[str, str], tuple[int, str]] = {}  # (room, key) -> end ms, by
        self._queue: asyncio.Queue[Callable[[BrokerListener], None]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._listener: BrokerListener | None = None
        # With --events-url: every event stored in the same step as what it tells of.
        self.events = MemoryEventLog(settings.events_backlog) if settings.events_url else None
        self._console = LocalConsole()
        self._names = LocalNames(settings, clock, self._deliver, self._tell)

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._dispatcher = asyncio.create_task(self._dispatch(), name="memory-broker-dispatch")

    async def close(self) -> None:
        await stop_tasks(self._dispatcher)
        self._dispatcher = None

    @property
    def probe_rtt(self) -> float | None:
        return None  # nothing to probe: delivery is in-process

    def is_ready(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    def unready_reason(self) -> str:
        return "" if self.is_ready() else "the in-process broker is stopped"

    def degraded(self) -> str | None:
        return None  # one process: it works or it does not

    def shards(self) -> dict[str, bool]:
        return {}  # no Redis

    @property
    def nodes_reaped(self) -> int:
        return 0  # no other node to outlive

    async def hand_over(self, grace: float) -> None:
        """Nothing to hand over: presence ends with the process, as does everything else."""

    async def live_nodes(self) -> int:
        """One: this process is the whole chat."""
        return 1

    async def _dispatch(self) -> None:
        while True:
            call = await self._queue.get()
            if self._listener is None:
                continue
            try:
                call(self._listener)
            except Exception:
                log.exception("delivering an event failed; the broker goes on")

    def _tell(self, stream: str, build: Callable[..., dict[str, Any]], *fields: Any) -> None:
        """With events on, store `build(id, *fields)` in `stream` (in this same step)."""
        if self.events is not None:
            self.events.record(stream, build, *fields)

    def _deliver(self, call: Callable[[BrokerListener], None]) -> None:
        self._queue.put_nowait(call)

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def _deliver_room(self, event: RoomEvent) -> None:
        if event.room in self._subscribed:
            self._deliver(lambda listener: listener.on_room_event(event))

    # publishing and history ------------------------------------------------

    async def publish(
        self,
        room: str,
        sender: str,
        text: str,
        *,
        origin: str,
        message_id: str | None = None,
    ) -> Published:
        published, message = self._history.append(room, sender, text, origin, message_id)
        if message is not None:
            self._tell(room_stream(room), told.message_event, message)
            self._deliver_room(message)
        return published

    async def publish_presence(self, event: PresenceChange) -> None:
        fields = (event.room, event.event, event.name)
        self._tell(room_stream(event.room), told.presence_event, *fields)
        self._deliver_room(event)

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        return await self._history.history(room, before, limit)

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        return await self._history.replay(room, since, limit)

    # presence and names ------------------------------------------------------

    async def presence_add(self, room: str, name: str, *, announce: bool = False) -> bool:
        key = name_key(name)
        ban = self._ban_of(room, key)
        if ban is not None:
            raise Banned(room, *ban)
        present = self._presence.setdefault(room, {})
        added = key not in present
        present[key] = name
        if added and announce:
            self._tell(room_stream(room), told.presence_event, room, "join", name)
            self._deliver_room(PresenceChange(room, "join", name))
        return added

    async def presence_remove(self, room: str, name: str, *, announce: bool = False) -> bool:
        present = self._presence.get(room, {})
        shown = present.pop(name_key(name), None)  # announced as the join was
        if not present:
            self._presence.pop(room, None)
        if shown is not None and announce:
            self._tell(room_stream(room), told.presence_event, room, "leave", shown)
            self._deliver_room(PresenceChange(room, "leave", shown))
        return shown is not None

    async def members(self, room: str) -> list[str]:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        present = self._presence.get(room, {})
        return [present[key] for key in sorted(present)]

    async def entering(self, room: str, since: str | None, limit: int) -> tuple[Replay, list[str]]:
        return await self.replay(room, since, limit), await self.members(room)

    async def presence_add_entering(
        self, room: str, name: str, since: str | None, limit: int
    ) -> tuple[bool, Replay, list[str]]:
        added = await self.presence_add(room, name, announce=True)
        replay, members = await self.entering(room, since, limit)
        return added, replay, members

    async def rooms(self) -> list[tuple[str, int]]:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        return [(room, len(self._presence[room])) for room in sorted(self._presence)]

    async def claim_name(
        self, name: str, connection: str, session: str | None, *, shared: bool = False
    ) -> str:
        return self._names.claim(name, connection, session, shared=shared)

    async def claim_entering(
        self,
        name: str,
        connection: str,
        session: str | None,
        room: str,
        since: str | None,
        limit: int,
        *,
        shared: bool = False,
    ) -> Entry:
        return Entry(await self.claim_name(name, connection, session, shared=shared))

    async def release_name(self, name: str, connection: str) -> None:
        self._names.release(name, connection)

    async def send_direct(self, event: Direct) -> bool:
        return self._names.send_direct(event)

    # moderation --------------------------------------------------------------

    def _ban_of(self, room: str, key: str) -> tuple[int, str] | None:
        ban = self._bans.get((room, key))
        if ban is not None and ban[0] <= time.time() * 1000:
            del self._bans[(room, key)]
            return None
        return ban

    async def kick(self, room: str, name: str, by: str, seconds: int) -> int | None:
        key = name_key(name)
        until = None
        if seconds > 0:
            until = int(time.time() * 1000) + seconds * 1000
            self._bans[(room, key)] = (until, by)
        await self.presence_remove(room, name, announce=True)  # one leave, at once
        self._tell(room_stream(room), told.removed_event, room, name, by, until)
        self._deliver(lambda listener: listener.on_removed(name, room, by, until))
        return until

    async def unban(self, room: str, name: str) -> None:
        self._bans.pop((room, name_key(name)), None)

    async def banned_until(self, room: str, name: str) -> int | None:
        ban = self._ban_of(room, name_key(name))
        return ban[0] if ban is not None else None

    async def delete(self, room: str, offset: str, by: str) -> bool:
        held, deleted = self._history.delete(room, offset, by)
        if deleted is not None:
            self._tell(room_stream(room), told.deleted_event, room, deleted.offset, by)
            self._deliver_room(Deleted(room, deleted.offset, by))
        return held

    async def disconnect(self, name: str) -> None:
        key = name_key(name)
        self._deliver(lambda listener: listener.on_disconnect(key))

    # the operator's console ----------------------------------------------------

    def report(self, status: Callable[[], NodeStatus]) -> None:
        self._console.status = status

    async def nodes(self) -> list[NodeStatus]:
        return self._console.nodes()

    async def user(self, name: str) -> UserPlaces:
        key, owners = name_key(name), self._names.owners(name)
        if owners is None:
            return UserPlaces(name, [], [])
        node = self._settings.node_id
        rooms = sorted(room for room, present in self._presence.items() if key in present)
        return UserPlaces(owners.display, [(c, node) for c in sorted(owners.connections)], rooms)

    async def room_counts(self, rooms: list[str]) -> list[int]:
        return self._history.counts(rooms)

    async def note_audit(self, entry: AuditEntry) -> None:
        self._console.note(entry)

    async def audit(self, limit: int) -> list[AuditEntry]:
        return self._console.audit(limit)
