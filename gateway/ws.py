"""GET /ws: the upgrade and the handshake (mode, name, first room); then the connection
is handed over to its link (gateway/link.py, gateway/served.py) and the handler returns."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway.access import Identity
from gateway.auth import verify_token
from gateway.broker.base import Banned, NameTaken
from gateway.codecs import JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL
from gateway.codecs.text import NAME_QUESTION
from gateway.credentials import offer_refusal, presented_session, presented_token
from gateway.errors import BrokerUnavailable, ErrorCode, ProtocolError
from gateway.events import ErrorReply, Welcome
from gateway.guard import NAME_TIMEOUT_REASON, name_deadline
from gateway.handlers import banned_error
from gateway.link import Link
from gateway.membership import Claimed, claim_and_enter, enter_room, finish_entry
from gateway.names import name_key, validate_name, validate_room
from gateway.node import NODE, Node
from gateway.ratelimit import TokenBucket
from gateway.served import HANDOVERS, Served, end, forget
from gateway.session import Session
from gateway.tasks import complete_despite_cancel

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "the chat backend is unavailable; try again later"


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """Answer the upgrade and run the connection's handshake (mode, name, first room);
    then hand the connection to its link and return (or refuse a bad subprotocol
    offer with 400 before the upgrade)."""
    node = request.app[NODE]
    settings = node.settings
    refusal = offer_refusal(request)
    if refusal is not None:
        log.info("refused /ws from %s: %s", request.remote, refusal)  # not the offer itself
        node.metrics.handshakes_refused.labels(reason="subprotocol").inc()
        return web.Response(status=400, text=refusal + "\n")
    ws = _Upgrade(protocols=(JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL), compress=False)
    transport, ready = request.transport, ws.can_prepare(request)
    if transport is None or not ready.ok:
        await ws.prepare(request)  # answers the refusal (an HTTP error) and raises
        raise ConnectionResetError("the connection ended before the upgrade")
    codec = node.codec_for(ready.protocol)
    served = Served(node, request.app[HANDOVERS])
    # The link takes the transport before the 101 goes out: it sees every frame.
    link = Link(
        transport,
        corker=node.corker,
        send_limit=settings.send_queue_limit,
        max_message=settings.max_frame_bytes,
        heartbeat=settings.heartbeat,
        owner=served,
    )
    session = served.session = Session(
        codec,
        node.next_ref(),
        outbox=link.outbox,
        history_budget=TokenBucket(settings.history_rate, settings.history_burst),
        joins=node.budgets.connection_joins(),
        address=request.remote or "",
        link=link,
        metrics=node.metrics,
    )
    try:
        await ws.prepare(request)
    except BaseException:
        if link.is_lost:
            forget(request)  # aiohttp's protocol would never hear of it
        else:
            link.abandon()
            transport.set_protocol(request.protocol)  # back to aiohttp, which failed it
        raise
    node.hub.connect(session)
    gauge = node.metrics.connection_gauges[codec.name]
    gauge.inc()
    node.metrics.opened_by_mode[codec.name].inc()
    handed_over = False
    try:
        if await _handshake(node, session, link, request) and not link.is_lost:
            served.hand_over(request, link)
            handed_over = True
    finally:
        if not handed_over:
            gauge.dec()
            try:
                await complete_despite_cancel(end(node, session, link))
            finally:
                forget(request)
                served.drop()
    return ws


class _Upgrade(web.WebSocketResponse):
    """aiohttp's handshake (the checks and the 101) and nothing after it: the
    connection's frames, both ways, are its link's (gateway/link.py)."""

    async def write_eof(self) -> None:  # type: ignore[override]
        return None  # aiohttp would close the WebSocket here: the link does that


def _refuse(node: Node, session: Session, error: ProtocolError, peer: str | None) -> bool:
    """Answer a handshake error, log and count it, and close; returns False.

    A broken rule closes with 1008; an unavailable backend with 1011, so the client
    knows to try again later.
    """
    log.log(
        logging.WARNING if error.code is ErrorCode.UNAUTHORIZED else logging.INFO,
        "refused /ws from %s at the handshake: %s %r",  # %r: the message may echo input
        peer,
        error.code,
        error.message,
    )
    node.metrics.handshakes_refused.labels(reason=error.code).inc()
    session.send(ErrorReply(error.code, error.message, until=error.until))
    code = 1011 if error.code is ErrorCode.UNAVAILABLE else 1008
    session.close(code, error.message, notice=False)  # the error said why
    return False


async def _handshake(node: Node, session: Session, link: Link, request: web.Request) -> bool:
    """Name the connection, welcome it and enter its first room; False if it closed."""
    settings, query, peer = node.settings, request.query, request.remote
    deadline = name_deadline(settings)
    raw_name = query.get("name")
    try:
        room = validate_room(query.get("room", "lobby"))
        identity = await _identify(node, request, raw_name, room, session)
        if identity is not None:
            raw_name, session.rooms_allowed = identity.name, identity.rooms
            session.moderates = identity.moderates
            session.rooms_allowed.check(room, "join")  # before the welcome: 1008
        elif raw_name is None and not session.is_text:
            raise ProtocolError(ErrorCode.INVALID_NAME, "JSON mode needs ?name= in the URL")
    except ProtocolError as error:
        return _refuse(node, session, error, peer)
    since = query.get("since") or None
    secret = presented_session(request) or None
    # Without a join hook to ask between them, the claim and the first room's entry are
    # one broker step (Redis: one round trip): `claim_and_enter`.
    first = None if node.hooks.decides_joins else (room, since)
    while True:
        if raw_name is None:
            session.send_raw(NAME_QUESTION)
            try:
                async with asyncio.timeout_at(deadline):
                    raw_name = await _next_text(session, link)
            except TimeoutError:
                log.info("closed /ws from %s: %s", peer, NAME_TIMEOUT_REASON)
                node.metrics.handshakes_refused.labels(reason="name_timeout").inc()
                session.close(1008, NAME_TIMEOUT_REASON)  # text mode: `! no name given in time`
                return False
            if raw_name is None:
                return False
        try:
            claimed = await _claim(node, session, raw_name, secret, first)
            break
        except ProtocolError as error:
            if not session.is_text or settings.auth or error.code is ErrorCode.UNAVAILABLE:
                return _refuse(node, session, error, peer)
            session.send(ErrorReply(error.code, error.message))
            raw_name = None
    if first is None:
        try:
            await node.hooks.join(session.name, room)  # the first room: refused before the welcome
        except ProtocolError as error:
            return _refuse(node, session, error, peer)
        node.hub.add_name(session)
    moderates = session.moderates.patterns or ()
    # Direct messages that reached the name since its claim follow it (held till now).
    session.welcome(Welcome(session.name, settings.node_id, claimed.secret, moderates))
    try:
        if first is None:
            await enter_room(node, session, room, since)  # False: removed as it entered
        elif claimed.banned is not None:
            raise claimed.banned
        else:
            await finish_entry(node, session, room, since, (claimed.joined, claimed.view))
    except BrokerUnavailable:
        unavailable = ProtocolError(ErrorCode.UNAVAILABLE, UNAVAILABLE_MESSAGE)
        return _refuse(node, session, unavailable, peer)
    except Banned as banned:
        return _refuse(node, session, banned_error(banned), peer)  # the first room: 1008
    return True


async def _identify(
    node: Node, request: web.Request, raw_name: str | None, room: str, session: Session
) -> Identity | None:
    """Who the connection is, when auth is on (None when off: the client names itself).

    A token is verified first (`--jwt-secret`): a bad one is refused, whatever the
    connect hook would say. With a connect hook the application then decides, told the
    verified claims (None when no token came: with a hook a token is not required).
    The join budget is checked before the hook is asked: churn costs the application
    nothing."""
    settings = node.settings
    identity, claims = None, None
    token = presented_token(request)
    if settings.jwt_secret is not None and (token or not node.hooks.decides_connections):
        identity, claims = verify_token(settings.jwt_secret, token, raw_name, settings.jwt_leeway)
    node.budgets.check_join(session)  # churn from one address: refused before the name
    if node.hooks.decides_connections:
        asked_room = room if "room" in request.query else None
        identity = await node.hooks.connect(request, raw_name, asked_room, claims)
    return identity


async def _claim(
    node: Node,
    session: Session,
    raw_name: str,
    secret: str | None,
    first: tuple[str, str | None] | None,
) -> Claimed:
    """Validate `raw_name` and make it this connection's; with `first` (room, since)
    enter that room in the same step (`claim_and_enter`).

    With auth the name is shared by every connection presenting a token for it.
    """
    name = validate_name(raw_name)
    await node.releases.settled(name)  # a connection of it here may be ending
    try:
        if first is None:
            claimed = Claimed(
                await node.broker.claim_name(name, session.ref, secret, shared=node.settings.auth)
            )
        else:
            # Presence enters it by name; after an unavailable broker the name is
            # released when the connection ends (it may have been claimed).
            session.name, session.name_key = name, name_key(name)
            claimed = await claim_and_enter(node, session, *first, secret)
    except NameTaken as taken:
        session.name = session.name_key = ""
        if name_key(taken.holder) == name_key(name):
            raise ProtocolError(ErrorCode.NAME_TAKEN, f"the name {name} is taken") from None
        raise ProtocolError(
            ErrorCode.NAME_TAKEN,
            f"the name {name} looks like {taken.holder}, who is online: pick another",
        ) from None
    except BrokerUnavailable:
        raise ProtocolError(ErrorCode.UNAVAILABLE, UNAVAILABLE_MESSAGE) from None
    session.name, session.name_key = name, name_key(name)
    return claimed


async def _next_text(session: Session, link: Link) -> str | None:
    """The next text message; None once the connection closes."""
    while True:
        item = await link.receive()
        if item is None or isinstance(item, str):
            return item
        session.send(ErrorReply(ErrorCode.BAD_FRAME, "send text frames, not binary"))
