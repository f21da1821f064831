"""The checker of the events the campaign's application received (PROTOCOL section 11.2).

An event may arrive more than once (at least once: the same `id` again); the checker
reads each event's first arrival and counts the others as `repeated`, which is allowed.

- lost: a message acked to its sender (or stored by the campaign itself through the
  REST API) whose `message` event, with the same room, from, text and offset, never
  arrived.
- duplicated: two events (two ids) for one message: the application cannot tell them
  apart from two messages.
- reordered: in a room, an acked message's event arrived first after the event of a
  later offset of the same epoch (an epoch change makes offsets incomparable, as for
  the clients). Only acked messages count: a write a failover lost before its ack may
  have had its event posted, and its offset is then no message's.
- unknown: a `message` event for no stored message: its sender's message was acked at
  another offset, or none was acked and no client ever got it; or an id that came
  again with another content.
- presence: a client that subscribed has no `join` event for its name in its room, or
  for a client connected at the end, the room's last presence event for its name is
  not a join. (The campaign kicks, bans, deletes and sends direct messages to nobody:
  those events are not checked here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.chaos.history import Delivered, History, Violation, parse_offset

Stored = tuple[str, str, str, str]  # (room, offset, from, text): one stored message


@dataclass
class EventVerdict:
    """What the application received, and what was wrong with it."""

    delivered: int = 0  # distinct events (ids)
    repeated: int = 0  # arrivals of an id already received (allowed)
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unknown: int = 0
    presence: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No message event lost, duplicated, reordered or unknown. Presence events are
        counted and printed but do not fail the run: a Redis restart that makes a live
        node look dead can leave a client's last presence event a `leave` while it is
        in the room (a known gap, docs/operations.md)."""
        return not (self.lost or self.duplicated or self.reordered or self.unknown)

    def line(self) -> str:
        return (
            f"events: {self.delivered} delivered, {self.repeated} repeated, {self.lost} lost, "
            f"{self.duplicated} duplicated, {self.reordered} reordered, {self.unknown} "
            f"unknown, {self.presence} presence"
        )

    def add(self, kind: str, t: float, who: str, detail: str) -> None:
        """Count a violation of `kind` (one of the counters) and keep it."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.violations.append(Violation(f"event {kind}", t, who, detail))


def check_events(history: History, rooms: dict[str, str], connected: set[str]) -> EventVerdict:
    """The verdict on `history.deliveries`; `rooms` maps each client to its room,
    `connected` names the clients connected at the end."""
    verdict = EventVerdict()
    first = _first_arrivals(verdict, history.deliveries)
    acked: dict[tuple[str, str, str], tuple[str, float]] = {}  # (room, from, text) -> ...
    for record in history.records:
        if record.kind in ("acked", "posted") and record.offset is not None:
            sender = record.sender or record.client
            acked.setdefault((record.room, sender, record.msg_id), (record.offset, record.t))
    received = {
        (r.room, r.offset or "", r.sender, r.msg_id) for r in history.records if r.kind == "message"
    }
    messages = [d for d in first if d.event.get("type") == "message"]
    _check_messages(verdict, messages, acked, received)
    _check_presence(verdict, history, [d for d in first if d.event.get("type") == "presence"],
                    rooms, connected)  # fmt: skip
    return verdict


def _first_arrivals(verdict: EventVerdict, deliveries: list[Delivered]) -> list[Delivered]:
    """Each event's first arrival, in arrival order; repeats counted (and an id that
    came back with another content named)."""
    seen: dict[str, dict[str, Any]] = {}
    first = []
    for delivery in deliveries:
        event_id = str(delivery.event.get("id"))
        before = seen.get(event_id)
        if before is None:
            seen[event_id] = delivery.event
            first.append(delivery)
            continue
        verdict.repeated += 1
        if before != delivery.event:
            detail = f"event {event_id} came again as {delivery.event}, first {before}"
            verdict.add("unknown", delivery.t, "app", detail)
    verdict.delivered = len(first)
    return first


def _stored(event: dict[str, Any]) -> Stored:
    return (str(event.get("room")), str(event.get("offset")), str(event.get("from")),
            str(event.get("text")))  # fmt: skip


def _check_messages(
    verdict: EventVerdict,
    messages: list[Delivered],
    acked: dict[tuple[str, str, str], tuple[str, float]],
    received: set[Stored],
) -> None:
    by_message: dict[Stored, Delivered] = {}
    newest: dict[tuple[str, str], tuple[int, str]] = {}  # (room, epoch) -> (seq, offset)
    for delivery in messages:
        stored = _stored(delivery.event)
        room, offset, sender, text = stored
        name = f"{sender}#{text} in {room} at {offset} (id {delivery.event.get('id')})"
        if stored in by_message:
            verdict.add("duplicated", delivery.t, sender, f"a second event for {name}, the "
                        f"first id {by_message[stored].event.get('id')}")  # fmt: skip
            continue
        by_message[stored] = delivery
        known = acked.get((room, sender, text))
        if known is None:
            if stored not in received:
                verdict.add("unknown", delivery.t, sender,
                            f"an event for {name}: never acked, no client got it")  # fmt: skip
            continue
        if known[0] != offset:
            verdict.add("unknown", delivery.t, sender,
                        f"an event for {name}, acked at {known[0]}: stored twice")  # fmt: skip
            continue
        parsed = parse_offset(offset)
        if parsed is None:
            continue
        epoch, seq = parsed
        before = newest.get((room, epoch))
        if before is not None and seq <= before[0]:
            verdict.add("reordered", delivery.t, sender,
                        f"the event of {name} arrived after {before[1]}'s")  # fmt: skip
        else:
            newest[(room, epoch)] = (seq, offset)
    for (room, sender, text), (offset, t) in acked.items():
        if (room, offset, sender, text) not in by_message:
            verdict.add("lost", t, sender, f"{sender}#{text} in {room} at {offset} "
                        f"(acked t={t:.1f}s): its event never arrived")  # fmt: skip


def _check_presence(
    verdict: EventVerdict,
    history: History,
    presence: list[Delivered],
    rooms: dict[str, str],
    connected: set[str],
) -> None:
    joined: set[tuple[str, str]] = set()
    last: dict[tuple[str, str], Delivered] = {}
    for delivery in presence:
        key = (str(delivery.event.get("room")), str(delivery.event.get("name")))
        if delivery.event.get("event") == "join":
            joined.add(key)
        last[key] = delivery
    subscribed: dict[str, float] = {}
    for record in history.records:
        if record.kind == "subscribed":
            subscribed.setdefault(record.client, record.t)
    for client, t in sorted(subscribed.items()):
        room = rooms.get(client, "")
        if (room, client) not in joined:
            verdict.add("presence", t, client,
                        f"{client} joined {room} (t={t:.1f}s): no join event")  # fmt: skip
    end = history.now()
    for client in sorted(connected):
        final = last.get((rooms.get(client, ""), client))
        if final is not None and final.event.get("event") != "join":
            verdict.add("presence", end, client,
                        f"{client} is in {rooms.get(client)} at the end, but its last presence "
                        f"event is {final.event} (t={final.t:.1f}s)")  # fmt: skip
