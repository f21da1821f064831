"""Where a handshake's bearer secrets (the token, the session) may travel.

Proxies log URLs (nginx's error log keeps the whole request line), so the clients we
ship keep `token` and `session` out of the query. Browsers cannot set headers on a
WebSocket, but they can offer subprotocols: the page offers its mode
(`chat.v1.json` or `chat.v1.text`) followed by `chat.token.<JWT>` and
`chat.session.<SECRET>`. The node answers with the mode alone and never echoes a
credential. `Authorization: Bearer` carries a token too, and `?token=` /
`?session=` keep working for any other client.
"""

from __future__ import annotations

from aiohttp import web

TOKEN_SUBPROTOCOL = "chat.token."
SESSION_SUBPROTOCOL = "chat.session."


def offered_subprotocols(request: web.Request) -> list[str]:
    """Every subprotocol the client offered, in its order."""
    offered: list[str] = []
    for header in request.headers.getall("Sec-WebSocket-Protocol", ()):
        offered.extend(part.strip() for part in header.split(",") if part.strip())
    return offered


def _from_subprotocol(request: web.Request, prefix: str) -> str | None:
    for offered in offered_subprotocols(request):
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
