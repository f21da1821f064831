"""The operator endpoints (docs/protocol.md, "The operator API"): disconnect a user everywhere, ban
and unban, delete a message. Each wants the API key (`Authorization: Bearer KEY`),
with auth on or off; each is an audit line and a metric (gateway/moderation.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.access import MAX_BAN_SECONDS
from gateway.credentials import bearer
from gateway.http import ApiCode, ApiError, api_key_refusal, json_body
from gateway.moderation import OPERATOR
from gateway.names import validate_name, validate_room
from gateway.node import NODE

log = logging.getLogger(__name__)


Endpoint = Callable[[web.Request], Awaitable[web.Response]]


def operators_only(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, answered only for a request that shows the API key (checked before
    anything of the request is read)."""

    @functools.wraps(endpoint)
    async def checked(request: web.Request) -> web.Response:
        refused = api_key_refusal(request, bearer(request), "the operator API")
        return refused if refused is not None else await endpoint(request)

    return checked


@operators_only
async def disconnect_user(request: web.Request) -> web.Response:
    """POST /api/users/{name}/disconnect: every connection of the name closes, 4001."""
    name = validate_name(request.match_info["name"])
    await request.app[NODE].moderation.disconnect(name, request.remote)
    return web.Response(status=202)


async def _ban_seconds(request: web.Request) -> int:
    """The ban's length from the body `{"seconds": S}`; a clear 400 for anything else
    (no body, not JSON, S missing or out of range)."""
    wanted = f'{{"seconds": S}} (how long the ban lasts, S from 1 to {MAX_BAN_SECONDS})'
    if not (await request.read()).strip():
        raise ApiError(ApiCode.BAD_REQUEST, f"no body: a ban wants the JSON body {wanted}")
    body = await json_body(request)
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        seconds = None
    if seconds is None or not 1 <= seconds <= MAX_BAN_SECONDS:
        raise ApiError(ApiCode.BAD_REQUEST, f"the body must be {wanted}")
    return seconds


@operators_only
async def put_ban(request: web.Request) -> web.Response:
    """PUT /api/rooms/{room}/bans/{name} {"seconds": S}: as a moderator's kick with S."""
    room = validate_room(request.match_info["room"])
    name = validate_name(request.match_info["name"])
    seconds = await _ban_seconds(request)
    moderation = request.app[NODE].moderation
    await moderation.kick(room, name, seconds, OPERATOR, "operator", request.remote)
    return web.Response(status=204)


@operators_only
async def delete_ban(request: web.Request) -> web.Response:
    """DELETE /api/rooms/{room}/bans/{name}: the ban is lifted (if there was one)."""
    room = validate_room(request.match_info["room"])
    name = validate_name(request.match_info["name"])
    await request.app[NODE].moderation.unban(room, name, request.remote)
    return web.Response(status=204)


@operators_only
async def delete_message(request: web.Request) -> web.Response:
    """DELETE /api/rooms/{room}/messages/{offset}: as a moderator's delete; 404 for an
    offset the room does not have."""
    room = validate_room(request.match_info["room"])
    offset = request.match_info["offset"]
    moderation = request.app[NODE].moderation
    if not await moderation.delete(room, offset, OPERATOR, "operator", request.remote):
        raise ApiError(ApiCode.NOT_FOUND, f"{room} has no message at {offset}", 404)
    return web.Response(status=204)


def add_operator_routes(app: web.Application) -> None:
    """Register the operator endpoints on `app`."""
    app.router.add_post("/api/users/{name}/disconnect", disconnect_user)
    app.router.add_put("/api/rooms/{room}/bans/{name}", put_ban)
    app.router.add_delete("/api/rooms/{room}/bans/{name}", delete_ban)
    app.router.add_delete("/api/rooms/{room}/messages/{offset}", delete_message)
