"""The HTTP side: the page, health, readiness, metrics and the REST API."""

from __future__ import annotations

import hmac
import json
import time
from importlib import resources
from typing import Any

from aiohttp import web

from gateway.errors import BrokerUnavailable, ErrorCode, ProtocolError
from gateway.names import validate_name, validate_room, validate_text
from gateway.ws import NODE

MAX_API_LIMIT = 100


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Protocol errors and an unavailable broker as JSON answers, for the API routes."""
    try:
        return await handler(request)
    except ProtocolError as error:
        return _error(400, error.code, error.message)
    except BrokerUnavailable:
        return _error(503, ErrorCode.UNAVAILABLE, "the chat backend is unavailable")


async def index(request: web.Request) -> web.Response:
    page = resources.files("gateway").joinpath("static/index.html").read_text("utf-8")
    return web.Response(text=page, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[NODE].broker.is_ready()
    return web.Response(text="ready\n" if ready else "not ready\n", status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[NODE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def list_rooms(request: web.Request) -> web.Response:
    rooms = await request.app[NODE].broker.rooms()
    return _json({"rooms": [{"room": room, "members": count} for room, count in rooms]})


async def list_members(request: web.Request) -> web.Response:
    room = validate_room(request.match_info["room"])
    members = await request.app[NODE].broker.members(room)
    return _json({"room": room, "members": members})


async def list_messages(request: web.Request) -> web.Response:
    room = validate_room(request.match_info["room"])
    raw_limit = request.query.get("limit", "50")
    if not raw_limit.isdecimal() or not 1 <= int(raw_limit) <= MAX_API_LIMIT:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"limit must be 1 to {MAX_API_LIMIT}")
    before = request.query.get("before") or None
    messages = await request.app[NODE].broker.history(room, before, int(raw_limit))
    return _json({"room": room, "messages": [m.wire() for m in messages]})


async def post_message(request: web.Request) -> web.Response:
    node = request.app[NODE]
    key = node.settings.api_key
    if not key:
        return _error(403, ErrorCode.UNAUTHORIZED, "publishing is off: start with --api-key")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        return _error(401, ErrorCode.UNAUTHORIZED, "send the API key as Authorization: Bearer")
    room = validate_room(request.match_info["room"])
    try:
        body = await request.json()
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "the body must be JSON") from None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("from", "text")
    ):
        raise ProtocolError(ErrorCode.BAD_FRAME, 'the body must be {"from": ..., "text": ...}')
    sender = validate_name(body["from"])
    text = validate_text(body["text"], node.settings.max_message_chars)
    published = await node.broker.publish(room, sender, text, origin=f"api@{time.time_ns()}")
    return _json({"room": room, "offset": published.offset}, 201)


def add_routes(app: web.Application) -> None:
    """Register every HTTP route on `app`."""
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_get("/api/rooms/{room}/members", list_members)
    app.router.add_get("/api/rooms/{room}/messages", list_messages)
    app.router.add_post("/api/rooms/{room}/messages", post_message)
