"""Entering and leaving rooms: hub, presence and the broker's replay, in the right order.

Entering holds the room's live events on the session while the replay is read, so
the client gets `subscribed`, then the replay, then live events: no gap, no duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.broker.base import Banned, NameTaken
from gateway.errors import BrokerUnavailable
from gateway.events import Subscribed, Unsubscribed
from gateway.node import Node
from gateway.presence import View
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
    except (BrokerUnavailable, Banned):
        session.abandon_join(room)
        await node.hub.exit(session, room)
        raise
    return await finish_entry(node, session, room, since, (joined, view), ref)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A new connection's name claimed and its first room entered (`claim_and_enter`)."""

    secret: str  # the name's session secret
    joined: bool = False  # the entry was announced as a join
    view: View | None = None  # what the entry is sent, when read with it
    banned: Banned | None = None  # the name is banned from the room: not entered


async def claim_and_enter(
    node: Node, session: Session, room: str, since: str | None, secret: str | None
) -> Claimed:
    """Claim `session.name` (set by the caller) for `session` and enter `room`, in one
    broker step where it can (`Broker.claim_entering`; the caller checked that no join
    hook is to be asked between them). The session is indexed by its name at once
    once the name is claimed: no direct message is missed. A ban from the room comes in
    the answer, the room left and the name claimed all the same. Raises NameTaken or
    BrokerUnavailable, the room left (after the latter the name may be held). Once the
    connection is welcomed, `finish_entry` with `Claimed.joined` and `.view` sends it
    `subscribed`."""
    limit = node.settings.replay_limit
    name, shared = session.name, node.settings.auth
    held: list[str] = []  # the secret, once the name is claimed

    async def claim() -> str:
        found = await node.broker.claim_name(name, session.ref, secret, shared=shared)
        held.append(found)
        node.hub.add_name(session)
        return found

    async def through() -> tuple[bool, View]:
        entry = await node.broker.claim_entering(
            name, session.ref, secret, room, since, limit, shared=shared
        )
        held.append(entry.secret)
        node.hub.add_name(session)  # no await since the claim: nothing missed
        if entry.banned is not None:
            raise entry.banned
        if entry.entered:
            return entry.added, (entry.replay, entry.members)
        added, replay, members = await node.broker.presence_add_entering(room, name, since, limit)
        return added, (replay, members)

    session.begin_join(room)
    try:
        await node.hub.enter(session, room)
        joined, view = await node.presence.enter(room, name, (since, limit), through)
        if not held:  # the broker was not asked for the entry (the name is here already)
            try:
                await claim()
            except Exception:  # (a cancel leaves the room when the connection ends)
                node.presence.exit(room, name, at_once=True)
                raise
    except Banned as banned:
        session.abandon_join(room)
        await node.hub.exit(session, room)
        return Claimed(held[0], banned=banned)  # only after a claim (`through`)
    except (BrokerUnavailable, NameTaken):
        session.abandon_join(room)
        await node.hub.exit(session, room)
        raise
    return Claimed(held[0], joined, view)


async def finish_entry(
    node: Node,
    session: Session,
    room: str,
    since: str | None,
    entered: tuple[bool, View | None],
    ref: str | None = None,
) -> bool:
    """The rest of `enter_room` once presence holds the entry: charge a join, read what
    the entry is sent unless `entered` has it, send `subscribed`. False (the session
    got `removed`) when a moderator removed it meanwhile; BrokerUnavailable: left."""
    joined, view = entered
    if joined:
        node.budgets.charge_join(session)
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
