"""The operator's console: the page /admin and the cluster-wide reads it shows
(docs/protocol.md, "The operator API"). Each read wants the API key, as the operator
actions do (gateway/operator_api.py); the page itself is public (it holds nothing: the
key is typed into it and kept in the tab)."""

from __future__ import annotations

from aiohttp import web

from gateway.access import EVERY_ROOM
from gateway.broker.base import AUDIT_KEPT
from gateway.http import ApiCode, ApiError, json_response, static_page
from gateway.names import parse_count, validate_name
from gateway.node import NODE
from gateway.operator_api import operators_only

DEFAULT_AUDIT = 50


async def admin_page(request: web.Request) -> web.Response:
    """GET /admin: the console's page; its script and style come from /static/."""
    return static_page("admin.html")


@operators_only
async def list_nodes(request: web.Request) -> web.Response:
    """GET /api/nodes: every live node's last status (gateway/node_status.py)."""
    return json_response({"nodes": await request.app[NODE].broker.nodes()})


@operators_only
async def find_user(request: web.Request) -> web.Response:
    """GET /api/users/{name}: the name's connections, their nodes, and its rooms."""
    name = validate_name(request.match_info["name"])
    places = await request.app[NODE].broker.user(name)
    connections = [{"connection": ref, "node": node} for ref, node in places.connections]
    return json_response(
        {
            "name": places.name,
            "online": bool(connections),
            "connections": connections,
            "nodes": sorted({node for _, node in places.connections}),
            "rooms": places.rooms,
        }
    )


@operators_only
async def list_audit(request: web.Request) -> web.Response:
    """GET /api/audit?limit=N: the newest moderation actions, newest first."""
    limit = parse_count(request.query.get("limit", str(DEFAULT_AUDIT)), 1, AUDIT_KEPT)
    if limit is None:
        raise ApiError(ApiCode.BAD_REQUEST, f"limit must be 1 to {AUDIT_KEPT}")
    return json_response({"actions": await request.app[NODE].broker.audit(limit)})


@operators_only
async def room_activity(request: web.Request) -> web.Response:
    """GET /api/activity: the rooms with anyone present, their members and their
    messages of the last minute (gateway/room_activity.py)."""
    node = request.app[NODE]
    listing = await node.room_directory.listing(EVERY_ROOM)
    names = [room for room, _ in listing.rooms]
    counts = await node.broker.room_counts(names)
    activity = node.room_activity.sample(dict(zip(names, counts, strict=True)))
    rooms = [
        {
            "room": room,
            "members": members,
            "messages": activity[room].messages,
            "seconds": activity[room].seconds,
        }
        for room, members in listing.rooms
    ]
    return json_response({"rooms": rooms, "total": listing.total})


def add_console_routes(app: web.Application) -> None:
    """Register the console's page and reads on `app`."""
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/api/nodes", list_nodes)
    app.router.add_get("/api/users/{name}", find_user)
    app.router.add_get("/api/audit", list_audit)
    app.router.add_get("/api/activity", room_activity)
