"""Entering and leaving rooms: hub, presence and the broker's replay, in the right order.

Entering holds the room's live events on the session while the replay is read, so
the client gets `subscribed`, then the replay, then live events: no gap, no duplicate.
"""

from __future__ import annotations

import logging

from gateway.broker.base import Banned
from gateway.errors import BrokerUnavailable
from gateway.events import Subscribed, Unsubscribed
from gateway.node import Node
from gateway.session import Session

log = logging.getLogger(__name__)


async def enter_room(
    node: Node, session: Session, room: str, since: str | None, ref: str | None = None
) -> bool:
    """Put `session` in `room` and send `subscribed` (with the replay after `since`).
    Raises Banned while the name is banned from the room; False (the session got
    `removed`) when a moderator removed it while it was entering. An entry announced as
    a join is charged to the session's join budgets (checked by the caller before)."""
    session.begin_join(room)
    try:
        await node.hub.enter(session, room)
        # The entry and what it is sent (the newest offset, the members) are read in
        # the same step when the broker is asked at all (Redis: one round trip).
        joined, view = await node.presence.enter(
            room, session.name, (since, node.settings.replay_limit)
        )
        if joined:
            node.budgets.charge_join(session)
    except (BrokerUnavailable, Banned):
        session.abandon_join(room)
        await node.hub.exit(session, room)
        raise
    try:
        if view is None:
            view = await node.broker.entering(room, since, node.settings.replay_limit)
    except BrokerUnavailable:
        await leave_room(node, session, room, announce=False)
        raise
    replay, members = view
    if room not in session.rooms:  # a moderator removed it meanwhile (it got `removed`)
        node.presence.exit(room, session.name, at_once=True)
        await node.hub.exit(session, room)
        return False
    session.finish_join(
        Subscribed(room, members, replay.offset, replay.recovered, ref), replay.messages
    )
    return True


async def leave_room(
    node: Node,
    session: Session,
    room: str,
    ref: str | None = None,
    *,
    announce: bool = True,
    at_once: bool = False,
) -> None:
    """Take `session` out of `room`; `announce` sends it `unsubscribed`; `at_once`
    leaves with no grace period (a moderator removed it)."""
    session.abandon_join(room)
    node.presence.exit(room, session.name, at_once=at_once)
    await node.hub.exit(session, room)
    if announce:
        session.send(Unsubscribed(room, ref))


async def leave_everything(node: Node, session: Session) -> None:
    """A connection ended: leave its rooms, forget it, free its name.

    Each step runs even when one before it failed, so a broker fault cannot leave
    a closed connection registered or its name taken.
    """
    for room in list(session.rooms):
        try:
            await leave_room(node, session, room, announce=False)
        except Exception:
            log.exception("leaving %s for %s failed", room, session.ref)
    node.hub.remove(session)
    if session.name:
        try:
            await node.broker.release_name(session.name, session.ref)
        except BrokerUnavailable:
            log.warning("could not release the name %s now; retried later", session.name)
        except Exception:
            log.exception("releasing the name %s failed", session.name)
