"""The in-process broker: one node, no Redis. The embedded default of `make run`.

It keeps the shape of the Redis broker: publishing stores and queues, and one
dispatcher task delivers to the node, so a client's ack may come before its message
and the hub's resume logic meets the same races it meets with Redis.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.broker import event_bodies as told
from gateway.broker.base import (
    AuditEntry,
    Banned,
    BrokerListener,
    NameTaken,
    NodeStatus,
    Published,
    RecipientBusy,
    Replay,
    UserPlaces,
)
from gateway.broker.memory_console import LocalConsole
from gateway.broker.memory_events import MemoryEventLog, dm_stream, room_stream
from gateway.broker.memory_history import LocalHistory
from gateway.config import Settings
from gateway.events import Deleted, Direct, Message, PresenceChange, RoomEvent
from gateway.names import name_key, name_skeleton
from gateway.ratelimit import KeyedBuckets
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)


@dataclass
class _NameOwners:
    key: str  # the name key: another key of the same skeleton is a look-alike
    display: str
    connections: set[str]
    session: str
    shared: bool


def _direct_to(event: Direct, key: str) -> Callable[[BrokerListener], None]:
    return lambda listener: listener.on_direct(event, key)


def _kick(connection: str) -> Callable[[BrokerListener], None]:
    return lambda listener: listener.on_kick(connection)


def _matches(given: str | None, session: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    return given is not None and hmac.compare_digest(given.encode(), session.encode())


class MemoryBroker:
    """All state in this process; history is lost when it stops (a new epoch)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._history = LocalHistory(settings.history_size, settings.idempotency_ttl, clock)
        self._subscribed: set[str] = set()  # rooms this node listens to
        self._presence: dict[str, dict[str, str]] = {}  # room -> name key -> display name
        self._names: dict[str, _NameOwners] = {}  # name skeleton -> owning connections
        self._bans: dict[tuple[str, str], tuple[int, str]] = {}  # (room, key) -> end ms, by
        self._dm_budgets = KeyedBuckets(  # name key -> direct messages it may still receive
            settings.dm_recipient_rate, settings.dm_recipient_burst, clock
        )
        self._queue: asyncio.Queue[Callable[[BrokerListener], None]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._listener: BrokerListener | None = None
        # With --events-url: every event stored in the same step as what it tells of.
        self.events = MemoryEventLog(settings.events_backlog) if settings.events_url else None
        self._console = LocalConsole()

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

    # history -----------------------------------------------------------------

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

    async def rooms(self) -> list[tuple[str, int]]:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        return [(room, len(self._presence[room])) for room in sorted(self._presence)]

    async def claim_name(
        self, name: str, connection: str, session: str | None, *, shared: bool = False
    ) -> str:
        key, shape = name_key(name), name_skeleton(name)
        owners = self._names.get(shape)
        if owners is None:
            owners = _NameOwners(key, name, {connection}, secrets.token_urlsafe(18), shared)
            self._names[shape] = owners
            return owners.session
        if owners.key != key:
            raise NameTaken(name, owners.display)  # a look-alike is online
        if shared and owners.shared:
            owners.connections.add(connection)
            return owners.session
        if shared or owners.shared or not _matches(session, owners.session):
            raise NameTaken(name)
        displaced, owners.connections = owners.connections, {connection}
        for old in displaced:
            self._deliver(_kick(old))
        return owners.session

    async def release_name(self, name: str, connection: str) -> None:
        shape = name_skeleton(name)
        owners = self._names.get(shape)
        if owners is not None and owners.key == name_key(name):
            owners.connections.discard(connection)
            if not owners.connections:
                del self._names[shape]

    async def send_direct(self, event: Direct) -> bool:
        to_key, sender_key = name_key(event.to), name_key(event.sender)
        owners = self._names.get(name_skeleton(event.to))
        if owners is None or owners.key != to_key:  # offline, or a look-alike is online
            return False
        budget = self._dm_budgets.bucket(to_key)
        if not budget.take():
            raise RecipientBusy(event.to, budget.wait())
        self._tell(dm_stream(to_key), told.dm_event, event)
        for key in {to_key, sender_key}:
            self._deliver(_direct_to(event, key))
        return True

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
        key, owners = name_key(name), self._names.get(name_skeleton(name))
        if owners is None or owners.key != key:
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
