"""Opening one JSON-mode WebSocket: handshake, then wait for `welcome` (or the refusal)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from cli.moderation import ms_field, with_until

SUBPROTOCOL = "chat.v1.json"
# The session secret rides as a further subprotocol offered after the mode, never in the
# URL: proxies log request lines (nginx's error log keeps the query too). The node
# answers with the mode alone.
SESSION_SUBPROTOCOL = "chat.session."
# What a subprotocol may hold (an HTTP token, RFC 9110); a secret with anything else
# could not travel in the header and is not kept.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
NAME_ERRORS = frozenset({"invalid_name", "name_taken"})
ROOM_REFUSALS = frozenset({"forbidden", "banned"})  # this room, not this user, is refused
FATAL_ERRORS = frozenset({"invalid_room", "bad_frame"}) | ROOM_REFUSALS
CLOSE_POLICY = 1008
CLOSE_BY_OPERATOR = 4001  # an operator disconnected the user: never reconnect by itself
OPERATOR_CLOSED = "disconnected by an operator"

_CLOSED = frozenset({aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED})


class Rejected(Exception):
    """The server refused this client (policy, auth, name, room): trying again will not
    help. `until` (ms since the epoch): when a ban from the room ends."""

    def __init__(self, message: str, code: str = "", until: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.until = until

    def __str__(self) -> str:
        return with_until(self.message, self.until)


class NameRejected(Rejected):
    """The name is invalid or taken (`invalid_name` / `name_taken`); ask for another."""


class Unauthorized(Rejected):
    """The server wants a token, or refused the one given (`unauthorized`)."""


class ConnectFailed(Exception):
    """The server could not be reached or dropped the handshake; it may work later."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection that got its `welcome`.

    `early`: the frames read after it, up to the first room's answer (to be handled
    first); `close_reason`: what the server said if it closed meanwhile, else None.
    """

    ws: aiohttp.ClientWebSocketResponse
    welcome: dict[str, Any]
    early: tuple[dict[str, Any], ...] = ()
    close_reason: str | None = None


def decode(data: str) -> dict[str, Any] | None:
    """One server frame as a dict, or None when it is not a JSON object."""
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def usable_secret(secret: object) -> str | None:
    """`secret` (a `welcome`'s `session`) when it can be offered as a subprotocol."""
    return secret if isinstance(secret, str) and _TOKEN.fullmatch(secret) else None


def backoff(
    initial: float, cap: float, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Delays doubling from `initial` up to `cap`, each with jitter (between d/2 and d)."""
    delay = initial
    while True:
        yield delay / 2 + rand() * delay / 2
        delay = min(delay * 2, cap)


async def open_connection(
    http: aiohttp.ClientSession,
    url: str,
    query: Mapping[str, str],
    *,
    wait_limit: float,
    heartbeat: float,
    headers: Mapping[str, str] | None = None,
    session: str | None = None,
) -> Opened:
    """Connect to `url` with `query` (and `headers`) and read up to the `welcome` frame,
    and on to the first room's answer.

    `session`, the secret of an earlier `welcome`, is offered as the subprotocol
    `chat.session.<SECRET>` after `chat.v1.json`, so that it stays out of the URL.

    Raises NameRejected, Unauthorized or Rejected when the server refuses (an `error` then a close
    before any `welcome`, or a 1008 close; or the first room refused after the
    `welcome`: `banned`), ConnectFailed for anything transient.
    """
    target = URL(url).update_query(dict(query))
    protocols = (SUBPROTOCOL, f"{SESSION_SUBPROTOCOL}{session}") if session else (SUBPROTOCOL,)
    try:
        ws = await http.ws_connect(
            target,
            protocols=protocols,
            headers=headers,
            heartbeat=heartbeat or None,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=wait_limit),
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise ConnectFailed(handshake_refused(url, exc.status, exc.message)) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ConnectFailed(f"cannot connect to {url}: {exc or type(exc).__name__}") from exc
    try:
        if ws.protocol != SUBPROTOCOL:
            raise Rejected(f"{url} does not speak {SUBPROTOCOL}")
        deadline = asyncio.get_running_loop().time() + wait_limit
        welcome = await _await_welcome(ws, wait_limit, deadline)
        return await _await_entry(ws, welcome, deadline)
    except BaseException:
        await ws.close()
        raise


def handshake_refused(url: str, status: int, message: str) -> str:
    """Why the server at `url` answered the WebSocket handshake with HTTP `status`;
    a page or a 404 where `/ws` was left out says so."""
    target = URL(url)
    if status in (200, 404) and not target.path.rstrip("/").endswith("/ws"):
        return (
            f"{url} is not the chat's WebSocket endpoint (HTTP {status}): the path is "
            f"probably missing /ws (try --url {target.with_path('/ws').with_query(None)})"
        )
    return f"cannot connect to {url}: the server answered HTTP {status} ({message})"


async def _await_entry(
    ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any], deadline: float
) -> Opened:
    """Read on after the `welcome` until the first room's answer: a room refused (an
    `error` `banned`, then a close) raises Rejected; anything else is kept for the
    link to handle. Past the deadline the connection is handed over as it is."""
    early: list[dict[str, Any]] = []
    refusal: dict[str, Any] | None = None
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    if (frame := decode(msg.data)) is None:
                        continue
                    if _refuses_room(frame):
                        refusal = frame  # the close follows
                        continue
                    early.append(frame)
                    return Opened(ws, welcome, tuple(early))
                if msg.type in _CLOSED or msg.type is aiohttp.WSMsgType.ERROR:
                    break
    except TimeoutError:
        return Opened(ws, welcome, tuple(early))
    if refusal is not None:
        message = str(refusal.get("message") or refusal.get("code"))
        raise Rejected(message, str(refusal.get("code")), ms_field(refusal.get("until")))
    reason = str(msg.extra or "") if msg.type is aiohttp.WSMsgType.CLOSE else ""
    return Opened(ws, welcome, tuple(early), close_reason=reason)


def _refuses_room(frame: dict[str, Any]) -> bool:
    """An answer to no request refusing the room entered: a banned first room."""
    unasked = frame.get("ref") is None
    return frame.get("type") == "error" and unasked and frame.get("code") in ROOM_REFUSALS


async def _await_welcome(
    ws: aiohttp.ClientWebSocketResponse, wait_limit: float, deadline: float
) -> dict[str, Any]:
    error: dict[str, Any] = {}
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    frame = decode(msg.data) or {}
                    if frame.get("type") == "welcome":
                        return frame
                    if frame.get("type") == "error":
                        error = frame
                elif msg.type in _CLOSED or msg.type is aiohttp.WSMsgType.ERROR:
                    break
    except TimeoutError:
        raise ConnectFailed(f"no welcome from the server within {wait_limit:g} s") from None
    code = str(error.get("code", ""))
    message = str(error.get("message") or f"the server closed the connection ({ws.close_code})")
    if code in NAME_ERRORS:
        raise NameRejected(message, code)
    if code == "unauthorized":
        raise Unauthorized(message, code)
    if code == "unavailable":  # the backend is down for now (even if closed 1008)
        raise ConnectFailed(message)
    if ws.close_code == CLOSE_BY_OPERATOR:
        raise Rejected(OPERATOR_CLOSED, "disconnected")
    if code in FATAL_ERRORS or ws.close_code == CLOSE_POLICY:
        raise Rejected(message, code, ms_field(error.get("until")))
    raise ConnectFailed(message)
