"""The HTTP side: the page, health, readiness, metrics and the REST API."""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from enum import StrEnum
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.access import EVERY_ROOM, Rooms
from gateway.auth import authenticate
from gateway.credentials import bearer
from gateway.errors import BrokerUnavailable, ErrorCode, NotReplicated, ProtocolError
from gateway.names import parse_count, validate_name, validate_room, validate_text
from gateway.node import NODE

MAX_API_LIMIT = 100
MAX_BODY_DEPTH = 1024  # orjson's nesting limit: deeper is a clean JSONDecodeError

log = logging.getLogger(__name__)


class ApiCode(StrEnum):
    """The REST API's own error codes, for what only an HTTP request can get wrong
    (docs/protocol.md, "REST errors"); the rest are the protocol's (gateway/errors.py)."""

    BAD_REQUEST = "bad_request"  # a body or query parameter of the wrong shape
    BAD_JSON = "bad_json"  # a body that is not JSON in UTF-8, or nested too deep
    NOT_FOUND = "not_found"  # what the path names is not there


class ApiError(Exception):
    """A REST request that cannot be answered: `{"error": {"code", "message"}}` with
    `status` (the api_errors middleware writes it)."""

    def __init__(self, code: ApiCode, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def json_response(data: Any, status: int = 200) -> web.Response:
    """`data` as a JSON answer (non-ASCII as is)."""
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def error_response(status: int, code: str, message: str) -> web.Response:
    """An API error: `{"error": {"code": ..., "message": ...}}` with `status`."""
    return json_response({"error": {"code": code, "message": message}}, status)


class ReadsThrottled(Exception):
    """A client address over its REST read rate; it may read again in `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.3f}s")
        self.retry_after = retry_after


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Protocol errors, a throttled reader and an unavailable broker as JSON answers,
    for the API routes."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.code, error.message)
    except ReadsThrottled as throttled:
        response = error_response(
            429, ErrorCode.RATE_LIMITED, "too many requests from your address: slow down"
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(throttled.retry_after)))
        return response
    except ProtocolError as error:
        if error.code is ErrorCode.UNAUTHORIZED:
            log.warning("refused %s %s from %s: %r", request.method, request.rel_url.raw_path,
                        request.remote, error.message)  # fmt: skip
            return error_response(401, error.code, error.message)
        if error.code is ErrorCode.FORBIDDEN:
            return error_response(403, error.code, error.message)
        if error.code is ErrorCode.BAD_FRAME:  # a text the protocol refuses, over REST
            return error_response(400, ApiCode.BAD_REQUEST, error.message)
        return error_response(400, error.code, error.message)
    except NotReplicated as exc:
        return error_response(503, ErrorCode.UNAVAILABLE, f"{exc}: send it again")
    except BrokerUnavailable:
        return error_response(503, ErrorCode.UNAVAILABLE, "the chat backend is unavailable")


# The page's files: gateway/static/NAME, served as /static/NAME with these types.
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Every answer of the page and its files: only our own scripts and styles run (no inline
# code, so a message that slips into the DOM as HTML still runs nothing), WebSockets
# (`ws:`/`wss:`: browsers before CSP 3 do not count a same-host WebSocket as 'self'),
# never inside a frame, and no content-type guessing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _static_file(name: str, content_type: str) -> web.Response:
    file = resources.files("gateway").joinpath(f"static/{name}")
    if not file.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=file.read_bytes(), headers={"Content-Type": content_type, **PAGE_HEADERS}
    )


def static_page(name: str) -> web.Response:
    """The HTML page gateway/static/NAME, with the page headers (the strict CSP)."""
    return _static_file(name, "text/html; charset=utf-8")


async def index(request: web.Request) -> web.Response:
    """The web chat page; its script and style come from /static/."""
    return static_page("index.html")


async def static_file(request: web.Request) -> web.Response:
    """One file of the page, by name (the route admits no path, so no traversal)."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(name[name.rfind(".") :])
    if content_type is None:
        raise web.HTTPNotFound()
    return _static_file(name, content_type)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 while the node can chat (naming what does not work, if anything), else 503
    saying why ("not ready: Redis unreachable"). With `--events-url` it tells the events
    feed's state too, which never makes the node unready (the application being away is
    not the node's fault). JSON when the request accepts application/json."""
    node = request.app[NODE]
    broker = node.broker
    ready = broker.is_ready()
    reason = "" if ready else broker.unready_reason()
    degraded = broker.degraded() if ready else None
    events = node.feed.status() if node.feed is not None else None
    status = 200 if ready else 503
    if "application/json" in request.headers.get("Accept", ""):
        body = {"ready": ready, "reason": reason or None, "degraded": degraded, "events": events}
        return json_response(body, status)
    if not ready:
        text = f"not ready: {reason}\n" if reason else "not ready\n"
    else:
        text = f"ready, degraded: {degraded}\n" if degraded else "ready\n"
    if events is not None:
        text += _events_line(events)
    return web.Response(text=text, status=status)


def _events_line(events: dict[str, Any]) -> str:
    """The feed's state as one line of /readyz's text."""
    held = events["partitions"]
    line = f"events: {len(held)} partitions held, {events['backlog']} waiting"
    if events["oldest_age"]:
        line += f", oldest {events['oldest_age']:.1f}s"
    failure = events["last_failure"]
    if failure is not None:
        line += f"; last failure {failure['seconds_ago']:.0f}s ago: {failure['error']}"
    return line + "\n"


async def metrics(request: web.Request) -> web.Response:
    body = request.app[NODE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def _is_api_key(given: str | None, key: str | None) -> bool:
    """Whether `given` is the configured API key (compared in constant time)."""
    if given is None or not key:
        return False
    return hmac.compare_digest(given.encode(), key.encode())


def _authorize_read(request: web.Request) -> Rooms:
    """With auth on (`--jwt-secret`) the REST reads want what /ws wants: a valid token
    (any user's) as `Authorization: Bearer`, or the API key; with a connect hook and no
    JWT secret, the API key alone. Raises unauthorized. The rooms the caller may read:
    those of the token, every room for the API key.

    Every read but the API key's (with auth off they need no credentials) spends one of
    its address's `--api-read-rate` tokens: ReadsThrottled (429) when none is left."""
    node = request.app[NODE]
    settings = node.settings
    given = bearer(request)
    if _is_api_key(given, settings.api_key):
        return EVERY_ROOM
    readable = EVERY_ROOM
    if settings.jwt_secret is not None:
        readable = authenticate(settings.jwt_secret, given, None, settings.jwt_leeway).rooms
    elif settings.connect_hook_url is not None:
        # The application decides who may read what, per connection: no credential of
        # a REST read can be put to it, so only its own key reads.
        raise ProtocolError(
            ErrorCode.UNAUTHORIZED,
            "with the connect hook deciding who is who, the REST reads need the API key "
            "(Authorization: Bearer)",
        )
    wait = node.api_reads.take(request.remote or "")
    if wait:
        node.metrics.rate_limited.labels(limit="api_read").inc()
        raise ReadsThrottled(wait)
    return readable


async def list_rooms(request: web.Request) -> web.Response:
    """GET /api/rooms: the rooms with anyone present (gateway/room_directory.py)."""
    listing = await request.app[NODE].room_directory.listing(_authorize_read(request))
    rooms = [{"room": room, "members": count} for room, count in listing.rooms]
    return json_response({"rooms": rooms, "total": listing.total})


async def list_members(request: web.Request) -> web.Response:
    readable = _authorize_read(request)
    room = validate_room(request.match_info["room"])
    readable.check(room, "read")
    members = await request.app[NODE].broker.members(room)
    return json_response({"room": room, "members": members})


async def list_messages(request: web.Request) -> web.Response:
    readable = _authorize_read(request)
    room = validate_room(request.match_info["room"])
    readable.check(room, "read")
    raw_limit = request.query.get("limit", "50")
    limit = parse_count(raw_limit, 1, MAX_API_LIMIT)
    if limit is None:
        raise ApiError(ApiCode.BAD_REQUEST, f"limit must be 1 to {MAX_API_LIMIT}")
    before = request.query.get("before") or None
    messages = await request.app[NODE].broker.history(room, before, limit)
    return json_response({"room": room, "messages": [m.wire() for m in messages]})


async def json_body(request: web.Request) -> Any:
    """The request's body, parsed as JSON; `bad_json` (400) for anything else, nested
    deeper than MAX_BODY_DEPTH included. orjson has no recursion to exhaust: the
    standard library's parser raised RecursionError on deep nesting, a 500."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError(
            ApiCode.BAD_JSON,
            f"the body must be JSON in UTF-8, nested at most {MAX_BODY_DEPTH} deep",
        ) from None


def api_key_refusal(request: web.Request, given: str | None, what: str) -> web.Response | None:
    """The answer to a request for `what` (an endpoint that wants the API key) that does
    not show it as `given`: 403 while no key is set, 401 (logged) for none or a wrong
    one; None when it is the key."""
    key = request.app[NODE].settings.api_key
    if not key:
        return error_response(403, ErrorCode.UNAUTHORIZED, f"{what} is off: start with --api-key")
    if not _is_api_key(given, key):
        log.warning("refused %s %s from %s: no or wrong API key", request.method,
                    request.rel_url.raw_path, request.remote)  # fmt: skip
        message = "send the API key as Authorization: Bearer"
        return error_response(401, ErrorCode.UNAUTHORIZED, message)
    return None


async def post_message(request: web.Request) -> web.Response:
    node = request.app[NODE]
    refused = api_key_refusal(request, bearer(request), "publishing")
    if refused is not None:
        return refused
    room = validate_room(request.match_info["room"])
    body = await json_body(request)
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("from", "text")
    ):
        raise ApiError(ApiCode.BAD_REQUEST, 'the body must be {"from": ..., "text": ...}')
    sender = validate_name(body["from"])
    text = validate_text(body["text"], node.settings.max_message_chars)
    published = await node.broker.publish(room, sender, text, origin=f"api@{time.time_ns()}")
    return json_response({"room": room, "offset": published.offset}, 201)


def add_routes(app: web.Application) -> None:
    """Register every HTTP route on `app`."""
    app.router.add_get("/", index)
    app.router.add_get(r"/static/{name:[A-Za-z0-9_-]+\.[a-z]+}", static_file)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/rooms", list_rooms)
    app.router.add_get("/api/rooms/{room}/members", list_members)
    app.router.add_get("/api/rooms/{room}/messages", list_messages)
    app.router.add_post("/api/rooms/{room}/messages", post_message)
