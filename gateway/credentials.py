"""Where a handshake's bearer secrets (the token, the session) may travel.

Proxies log URLs (nginx's error log keeps the whole request line), so the clients we
ship keep `token` and `session` out of the query. Browsers cannot set headers on a
WebSocket, but they can offer subprotocols: the page offers its mode
(`chat.v1.json` or `chat.v1.text`) followed by `chat.token.<JWT>` and
`chat.session.<SECRET>`. The node answers with the mode alone and never echoes a
credential. `Authorization: Bearer` carries a token too, and `?token=` /
`?session=` keep working for any other client.

An offer that names our family (`chat.`...) but no mode is refused before the upgrade
(`offer_refusal`): aiohttp would log the whole offer, credentials included, and go on
in text mode, which is not what the client asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from gateway.codecs import JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL

TOKEN_SUBPROTOCOL = "chat.token."
SESSION_SUBPROTOCOL = "chat.session."
FAMILY = "chat."  # every subprotocol of ours starts so (compared without case)
MODES = (JSON_SUBPROTOCOL, TEXT_SUBPROTOCOL)
NO_MODE_MESSAGE = (
    "the Sec-WebSocket-Protocol offer names chat. subprotocols but no mode: offer "
    f"{JSON_SUBPROTOCOL} or {TEXT_SUBPROTOCOL} (exactly so, in lower case) with them"
)
SPLIT_OFFER_MESSAGE = (
    "offer every subprotocol in one Sec-WebSocket-Protocol header, separated by commas"
)

# The offer, split once per request: a handshake reads it three times (the refusal
# check, the token, the session).
if TYPE_CHECKING or hasattr(web, "RequestKey"):
    OFFER = web.RequestKey("subprotocol_offer", tuple[str, ...])
else:  # aiohttp before 3.14 has no RequestKey, and takes a str key without a warning
    OFFER = "subprotocol_offer"


def offered_subprotocols(request: web.Request) -> list[str]:
    """Every subprotocol the client offered, in its order."""
    return list(_offer(request))


def _offer(request: web.Request) -> tuple[str, ...]:
    offer = request.get(OFFER)
    if offer is None:
        parts: list[str] = []
        for header in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()):
            parts.extend(part.strip() for part in header.split(",") if part.strip())
        offer = request[OFFER] = tuple(parts)
    return offer


def offer_refusal(request: web.Request) -> str | None:
    """Why `request`'s subprotocol offer is refused (a 400 before the upgrade); None
    when it may go on: an offer of no `chat.` subprotocol at all (text mode), or one
    that names a mode.

    Refused: `chat.` subprotocols without a mode (`chat.v2.json` or `chat.v1.JSON`
    beside `chat.token.<JWT>`, a credential alone), and `chat.` subprotocols split over
    several Sec-WebSocket-Protocol headers (aiohttp reads only the first, so a mode in
    another would be missed). The reason never echoes the offer: it may hold secrets.
    """
    offered = _offer(request)
    if not any(part.lower().startswith(FAMILY) for part in offered):
        return None
    if len(request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL)) > 1:
        return SPLIT_OFFER_MESSAGE
    if not any(part in MODES for part in offered):
        return NO_MODE_MESSAGE
    return None


def _from_subprotocol(request: web.Request, prefix: str) -> str | None:
    for offered in _offer(request):
        if offered.startswith(prefix) and len(offered) > len(prefix):
            return offered[len(prefix) :]
    return None


def bearer(request: web.Request) -> str | None:
    """The credential of an `Authorization: Bearer` header, if there is one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


def presented_token(request: web.Request) -> str | None:
    """The handshake's token: `?token=`, a `chat.token.` subprotocol, or `Authorization`."""
    return (
        request.query.get("token")
        or _from_subprotocol(request, TOKEN_SUBPROTOCOL)
        or bearer(request)
    )


def presented_session(request: web.Request) -> str | None:
    """The handshake's session secret: `?session=` or a `chat.session.` subprotocol."""
    return request.query.get("session") or _from_subprotocol(request, SESSION_SUBPROTOCOL)
