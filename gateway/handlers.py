"""What each command does. One function per command, found through a table."""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import assert_never

from gateway.broker.base import Banned, RecipientBusy
from gateway.codecs.text import HELP_LINES
from gateway.commands import (
    Command,
    Delete,
    DirectSend,
    HistoryQuery,
    Join,
    Kick,
    Leave,
    ListRooms,
    Ping,
    Quit,
    Send,
    ShowHelp,
    Who,
)
from gateway.errors import BrokerUnavailable, ErrorCode, NotReplicated, ProtocolError
from gateway.events import (
    Ack,
    Direct,
    ErrorReply,
    Event,
    History,
    Members,
    Notice,
    Pong,
    RoomList,
)
from gateway.membership import enter_room, leave_room
from gateway.names import validate_name, validate_room, validate_text
from gateway.node import Node
from gateway.session import Session

DEFAULT_HISTORY_LIMIT = 50

log = logging.getLogger(__name__)


def _room_of(session: Session, room: str | None, *, must_be_in: bool) -> str:
    """The room a command is about: the current one when None (text mode)."""
    if room is None:
        current = session.current_room
        if current is None:
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, "you are not in a room; /join one")
        return current
    validate_room(room)
    if must_be_in and room not in session.rooms:
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in {room}; join it first")
    return room


def _spend_rate(node: Node, session: Session, ref: str | None) -> None:
    """One message's worth of the user's rate; repeated breaches close the connection."""
    if node.budgets.take_message(session):
        session.rate_strikes = 0
        return
    session.rate_strikes += 1
    message = "slow down: too many messages"
    if session.rate_strikes >= node.settings.rate_strikes:
        log.warning("closing %s (%s): rate limited %d times in a row", session.ref,
                    session.name, session.rate_strikes)  # fmt: skip
        session.send(ErrorReply(ErrorCode.RATE_LIMITED, message, ref))
        session.close(1008, "rate limit exceeded again and again")
    # Made in the raise: an error held in a local would hold this frame (and the
    # session) in a cycle through its traceback.
    raise ProtocolError(ErrorCode.RATE_LIMITED, message, ref)


def _unavailable() -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNAVAILABLE, "the chat backend is unavailable: not sent, try again later"
    )


async def handle_send(node: Node, session: Session, command: Send) -> None:
    room = _room_of(session, command.room, must_be_in=True)
    text = validate_text(command.text, node.settings.max_message_chars)
    _spend_rate(node, session, command.ref)
    if node.settings.publish_hook_url is not None:
        text = await node.hooks.publish(session.name, room, text, command.id)
        if room not in session.rooms:  # removed while the application decided
            raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you are not in {room}: not sent")
    session.begin_send()
    ack = None
    try:
        with node.metrics.publish_seconds.time():
            published = await node.broker.publish(
                room, session.name, text, origin=session.ref, message_id=command.id
            )
        ack = Ack(command.ref, published.offset)
    finally:
        session.end_send(ack)
    if not published.duplicate:
        node.metrics.messages_published.inc()


async def handle_direct(node: Node, session: Session, command: DirectSend) -> None:
    to = validate_name(command.to)
    text = validate_text(command.text, node.settings.max_message_chars)
    _spend_rate(node, session, command.ref)
    event = Direct(session.name, to, text, int(time.time() * 1000), session.ref)
    try:
        delivered = await node.broker.send_direct(event)
    except RecipientBusy as busy:  # not the sender's fault: no strike
        node.budgets.refused_direct()
        wait = max(1, math.ceil(busy.retry_after))
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"{busy.name} is getting too many direct messages: not sent; try again in {wait} s",
        ) from None
    if not delivered:
        raise ProtocolError(ErrorCode.USER_NOT_FOUND, f"{to} is not online")
    node.metrics.direct_messages.inc()
    if session.is_text:
        session.send(event, outgoing=True)  # `[dm -> bob] hi`: the sender sees it went out
    else:
        session.send(Ack(command.ref))


async def handle_join(node: Node, session: Session, command: Join) -> None:
    room = validate_room(command.room)
    session.rooms_allowed.check(room, "join")
    if room in session.rooms:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"you are already in {room}")
    node.budgets.check_join(session)  # before a text-mode connection leaves its room
    await node.hooks.join(session.name, room)  # refused: the connection stays where it was
    if session.is_text:
        current = session.current_room
        if current is not None:
            until = await node.broker.banned_until(room, session.name)
            if until is not None:  # refused before leaving: the user stays where it was
                raise Banned(room, until)
            await leave_room(node, session, current, announce=False)
    elif len(session.rooms) >= node.settings.max_rooms_per_connection:
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"a connection may be in at most {node.settings.max_rooms_per_connection} rooms",
        )
    if not await enter_room(node, session, room, command.since, command.ref):
        raise ProtocolError(ErrorCode.NOT_IN_ROOM, f"you were removed from {room} as you joined")


async def handle_leave(node: Node, session: Session, command: Leave) -> None:
    room = _room_of(session, command.room, must_be_in=True)
    await leave_room(node, session, room, command.ref)


async def handle_who(node: Node, session: Session, command: Who) -> None:
    room = _room_of(session, command.room, must_be_in=False)
    session.rooms_allowed.check(room, "read")
    members = await node.broker.members(room)
    session.send(Members(room, members, command.ref))


async def handle_rooms(node: Node, session: Session, command: ListRooms) -> None:
    listing = await node.room_directory.listing(session.rooms_allowed)
    session.send(RoomList(listing.rooms, listing.total, command.ref))


def _spend_history(node: Node, session: Session, limit: int, ref: str | None) -> None:
    """`limit` messages' worth of the connection's history budget; `rate_limited`
    (nothing read) when it has not that much left."""
    budget = session.history_budget
    if budget.take(limit):
        return
    node.metrics.rate_limited.labels(limit="history").inc()
    wait = budget.retry_after(limit)
    raise ProtocolError(
        ErrorCode.RATE_LIMITED,
        f"slow down: history is limited to {node.settings.history_rate:g} messages a second "
        f"per connection; ask again in {wait:.1f} s",
        ref,
    )


async def handle_history(node: Node, session: Session, command: HistoryQuery) -> None:
    room = _room_of(session, command.room, must_be_in=False)
    session.rooms_allowed.check(room, "read")
    limit = command.limit or DEFAULT_HISTORY_LIMIT
    _spend_history(node, session, limit, command.ref)
    messages = await node.broker.history(room, command.before, limit)
    session.send(History(room, messages, command.ref))


async def handle_kick(node: Node, session: Session, command: Kick) -> None:
    room = _room_of(session, command.room, must_be_in=False)
    session.moderates.check(room, "moderate")
    name = validate_name(command.name)
    session.begin_send()  # as for a send: the answer before the leave it caused
    answer: Event | None = None
    try:
        await node.moderation.kick(room, name, command.seconds, session.name, "moderator")
        if session.is_text:
            banned = f", banned for {command.seconds} s" if command.seconds else ""
            answer = Notice([f"* {name} was removed from {room}{banned}"])
        else:
            answer = Ack(command.ref)
    finally:
        session.end_send(answer)


async def handle_delete(node: Node, session: Session, command: Delete) -> None:
    room = validate_room(command.room)
    session.moderates.check(room, "moderate")
    session.begin_send()  # as for a send: the ack before the `deleted` it caused
    ack = None
    try:
        if await node.moderation.delete(room, command.offset, session.name, "moderator"):
            ack = Ack(command.ref)
    finally:
        session.end_send(ack)
    if ack is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{room} has no message at {command.offset}")


async def handle_ping(node: Node, session: Session, command: Ping) -> None:
    session.send(Pong(command.ref))


async def handle_help(node: Node, session: Session, command: ShowHelp) -> None:
    session.send(Notice(HELP_LINES))


async def handle_quit(node: Node, session: Session, command: Quit) -> None:
    session.close(1000, "bye")


async def _run(node: Node, session: Session, command: Command) -> None:
    """Run `command` with its handler; mypy checks that every kind of command has one."""
    match command:
        case Send():
            await handle_send(node, session, command)
        case DirectSend():
            await handle_direct(node, session, command)
        case Join():
            await handle_join(node, session, command)
        case Leave():
            await handle_leave(node, session, command)
        case Who():
            await handle_who(node, session, command)
        case ListRooms():
            await handle_rooms(node, session, command)
        case HistoryQuery():
            await handle_history(node, session, command)
        case Kick():
            await handle_kick(node, session, command)
        case Delete():
            await handle_delete(node, session, command)
        case Ping():
            await handle_ping(node, session, command)
        case ShowHelp():
            await handle_help(node, session, command)
        case Quit():
            await handle_quit(node, session, command)
        case _:
            assert_never(command)


async def handle(node: Node, session: Session, command: Command) -> None:
    """Run `command`; raises ProtocolError for the client to see (`unavailable` when
    the broker could not do its part: nothing was stored)."""
    try:
        await _run(node, session, command)
    except NotReplicated as exc:
        again = "send it again with the same id" if isinstance(command, Send) else "send it again"
        raise ProtocolError(ErrorCode.UNAVAILABLE, f"{exc}: {again}") from None
    except BrokerUnavailable:
        raise _unavailable() from None
    except Banned as banned:
        raise banned_error(banned) from None


def banned_error(banned: Banned) -> ProtocolError:
    """The `banned` answer to a join, saying when the ban ends."""
    ends = datetime.fromtimestamp(banned.until / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ProtocolError(
        ErrorCode.BANNED, f"you are banned from {banned.room} until {ends}", until=banned.until
    )
