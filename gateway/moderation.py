"""Moderation (PROTOCOL.md section 10): kicks, bans, deletes and disconnects.

A room's moderators act in-band (`kick`, `delete`), operators over REST with the API
key; both come here, where each action goes to the broker (so it holds on every node,
and across restarts on Redis), is written as one audit line (who, what, where) and is
counted. What reaches this node's connections from the broker comes here too: a removal
takes them out of the room at once (no grace period) and tells them why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Literal

from gateway.errors import BrokerUnavailable
from gateway.events import Removed
from gateway.names import name_key
from gateway.session import Session
from gateway.tasks import stop_tasks

if TYPE_CHECKING:
    from gateway.node import Node

audit = logging.getLogger("gateway.audit")
log = logging.getLogger(__name__)

OPERATOR = "operator"  # who an action over REST is by, in events and the audit log
DISCONNECT_CODE = 4001
DISCONNECT_REASON = "disconnected by an operator"

Actor = Literal["moderator", "operator"]


class Moderation:
    """A node's moderation: actions out to the broker, removals in from it."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._exits: set[asyncio.Task[None]] = set()  # removed connections leaving rooms

    async def _record(self, actor: Actor, by: str, action: str, **where: object) -> None:
        """Count the action and write its audit line: who (`by`, and the operator's
        address), what, where. Values as repr: a name cannot forge a line. The broker
        keeps it among the recent actions for the console (GET /api/audit); the action
        stands if that fails."""
        self._node.metrics.moderation_actions.labels(action=action, actor=actor).inc()
        details = " ".join(f"{key}={value!r}" for key, value in where.items() if value is not None)
        audit.info("audit %s %s=%r %s", action, actor, by, details)
        entry = {"ts": int(time.time() * 1000), "node": self._node.settings.node_id,
                 "action": action, "actor": actor, "by": by}  # fmt: skip
        entry.update((key, value) for key, value in where.items() if value is not None)
        try:
            await self._node.broker.note_audit(entry)
        except BrokerUnavailable as exc:
            log.warning("the %s is not kept for the console: %s", action, exc)

    async def kick(
        self, room: str, name: str, seconds: int, by: str, actor: Actor, peer: str | None = None
    ) -> int | None:
        """Take `name` out of `room` everywhere, banned for `seconds` if more than 0;
        when the ban ends (epoch ms)."""
        until = await self._node.broker.kick(room, name, by, seconds)
        self._node.room_directory.invalidate()  # the room may have lost a member
        action = "ban" if seconds else "kick"
        await self._record(actor, by, action, room=room, name=name, seconds=seconds, peer=peer)
        return until

    async def unban(self, room: str, name: str, peer: str | None) -> None:
        """Lift `name`'s ban from `room` (an operator's action)."""
        await self._node.broker.unban(room, name)
        await self._record("operator", OPERATOR, "unban", room=room, name=name, peer=peer)

    async def delete(
        self, room: str, offset: str, by: str, actor: Actor, peer: str | None = None
    ) -> bool:
        """Delete the message at `offset`; False when `room` has none there."""
        found = await self._node.broker.delete(room, offset, by)
        if found:
            await self._record(actor, by, "delete", room=room, offset=offset, peer=peer)
        return found

    async def disconnect(self, name: str, peer: str | None) -> None:
        """Close every connection of `name`, on every node, with 4001 (an operator's)."""
        await self._node.broker.disconnect(name)
        await self._record("operator", OPERATOR, "disconnect", name=name, peer=peer)

    # from the broker -----------------------------------------------------------

    def removed(self, name: str, room: str, by: str, until: int | None) -> None:
        """Every connection of `name` here leaves `room` now and gets `removed`."""
        node = self._node
        sessions = [s for s in node.hub.named(name_key(name)) if room in s.rooms]
        node.presence.expel(room, name)  # the name left here a moment ago: no grace
        settled = []  # those in the room; a join under way undoes itself (enter_room)
        for session in sessions:
            if not session.joining(room):
                settled.append(session)
                node.presence.exit(room, session.name, at_once=True)
            session.abandon_join(room)  # nothing more of the room reaches it
            session.send(Removed(room, by, until))
        if settled:
            task = asyncio.create_task(self._exit(settled, room), name=f"removed-{room}")
            self._exits.add(task)
            task.add_done_callback(self._exits.discard)

    async def _exit(self, sessions: list[Session], room: str) -> None:
        for session in sessions:
            try:
                await self._node.hub.exit(session, room)
            except Exception:
                log.exception("unsubscribing %s after a removal failed", room)

    def disconnected(self, key: str) -> None:
        """Close every connection of the name key `key` here with 4001."""
        for session in self._node.hub.named(key):
            log.info("closing %s (%s): %s", session.ref, session.name, DISCONNECT_REASON)
            session.close(DISCONNECT_CODE, DISCONNECT_REASON)

    async def close(self) -> None:
        """Wait for the removals still leaving their rooms."""
        await stop_tasks(*self._exits)
