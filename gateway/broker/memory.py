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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.broker.base import (
    Banned,
    BrokerListener,
    NameTaken,
    Published,
    RecipientBusy,
    Replay,
)
from gateway.config import Settings
from gateway.events import Deleted, Direct, Message, PresenceChange, RoomEvent, tombstone
from gateway.names import name_key, name_skeleton
from gateway.offsets import parse_offset
from gateway.ratelimit import KeyedBuckets
from gateway.tasks import stop_tasks

log = logging.getLogger(__name__)


@dataclass
class _RoomLog:
    """One room's retained history; offsets are `<epoch>-<seq>`."""

    messages: deque[tuple[int, Message]]
    last_seq: int = 0


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
        self._epoch = secrets.token_hex(4)
        self._logs: dict[str, _RoomLog] = {}  # room -> its history
        self._subscribed: set[str] = set()  # rooms this node listens to
        self._presence: dict[str, dict[str, str]] = {}  # room -> name key -> display name
        self._names: dict[str, _NameOwners] = {}  # name skeleton -> owning connections
        self._bans: dict[tuple[str, str], tuple[int, str]] = {}  # (room, key) -> end ms, by
        # (room, sender, id) -> offset, expiry
        self._seen_ids: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._dm_budgets = KeyedBuckets(  # name key -> direct messages it may still receive
            settings.dm_recipient_rate, settings.dm_recipient_burst, clock
        )
        self._queue: asyncio.Queue[Callable[[BrokerListener], None]] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._listener: BrokerListener | None = None

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

    async def _dispatch(self) -> None:
        while True:
            call = await self._queue.get()
            if self._listener is None:
                continue
            try:
                call(self._listener)
            except Exception:
                log.exception("delivering an event failed; the broker goes on")

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

    def _parse(self, offset: str | None) -> int | None:
        """The sequence number of one of our offsets; None when foreign or malformed."""
        position = parse_offset(offset) if offset is not None else None
        if position is None or position[0] != self._epoch:
            return None
        return position[1]

    def _remember_id(self, key: tuple[str, str, str], offset: str) -> None:
        now = self._clock()
        while self._seen_ids:
            oldest = next(iter(self._seen_ids))
            if self._seen_ids[oldest][1] > now:
                break
            del self._seen_ids[oldest]
        self._seen_ids[key] = (offset, now + self._settings.idempotency_ttl)

    async def publish(
        self,
        room: str,
        sender: str,
        text: str,
        *,
        origin: str,
        message_id: str | None = None,
    ) -> Published:
        id_key = (room, name_key(sender), message_id) if message_id is not None else None
        if id_key is not None:
            seen = self._seen_ids.get(id_key)
            if seen is not None and seen[1] > self._clock():
                return Published(seen[0], duplicate=True)
        log_ = self._logs.get(room)
        if log_ is None:
            log_ = self._logs[room] = _RoomLog(deque(maxlen=self._settings.history_size))
        log_.last_seq += 1
        offset = f"{self._epoch}-{log_.last_seq}"
        message = Message(room, sender, text, offset, int(time.time() * 1000), origin)
        log_.messages.append((log_.last_seq, message))
        if id_key is not None:
            self._remember_id(id_key, offset)
        self._deliver_room(message)
        return Published(offset)

    async def publish_presence(self, event: PresenceChange) -> None:
        self._deliver_room(event)

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        log_ = self._logs.get(room)
        if log_ is None:
            return []
        if before is None:
            picked = [m for _, m in log_.messages]
        else:
            before_seq = self._parse(before)
            if before_seq is None:
                return []
            picked = [m for seq, m in log_.messages if seq < before_seq]
        return picked[-limit:]

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        await asyncio.sleep(0)  # a read yields, as a round trip to Redis does
        log_ = self._logs.get(room)
        newest = f"{self._epoch}-{log_.last_seq}" if log_ and log_.last_seq else None
        since_seq = self._parse(since)
        if since is None:
            return Replay(False, [], newest)
        last_seq = log_.last_seq if log_ else 0
        first_seq = log_.messages[0][0] if log_ and log_.messages else last_seq + 1
        if since_seq is None or since_seq > last_seq or since_seq < first_seq - 1:
            return Replay(False, await self.history(room, None, limit), newest)
        messages = [m for seq, m in log_.messages if seq > since_seq] if log_ else []
        return Replay(True, messages, newest)

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
            self._deliver_room(PresenceChange(room, "join", name))
        return added

    async def presence_remove(self, room: str, name: str, *, announce: bool = False) -> bool:
        present = self._presence.get(room, {})
        shown = present.pop(name_key(name), None)  # announced as the join was
        if not present:
            self._presence.pop(room, None)
        if shown is not None and announce:
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
        self._deliver(lambda listener: listener.on_removed(name, room, by, until))
        return until

    async def unban(self, room: str, name: str) -> None:
        self._bans.pop((room, name_key(name)), None)

    async def banned_until(self, room: str, name: str) -> int | None:
        ban = self._ban_of(room, name_key(name))
        return ban[0] if ban is not None else None

    async def delete(self, room: str, offset: str, by: str) -> bool:
        seq = self._parse(offset)
        log_ = self._logs.get(room)
        if seq is None or log_ is None:
            return False
        for index, (held_seq, message) in enumerate(log_.messages):
            if held_seq == seq:
                if message.deleted_by is not None:
                    return True  # deleted before: nothing more to tell
                log_.messages[index] = (seq, tombstone(message, by))
                self._deliver_room(Deleted(room, message.offset, by))
                return True
        return False

    async def disconnect(self, name: str) -> None:
        key = name_key(name)
        self._deliver(lambda listener: listener.on_disconnect(key))
