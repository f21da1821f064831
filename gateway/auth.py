"""Auth (docs/protocol.md, "Auth"): HS256 JWTs whose `sub` is the user's name.

With `--jwt-secret` every WebSocket must present a token: as `?token=`, as a
`chat.token.` subprotocol (browsers cannot set headers on a WebSocket) or as
`Authorization: Bearer` (gateway/credentials.py). The token decides
the name. `exp` is required (there is no revocation: tokens must expire); `nbf` and
`iat` are checked when present; each allows `--jwt-leeway` (30 s) of clock skew
between the token's issuer and the nodes. Tokens are checked once, at the handshake: a
connection outlives its token's expiry. A token may also say which rooms its user may
enter (`rooms`) and moderate (`moderates`): gateway/access.py.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from gateway.access import EVERY_ROOM, NO_ROOM, Identity, rooms_claim
from gateway.errors import ErrorCode, ProtocolError
from gateway.names import name_key, validate_name

ALGORITHM = "HS256"
TIME_CLAIMS = ("exp", "nbf", "iat")  # NumericDate claims: numbers, never strings


def authenticate(
    secret: str, token: str | None, asked_name: str | None, leeway: float = 0.0
) -> Identity:
    """Who `token` proves; ProtocolError(unauthorized) for a missing or bad one.

    `asked_name` (a `?name=` given as well) must be the token's name, compared
    case-folded, so a client cannot believe it is someone else. `leeway` is the clock
    skew allowed on `exp`, `nbf` and `iat`, in seconds.
    """
    return verify_token(secret, token, asked_name, leeway)[0]


def verify_token(
    secret: str, token: str | None, asked_name: str | None, leeway: float = 0.0
) -> tuple[Identity, dict[str, Any]]:
    """`authenticate`, with the token's verified claims as well (what the connect hook
    is told when a token came with the handshake)."""
    if not token:
        raise _unauthorized(
            "this chat needs a token to sign in (sent as Authorization: Bearer, a chat.token. "
            "subprotocol or ?token=)"
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
            leeway=leeway,
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"the token is not valid ({exc})") from None
    for claim in TIME_CLAIMS:
        # PyJWT takes a numeric string ("9999999999") for a time; RFC 7519 4.1.4 wants
        # a number, and an issuer that writes strings has a bug worth hearing about.
        value = claims.get(claim)
        if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _unauthorized(f"the token's {claim} must be a number (seconds since 1970)")
    subject = claims["sub"]
    if not isinstance(subject, str):
        raise _unauthorized("the token's sub must be a name")
    try:
        name = validate_name(subject)
    except ProtocolError as exc:
        raise _unauthorized(f"the token's sub is not a valid name: {exc.message}") from None
    if asked_name is not None and name_key(asked_name.strip()) != name_key(name):
        raise _unauthorized(f"the token is for {name}, not for the name in the URL")
    identity = Identity(
        name, rooms_claim(claims, "rooms", EVERY_ROOM), rooms_claim(claims, "moderates", NO_ROOM)
    )
    return identity, claims


def mint(
    secret: str,
    name: str,
    ttl: float,
    now: float | None = None,
    *,
    rooms: list[str] | None = None,
    moderates: list[str] | None = None,
) -> str:
    """A token for `name`, valid for `ttl` seconds (for operators and tests); with
    `rooms`, only into those rooms; with `moderates`, a moderator of those."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": validate_name(name),
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
    }
    if rooms is not None:
        claims["rooms"] = rooms
    if moderates is not None:
        claims["moderates"] = moderates
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _unauthorized(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, message)
