"""Admission to /ws: who may open a WebSocket here, checked before the upgrade.

One `Guard` per app (`app[GUARD]`) holds the open-connection counts; nothing is kept
at module level. Its middleware refuses, in this order:

- an `Origin` not in `--allowed-origins` (when the list is set): 403, so a page on
  another site cannot open a WebSocket with a visitor's browser and cookies (cross-site
  WebSocket hijacking). A request without `Origin` is not a browser's and passes;
- a request over `--max-connections` on this node: 503 (another node may take it);
- a request over `--max-connections-per-ip` from one `request.remote`: 429. Behind a
  trusted proxy that is the client's address, not the proxy's (gateway/proxies.py sets
  it before this middleware runs).

Before any of this, gateway/admission.py has counted the request's TCP connection from
its accept, against the same caps by the peer's address (a trusted proxy's only toward
the node's), so that unfinished requests are bounded too; here the count is of
WebSockets, by the client's address.

After the upgrade, `name_deadline` bounds how long a text-mode connection may take to
give a valid name (`--name-timeout`): one that never answers "Your name:" would
otherwise hold a connection slot for ever.

An admitted request is counted until its handler returns, or, when the handler hands
its WebSocket over to gateway/link.py, until that connection ends (`Hold`). Checking
and counting happen with no await in between, so handshakes arriving together cannot
all slip under a limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.config import Settings
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

GUARDED_PATH = "/ws"
NAME_TIMEOUT_REASON = "no name given in time"  # also the text-mode last line, after `! `
RETRY = {"Retry-After": "1"}


def name_deadline(settings: Settings) -> float | None:
    """The loop time by which a connection must have a name; None: no limit."""
    if not settings.name_timeout:
        return None
    return asyncio.get_running_loop().time() + settings.name_timeout


def parse_origins(raw: str) -> frozenset[str]:
    """The comma-separated `--allowed-origins`, normalized; empty: no check."""
    return frozenset(_normal(part) for part in raw.split(",") if part.strip())


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class Guard:
    """What a node admits to /ws."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._metrics = metrics
        self.allowed_origins = parse_origins(settings.allowed_origins)
        self.max_connections = settings.max_connections
        self.max_per_ip = settings.max_connections_per_ip
        self.total = 0  # /ws requests admitted and not yet ended
        self.per_ip: dict[str, int] = {}  # the same, by request.remote (no zero entries)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Why `request` may not open a WebSocket now, as the response; None: admitted.

        Each refusal is logged and counted in `chat_handshakes_refused{reason}`.
        """
        origin = request.headers.get("Origin")
        allowed = self.allowed_origins
        if allowed and origin is not None and _normal(origin) not in allowed:
            return self._refuse(
                "origin", f"origin {origin!r} not allowed", request, 403, "origin not allowed"
            )
        if self.max_connections and self.total >= self.max_connections:
            return self._refuse(
                "full", f"{self.total} connections open", request, 503, "this node is full"
            )
        ip = _address(request)
        if self.max_per_ip and self.per_ip.get(ip, 0) >= self.max_per_ip:
            return self._refuse(
                "per_ip",
                f"{self.per_ip[ip]} connections open from it",
                request,
                429,
                "too many connections from your address",
            )
        return None

    def _refuse(
        self, reason: str, why: str, request: web.Request, status: int, text: str
    ) -> web.Response:
        log.warning("refused /ws from %s: %s", request.remote, why)
        self._metrics.handshakes_refused.labels(reason=reason).inc()
        headers = RETRY if status != 403 else None
        return web.Response(status=status, text=text + "\n", headers=headers)

    def enter(self, request: web.Request) -> None:
        """Count an admitted request until `leave`."""
        self.total += 1
        ip = _address(request)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def leave(self, ip: str) -> None:
        """Stop counting a request from `ip` that `enter` counted."""
        self.total -= 1
        left = self.per_ip[ip] - 1
        if left:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]  # an address gone is forgotten: the map stays bounded


def _address(request: web.Request) -> str:
    return request.remote or ""


class Hold:
    """A count a request holds while its handler runs, released once: when the handler
    returns, or, taken over (`take`) by a handler whose connection outlives it, when
    that connection ends."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Release the count, unless it was taken over or released already."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def take(self) -> Callable[[], None]:
        """Take the release over: it happens when the returned callable is called."""
        release, self._release = self._release, None
        return release if release is not None else _nothing


def _nothing() -> None:
    return None


GUARD = web.AppKey("guard", Guard)
# The counts a request holds (the node's, from its TCP accept; the guard's, from its
# admission to /ws), for a handler to take over.
HOLDS = web.RequestKey("holds", list[Hold])


@web.middleware
async def guard_websockets(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a /ws request the guard does not admit, before the upgrade; count an
    admitted one while it runs."""
    if request.path != GUARDED_PATH:
        return await handler(request)
    guard = request.app[GUARD]
    refused = guard.refusal(request)
    if refused is not None:
        return refused
    guard.enter(request)
    hold = Hold(partial(guard.leave, _address(request)))
    request.setdefault(HOLDS, []).append(hold)
    try:
        return await handler(request)
    finally:
        hold.release()
