"""Moderation (docs/protocol.md, "Moderators"): kicks, bans, deletes and disconnects.

A room's moderators act in-band (`kick`, `delete`), operators over REST with the API
key; both come here, where each action goes to the broker (so it holds on every node,
and across restarts on Redis), is written as one audit line (who, what, where) and is
counted. What comes back from the broker to this node's connections (a removal, a
disconnect) is the hub's to carry out (gateway/hub.py).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from gateway.broker.base import Broker
from gateway.errors import BrokerUnavailable
from gateway.metrics import Metrics
from gateway.room_directory import RoomDirectory

audit = logging.getLogger("gateway.audit")
log = logging.getLogger(__name__)

OPERATOR = "operator"  # who an action over REST is by, in events and the audit log

Actor = Literal["moderator", "operator"]


class Moderation:
    """A node's moderation actions: to the broker, counted, in the audit log."""

    def __init__(
        self, broker: Broker, rooms: RoomDirectory, metrics: Metrics, node_id: str
    ) -> None:
        self._broker = broker
        self._rooms = rooms  # its listing is out of date after a kick
        self._metrics = metrics
        self._node_id = node_id  # in each audit entry kept for the console

    async def _record(self, actor: Actor, by: str, action: str, **where: object) -> None:
        """Count the action and write its audit line: who (`by`, and the operator's
        address), what, where. Values as repr: a name cannot forge a line. The broker
        keeps it among the recent actions for the console (GET /api/audit); the action
        stands if that fails."""
        self._metrics.moderation_actions.labels(action=action, actor=actor).inc()
        details = " ".join(f"{key}={value!r}" for key, value in where.items() if value is not None)
        audit.info("audit %s %s=%r %s", action, actor, by, details)
        entry = {"ts": int(time.time() * 1000), "node": self._node_id,
                 "action": action, "actor": actor, "by": by}  # fmt: skip
        entry.update((key, value) for key, value in where.items() if value is not None)
        try:
            await self._broker.note_audit(entry)
        except BrokerUnavailable as exc:
            log.warning("the %s is not kept for the console: %s", action, exc)

    async def kick(
        self, room: str, name: str, seconds: int, by: str, actor: Actor, peer: str | None = None
    ) -> int | None:
        """Take `name` out of `room` everywhere, banned for `seconds` if more than 0;
        when the ban ends (epoch ms)."""
        until = await self._broker.kick(room, name, by, seconds)
        self._rooms.invalidate()  # the room may have lost a member
        action = "ban" if seconds else "kick"
        await self._record(actor, by, action, room=room, name=name, seconds=seconds, peer=peer)
        return until

    async def unban(self, room: str, name: str, peer: str | None) -> None:
        """Lift `name`'s ban from `room` (an operator's action)."""
        await self._broker.unban(room, name)
        await self._record("operator", OPERATOR, "unban", room=room, name=name, peer=peer)

    async def delete(
        self, room: str, offset: str, by: str, actor: Actor, peer: str | None = None
    ) -> bool:
        """Delete the message at `offset`; False when `room` has none there."""
        found = await self._broker.delete(room, offset, by)
        if found:
            await self._record(actor, by, "delete", room=room, offset=offset, peer=peer)
        return found

    async def disconnect(self, name: str, peer: str | None) -> None:
        """Close every connection of `name`, on every node, with 4001 (an operator's)."""
        await self._broker.disconnect(name)
        await self._record("operator", OPERATOR, "disconnect", name=name, peer=peer)
