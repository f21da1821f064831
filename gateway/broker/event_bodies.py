"""The JSON objects of the events told to the application (PROTOCOL section 11.2),
built alike by every broker: `id` and `type`, `ts` (epoch ms), then the type's fields.
A message's `offset` is the broker's to add where it stores the event."""

from __future__ import annotations

import time
from typing import Any

from gateway.events import Direct, Message


def now_ms() -> int:
    """The time of an event that has none of its own, in epoch milliseconds."""
    return int(time.time() * 1000)


def message_event(event_id: str, message: Message) -> dict[str, Any]:
    """A room message's event (its offset included when known)."""
    body: dict[str, Any] = {"id": event_id, "type": "message", "ts": message.ts}
    body.update(room=message.room, **{"from": message.sender}, text=message.text)
    if message.offset:
        body["offset"] = message.offset
    return body


def deleted_event(event_id: str, room: str, offset: str, by: str) -> dict[str, Any]:
    """A moderator deleted the message at `offset`."""
    return {"id": event_id, "type": "deleted", "ts": now_ms(), "room": room,
            "offset": offset, "by": by}  # fmt: skip


def presence_event(event_id: str, room: str, event: str, name: str) -> dict[str, Any]:
    """A name's first connection joined `room` (`join`), or its last one left (`leave`)."""
    return {"id": event_id, "type": "presence", "ts": now_ms(), "room": room,
            "event": event, "name": name}  # fmt: skip


def dm_event(event_id: str, direct: Direct) -> dict[str, Any]:
    """A direct message that reached its recipient."""
    return {"id": event_id, "type": "dm", "ts": direct.ts, "from": direct.sender,
            "to": direct.to, "text": direct.text}  # fmt: skip


def removed_event(
    event_id: str, room: str, name: str, by: str, until: int | None
) -> dict[str, Any]:
    """A moderator took `name` out of `room` (a kick; a ban until `until`, epoch ms)."""
    body: dict[str, Any] = {"id": event_id, "type": "removed", "ts": now_ms(), "room": room,
                            "name": name, "by": by}  # fmt: skip
    if until is not None:
        body["until"] = until
    return body
