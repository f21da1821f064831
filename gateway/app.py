"""create_app: the aiohttp application of one node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.broker import create_broker
from gateway.broker.base import Broker
from gateway.config import Settings
from gateway.http import add_routes, api_errors
from gateway.node import Node
from gateway.ws import NODE, websocket_handler

SHUTDOWN_CLOSE_TIMEOUT = 5.0


def create_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    """A node serving /ws and the HTTP routes, on `broker` or the one `settings` name."""
    node = Node(settings, broker if broker is not None else create_broker(settings))
    app = web.Application(middlewares=[api_errors])
    app[NODE] = node
    app.router.add_get("/ws", websocket_handler)
    add_routes(app)
    app.cleanup_ctx.append(_run_node)
    app.on_shutdown.append(_close_connections)
    return app


async def _run_node(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    await node.start()
    yield
    await node.stop()


async def _close_connections(app: web.Application) -> None:
    """On shutdown every connection is closed with 1001 (going away: reconnect elsewhere)."""
    sessions = app[NODE].hub.sessions()
    for session in sessions:
        session.close(1001, "node going away")
    async with asyncio.timeout(SHUTDOWN_CLOSE_TIMEOUT):
        await asyncio.gather(*(s.finish() for s in sessions), return_exceptions=True)
