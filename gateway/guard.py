"""Admission to /ws: who may open a WebSocket here, checked before the upgrade.

One `Guard` per app (`app[GUARD]`); nothing is kept at module level. Its middleware
refuses an `Origin` not in `--allowed-origins` (when the list is set) with 403, so a
page on another site cannot open a WebSocket with a visitor's browser and cookies
(cross-site WebSocket hijacking). A request without `Origin` is not a browser's and
passes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.config import Settings

log = logging.getLogger(__name__)

GUARDED_PATH = "/ws"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_origins(raw: str) -> frozenset[str]:
    """The comma-separated `--allowed-origins`, normalized; empty: no check."""
    return frozenset(_normal(part) for part in raw.split(",") if part.strip())


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class Guard:
    """What a node admits to /ws."""

    def __init__(self, settings: Settings) -> None:
        self.allowed_origins = parse_origins(settings.allowed_origins)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Why `request` may not open a WebSocket now, as the response; None: admitted."""
        origin = request.headers.get("Origin")
        allowed = self.allowed_origins
        if allowed and origin is not None and _normal(origin) not in allowed:
            log.warning("refused /ws from %s: origin %r not allowed", request.remote, origin)
            return web.Response(status=403, text="origin not allowed\n")
        return None


GUARD = web.AppKey("guard", Guard)


@web.middleware
async def guard_websockets(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a /ws request the guard does not admit, before the upgrade."""
    if request.path != GUARDED_PATH:
        return await handler(request)
    refused = request.app[GUARD].refusal(request)
    if refused is not None:
        return refused
    return await handler(request)
