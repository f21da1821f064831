"""The Broker protocol: the only way the server reaches storage and the other nodes.

A broker stores room history, assigns offsets, fans events out to every node that
subscribed to a room, keeps presence and name ownership, and routes direct messages.
It knows nothing of WebSockets: it talks to its node through a `BrokerListener`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.broker.event_log import EventLog
from gateway.events import Direct, Message, PresenceChange, RoomEvent


class BrokerListener(Protocol):
    """What a node does with what the broker delivers (the hub implements it)."""

    def on_room_event(self, event: RoomEvent) -> None:
        """A message or presence change in a room this node subscribed to, in offset order."""

    def on_direct(self, event: Direct, name_key: str) -> None:
        """A direct message for the connections of `name_key` (its recipient or sender)."""

    def on_kick(self, connection: str) -> None:
        """Another connection took over `connection`'s name: close it with 4000."""

    def on_removed(self, name: str, room: str, by: str, until: int | None) -> None:
        """A moderator took `name` out of `room` (banned until `until`, epoch ms): every
        connection of it here leaves the room and is told so."""

    def on_disconnect(self, name_key: str) -> None:
        """An operator disconnected `name_key`: close its connections here with 4001."""


class Banned(Exception):
    """The name is banned from the room until `until` (epoch milliseconds)."""

    @classmethod
    def parse(cls, room: str, stored: bytes) -> Banned:
        """The ban as stored on Redis: `UNTIL BY`."""
        until, _, by = stored.decode().partition(" ")
        return cls(room, int(until), by)

    def __init__(self, room: str, until: int, by: str = "") -> None:
        super().__init__(f"banned from {room} until {until}")
        self.room = room
        self.until = until
        self.by = by  # who banned it, where known


class RecipientBusy(Exception):
    """A direct message refused: its recipient has had its budget of direct messages
    (from everyone together); one fits again in `retry_after` seconds."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"{name} gets too many direct messages")
        self.name = name
        self.retry_after = retry_after


class NameTaken(Exception):
    """The name belongs to another connection and no matching session was shown, or a
    name that looks the same (the same skeleton) is online: `holder` is the name held."""

    def __init__(self, name: str, holder: str | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.holder = name if holder is None else holder


@dataclass(frozen=True, slots=True)
class Published:
    """Where a message landed; `duplicate` when its id was seen before."""

    offset: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Replay:
    """A room's messages after an offset, and the room's newest offset."""

    recovered: bool
    messages: list[Message]
    offset: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A new connection's name claimed, and its first room entered in the same step
    where the broker could (`claim_entering`)."""

    secret: str  # the name's session secret
    entered: bool = False  # False: only the name was claimed (enter the room next)
    added: bool = False  # the name was new in the room everywhere: its join was announced
    replay: Replay = Replay(False, [], None)
    members: list[str] = field(default_factory=list)
    banned: Banned | None = None  # the entry refused: the name is claimed all the same


@dataclass(frozen=True, slots=True)
class UserPlaces:
    """Where a name is online: its connections (ref, node) and the rooms it is in."""

    name: str  # as shown (the display name of whoever holds it), or as asked when offline
    connections: list[tuple[str, str]]
    rooms: list[str]


NodeStatus = dict[str, Any]  # one node's status, a JSON object (gateway/node_status.py)
AuditEntry = dict[str, Any]  # one moderation action, a JSON object (gateway/moderation.py)
AUDIT_KEPT = 200  # the recent moderation actions a broker keeps for the console


class Broker(Protocol):
    """Storage and cross-node delivery. Every method may raise BrokerUnavailable."""

    @property
    def events(self) -> EventLog | None:
        """With --events-url, the events kept for the application (PROTOCOL section
        11.2), each stored in the same atomic step as what it tells of; None without
        (then nothing is stored)."""

    async def start(self, listener: BrokerListener) -> None:
        """Connect and start delivering to `listener`."""

    async def close(self) -> None:
        """Stop delivering; release every connection and task."""

    def is_ready(self) -> bool:
        """True while the backend is reachable and deliveries arrive."""

    def unready_reason(self) -> str:
        """While not ready, why ("Redis unreachable"); "" while ready."""

    def degraded(self) -> str | None:
        """While ready, what does not work now (a Redis Cluster shard down), or None."""

    @property
    def probe_rtt(self) -> float | None:
        """Seconds the last readiness probe took to come back; None without probes."""

    def shards(self) -> dict[str, bool]:
        """Each Redis this node uses ("host:port": one, or a Redis Cluster's shard
        primaries) and whether it works from here; empty without Redis."""

    @property
    def nodes_reaped(self) -> int:
        """Dead nodes whose entries this node removed since it started (their heartbeat
        expired); 0 without Redis."""

    async def hand_over(self, grace: float) -> None:
        """This node stops on purpose, after its connections closed: keep its presence
        for `grace` seconds, then let the other nodes remove what nobody re-added.

        A user who reconnects to another node within `grace` is then neither left nor
        joined. Call it before `close`; it never raises.
        """

    async def live_nodes(self) -> int:
        """How many nodes share the chat now, this one included (they share the events'
        partitions, gateway/feed.py)."""

    async def subscribe(self, room: str) -> None:
        """Start delivering `room`'s events to this node; returns once live."""

    async def unsubscribe(self, room: str) -> None:
        """Stop delivering `room`'s events to this node."""

    async def publish(
        self,
        room: str,
        sender: str,
        text: str,
        *,
        origin: str,
        message_id: str | None = None,
    ) -> Published:
        """Store a message, assign its offset and deliver it, in one atomic step.

        With `message_id`, a repeat from the same sender returns the first offset and
        delivers nothing.
        """

    async def publish_presence(self, event: PresenceChange) -> None:
        """Deliver a presence change to the room's subscribers (not stored)."""

    async def history(self, room: str, before: str | None, limit: int) -> list[Message]:
        """The newest `limit` messages before `before` (all when None), oldest first."""

    async def replay(self, room: str, since: str | None, limit: int) -> Replay:
        """Messages after `since`; `recovered` false (and the newest `limit`) if unknown."""

    async def presence_add(self, room: str, name: str, *, announce: bool = False) -> bool:
        """Mark `name` present in `room` for this node; True when it was absent everywhere.

        With `announce`, that `join` is delivered to the room's subscribers in the same
        step (as `publish_presence` would). Raises Banned, storing nothing, while the
        name is banned from the room."""

    async def presence_remove(self, room: str, name: str, *, announce: bool = False) -> bool:
        """Drop this node's mark; True when `name` is now absent everywhere (with
        `announce`, that `leave` is delivered in the same step)."""

    async def members(self, room: str) -> list[str]:
        """The names present in `room`, sorted."""

    async def entering(self, room: str, since: str | None, limit: int) -> tuple[Replay, list[str]]:
        """What a connection entering `room` is sent: `replay(room, since, limit)` and
        `members(room)`, read together (Redis: one round trip when `since` is None)."""

    async def presence_add_entering(
        self, room: str, name: str, since: str | None, limit: int
    ) -> tuple[bool, Replay, list[str]]:
        """`presence_add(room, name, announce=True)`, then what `entering(room, since,
        limit)` reads: the members include `name`. Redis: one round trip when `since` is
        None. Raises Banned as `presence_add` does."""

    async def rooms(self) -> list[tuple[str, int]]:
        """Rooms with anyone present, with their member counts, sorted by name."""

    async def claim_name(
        self, name: str, connection: str, session: str | None, *, shared: bool = False
    ) -> str:
        """Make `connection` an owner of `name`; returns the name's session secret.

        A name that looks like one online (the same `name_skeleton`, another name key)
        is refused: NameTaken with the holder's name, whatever session is shown.
        Exclusive (the default, no auth): one connection owns the name. Raises NameTaken
        when another connection owns it and `session` does not match; with a matching
        session the old owner is kicked (`BrokerListener.on_kick`).

        `shared` (auth: the token proved the name): `connection` joins the name's other
        connections, on any node; NameTaken only if an exclusive owner holds it.
        """

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
        """`claim_name` and, in the same step where the broker can (Redis: one round
        trip, on one Redis and with `since` None), what `presence_add_entering(room,
        name, since, limit)` does: a new connection's first steps. NameTaken as
        `claim_name`, nothing stored. Entry.entered False: only the name was claimed,
        nothing more was done. A ban from the room comes in the answer (`banned`), the
        name claimed all the same. After a BrokerUnavailable the name may be held."""

    async def release_name(self, name: str, connection: str) -> None:
        """Free `name` from `connection`; the name is free once no connection owns it."""

    async def send_direct(self, event: Direct) -> bool:
        """Deliver a direct message; False when its recipient is not online. Raises
        RecipientBusy, delivering nothing, when the recipient is over its budget of
        direct messages (`--dm-recipient-rate`, counted for every sender on every node)."""

    # moderation (PROTOCOL.md section 10) ------------------------------------------

    async def kick(self, room: str, name: str, by: str, seconds: int) -> int | None:
        """Take `name` out of `room` on every node (`BrokerListener.on_removed`), banning
        it for `seconds` first when more than 0; returns when the ban ends (epoch ms)."""

    async def unban(self, room: str, name: str) -> None:
        """Lift `name`'s ban from `room`, if it has one."""

    async def banned_until(self, room: str, name: str) -> int | None:
        """When `name`'s ban from `room` ends (epoch ms), or None when it has none."""

    async def delete(self, room: str, offset: str, by: str) -> bool:
        """Make the message at `offset` a tombstone (its text gone for good; history and
        replay give `Message.deleted_by`) and deliver `Deleted` to the room; False when
        the room holds no message there (a repeat of a delete is True, not delivered)."""

    async def disconnect(self, name: str) -> None:
        """Close every connection of `name`, on every node (`on_disconnect`)."""

    # the operator's console (docs/operations.md) ---------------------------------

    def report(self, status: Callable[[], NodeStatus]) -> None:
        """Have this node's heartbeat carry `status()`, for `nodes` (call before start)."""

    async def nodes(self) -> list[NodeStatus]:
        """The last status of every live node of the cluster, sorted by node id."""

    async def user(self, name: str) -> UserPlaces:
        """Where `name` is online now, on every node (offline: no connection, no room)."""

    async def room_counts(self, rooms: list[str]) -> list[int]:
        """How many messages each of `rooms` has had (its newest offset's sequence
        number; 0 for none): sampled over time, how busy it is."""

    async def note_audit(self, entry: AuditEntry) -> None:
        """Keep one moderation action among the newest AUDIT_KEPT, for `audit`."""

    async def audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` moderation actions kept (of every node), newest first."""
