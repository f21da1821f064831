"""create_app: the aiohttp application of one node, and how it stops.

Stopping on SIGTERM is a drain: /readyz and new WebSocket upgrades answer 503 at once,
the open connections are closed with 1001 in batches spread over `--drain-seconds`
(clients reconnect to other nodes, not all in the same instant), then the process
exits. Once every connection has ended, the broker hands presence over: a user who
reconnected elsewhere within the grace period sees no leave and no join. SIGINT skips
the spreading: every connection is closed with 1001 at once, and presence is handed
over the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.broker import create_broker
from gateway.broker.base import Broker
from gateway.config import Settings
from gateway.console_api import add_console_routes
from gateway.guard import GUARD, Guard, guard_websockets
from gateway.http import add_routes, api_errors
from gateway.node import NODE, Node
from gateway.operator_api import add_operator_routes
from gateway.proxies import TRUSTED, parse_networks, real_client
from gateway.served import HANDOVERS, Handovers
from gateway.session import Session
from gateway.tasks import stop_tasks
from gateway.ws import websocket_handler

log = logging.getLogger(__name__)

SHUTDOWN_CLOSE_TIMEOUT = 5.0
DRAIN_STEP = 0.1  # seconds between two batches of closes while draining
GOING_AWAY = "node going away"
REFUSED_WHILE_STOPPING = frozenset({"/ws", "/readyz"})


class Stopping:
    """How far this node has got in stopping."""

    def __init__(self) -> None:
        self.draining = False  # /readyz and /ws answer 503
        self.drain_task: asyncio.Task[None] | None = None  # the drain a SIGTERM started
        self.shutting_down = False  # aiohttp's shutdown has begun


STOPPING = web.AppKey("stopping", Stopping)


def create_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    """A node serving /ws and the HTTP routes, on `broker` or the one `settings` name."""
    node = Node(settings, broker if broker is not None else create_broker(settings))
    app = web.Application(
        middlewares=[real_client, _refuse_while_stopping, guard_websockets, api_errors]
    )
    app[NODE] = node
    app[TRUSTED] = parse_networks(settings.trusted_proxies)
    app[STOPPING] = Stopping()
    app[GUARD] = Guard(settings, node.metrics)
    app[HANDOVERS] = Handovers()
    app.router.add_get("/ws", websocket_handler)
    add_routes(app)
    add_operator_routes(app)
    add_console_routes(app)
    app.cleanup_ctx.append(_run_node)
    app.on_startup.append(_take_over_sigterm)
    app.on_shutdown.append(_close_connections)
    return app


async def _run_node(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    await node.start()
    yield
    # Every connection has ended here (their presence exits and name releases are done).
    await node.broker.hand_over(node.settings.grace_period)
    await node.stop()


@web.middleware
async def _refuse_while_stopping(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """While the node stops, /readyz is 503 and /ws is refused before the upgrade, so a
    balancer sends new clients elsewhere; the other routes are still served."""
    if request.app[STOPPING].draining and request.path in REFUSED_WHILE_STOPPING:
        return web.Response(
            status=503, text="draining: this node is stopping\n", headers={"Retry-After": "1"}
        )
    return await handler(request)


async def drain(app: web.Application) -> None:
    """Stop taking connections and close the open ones with 1001, in batches spread
    over `--drain-seconds`; returns once they have all closed (or the wait timed out)."""
    app[STOPPING].draining = True
    node = app[NODE]
    period = node.settings.drain_seconds
    sessions = node.hub.sessions()
    log.info("draining: closing %s over %.1fs", _count(len(sessions), "connection"), period)
    loop = asyncio.get_running_loop()
    started = loop.time()
    batches = max(1, min(len(sessions), int(period / DRAIN_STEP)))
    for index in range(batches):
        await asyncio.sleep(max(0.0, started + period * index / batches - loop.time()))
        low, high = len(sessions) * index // batches, len(sessions) * (index + 1) // batches
        for session in sessions[low:high]:
            session.close(1001, GOING_AWAY)
    await _closed(sessions)
    log.info("drained in %.1fs", loop.time() - started)


async def _close_connections(app: web.Application) -> None:
    """On shutdown every connection is closed with 1001 (going away: reconnect elsewhere)."""
    stopping = app[STOPPING]
    stopping.draining = stopping.shutting_down = True
    await stop_tasks(stopping.drain_task)  # stopped mid-drain: the rest closes at once
    sessions = app[NODE].hub.sessions()
    for session in sessions:
        session.close(1001, GOING_AWAY)
    await _closed(sessions)
    # Their ends (rooms left, names freed) are done before the broker hands over.
    await app[HANDOVERS].all_ended(SHUTDOWN_CLOSE_TIMEOUT)


async def _closed(sessions: list[Session]) -> None:
    """Wait for `sessions` to finish closing, at most SHUTDOWN_CLOSE_TIMEOUT. One still
    closing then is left to aiohttp's shutdown, which cuts it: a timeout raised here
    would abort the shutdown before the hand-over and the broker's close."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SHUTDOWN_CLOSE_TIMEOUT):
            await asyncio.gather(*(s.finish() for s in sessions), return_exceptions=True)


async def _take_over_sigterm(app: web.Application) -> None:
    """Make SIGTERM a drain where `web.run_app` handles signals (the real process).

    Elsewhere (tests, a program embedding the app) nobody handles SIGTERM through the
    event loop, and it is left alone; `drain(app)` can be called directly there.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _on_sigterm, app)


def _on_sigterm(app: web.Application) -> None:
    """The first SIGTERM drains, then exits; a second one during the drain exits now."""
    stopping = app[STOPPING]
    if stopping.shutting_down:
        log.info("SIGTERM again: already stopping")
    elif stopping.drain_task is not None:
        log.info("SIGTERM again: closing what is left at once")
        _exit()
    else:
        period = app[NODE].settings.drain_seconds
        log.info("SIGTERM: not ready any more; draining over %.1fs", period)
        stopping.drain_task = asyncio.get_running_loop().create_task(drain(app), name="drain")
        stopping.drain_task.add_done_callback(_exit_after_drain)


def _exit_after_drain(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return  # the shutdown is already under way
    if task.exception() is not None:
        log.error("the drain failed; stopping now", exc_info=task.exception())
    asyncio.get_running_loop().call_soon(_exit)


def _exit() -> None:
    """Leave `web.run_app`'s loop the way its own signal handler does (a clean shutdown)."""
    raise web.GracefulExit()


def _count(number: int, noun: str) -> str:
    """`1 connection`, `2 connections`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
