"""GET /ws: the handshake (mode, name, first room), then one command per frame."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from gateway.access import Identity
from gateway.auth import verify_token
from gateway.broker.base import Banned, NameTaken
from gateway.codecs import JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL
from gateway.codecs.text import NAME_QUESTION
from gateway.credentials import offer_refusal, presented_session, presented_token
from gateway.errors import BrokerUnavailable, ErrorCode, ProtocolError
from gateway.events import ErrorReply, Welcome
from gateway.guard import NAME_TIMEOUT_REASON, name_deadline
from gateway.handlers import banned_error, handle
from gateway.inbound import FrameWatch
from gateway.membership import Claimed, claim_and_enter, enter_room, finish_entry, leave_everything
from gateway.metrics import FRAME_REFUSALS
from gateway.names import name_key, validate_name, validate_room
from gateway.node import NODE, Node
from gateway.ratelimit import TokenBucket
from gateway.session import Session
from gateway.tasks import complete_despite_cancel
from gateway.wire import Outbox

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "the chat backend is unavailable; try again later"


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """Serve one WebSocket connection until it closes (or refuse a bad subprotocol
    offer with 400 before the upgrade)."""
    node = request.app[NODE]
    settings = node.settings
    refusal = offer_refusal(request)
    if refusal is not None:
        log.info("refused /ws from %s: %s", request.remote, refusal)  # not the offer itself
        node.metrics.handshakes_refused.labels(reason="subprotocol").inc()
        return web.Response(status=400, text=refusal + "\n")
    ws = web.WebSocketResponse(
        protocols=(JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL),
        max_msg_size=settings.max_frame_bytes + 1,  # aiohttp refuses size >= the limit
        heartbeat=settings.heartbeat or None,
        compress=False,  # frames are built once for everyone (wire.py): no permessage-deflate
    )
    watch = await _upgrade(request, ws, settings.max_frame_bytes)
    codec = node.codec_for(ws.ws_protocol)
    session = Session(
        ws,
        codec,
        node.next_ref(),
        outbox=Outbox(request.transport, node.corker, settings.send_queue_limit),
        history_budget=TokenBucket(settings.history_rate, settings.history_burst),
        joins=node.budgets.connection_joins(),
        address=request.remote or "",
        watch=watch,
        metrics=node.metrics,
    )
    watch.attach(lambda code, reason: _refuse_frame(node, session, code, reason))
    node.hub.connect(session)
    gauge = node.metrics.connection_gauges[codec.name]
    gauge.inc()
    node.metrics.opened_by_mode[codec.name].inc()
    try:
        if await _handshake(node, session, request):
            await _read_loop(node, session)
    finally:
        gauge.dec()
        await complete_despite_cancel(_end(node, session))
    return ws


async def _upgrade(request: web.Request, ws: web.WebSocketResponse, max_message: int) -> FrameWatch:
    """Answer the upgrade with the frame watch already reading the connection (so it
    sees every frame from the first byte); a handshake aiohttp refuses raises.

    aiohttp checks the handshake once, in `prepare`, before anything is written or read
    (no `can_prepare` first: that parsed it twice): a refusal raises there, and the
    connection goes back to aiohttp's protocol, which answers it (and may read a next
    request on a kept-alive connection)."""
    transport = request.transport
    if transport is None:
        await ws.prepare(request)  # answers the refusal (an HTTP error) and raises
        raise ConnectionResetError("the connection ended before the upgrade")
    inner = transport.get_protocol()
    watch = FrameWatch(transport, max_message)
    try:
        await ws.prepare(request)
    except web.HTTPException:
        transport.set_protocol(inner)
        raise
    return watch


def _refuse_frame(node: Node, session: Session, code: int, reason: str) -> None:
    """A frame the watch refused (unmasked: 1002; too large: 1009): close with `code`."""
    node.metrics.frames_refused.labels(reason=FRAME_REFUSALS.get(code, "protocol")).inc()
    log.info("closing %s (%s): %s", session.ref, session.name or "no name", reason)
    session.close(code, reason)


async def _end(node: Node, session: Session) -> None:
    """Log why a connection broke, if it did; leave its rooms, free its name, close it."""
    # A frame aiohttp refused (invalid UTF-8: 1007, a broken frame: 1002), or no pong
    # within the heartbeat: aiohttp closed the connection (or cancelled the
    # handler). After a close of ours, aiohttp only notes the connection's end.
    broken = session.broken or (None if session.closing else session.ws.exception())
    if broken is not None:
        log.info("closed %s (%s): %s", session.ref, session.name or "no name", broken)
    await leave_everything(node, session)
    session.close(1000, "bye")  # nothing is written when the connection is gone
    await session.finish()


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


async def _handshake(node: Node, session: Session, request: web.Request) -> bool:
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
                    raw_name = await _next_text(session)
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
    session.send(Welcome(session.name, settings.node_id, claimed.secret, moderates))
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


async def _next_text(session: Session) -> str | None:
    """The next text frame; None once the connection closes."""
    while True:
        msg = await session.ws.receive()
        if msg.type is WSMsgType.TEXT:
            return str(msg.data)
        if msg.type is WSMsgType.BINARY:
            session.send(ErrorReply(ErrorCode.BAD_FRAME, "send text frames, not binary"))
            continue
        session.broken = msg.data if msg.type is WSMsgType.ERROR else None
        return None


async def _read_loop(node: Node, session: Session) -> None:
    """Decode and run each frame until the connection closes."""
    async for msg in session.ws:
        if msg.type is WSMsgType.TEXT:
            await _run_frame(node, session, str(msg.data))
        elif msg.type is WSMsgType.BINARY:
            session.send(ErrorReply(ErrorCode.BAD_FRAME, "send text frames, not binary"))
            node.metrics.errors.labels(code=ErrorCode.BAD_FRAME).inc()
        else:
            session.broken = msg.data  # an ERROR: aiohttp already closed it
            break
        if session.closing:
            break


async def _run_frame(node: Node, session: Session, frame: str) -> None:
    command = None
    try:
        command = session.codec.decode(frame)
        if command is not None:
            await handle(node, session, command)
    except ProtocolError as error:
        ref = error.ref if error.ref is not None else getattr(command, "ref", None)
        # Counted at once, logged only at DEBUG: a client can make these as fast as it
        # can send, and must not be able to flood the logs.
        log.debug("refused a frame of %s (%s): %r", session.ref, error.code, error.message)
        session.send(ErrorReply(error.code, error.message, ref, error.until))
        node.metrics.errors.labels(code=error.code).inc()
    except Exception:
        log.exception("a frame of %s (%s) failed", session.ref, session.name)
        session.close(1011, "internal error")
