"""Serve the app on its listening socket, with gateway/admission.py in front of aiohttp.

What aiohttp's `web.run_app` does, less what the node does not use (sites, banners),
plus the one thing it cannot do: put a protocol of our own in front of aiohttp's
request handler on every accepted connection. Signals are aiohttp's (`GracefulExit`
on SIGINT and SIGTERM, which gateway/app.py takes over for a drain), and so is the
shutdown: the listener closes, then the runner's cleanup closes the connections, runs
the app's shutdown and cleanup, and what is left of the loop's tasks is cancelled. Once
the app has started, start-up's objects are frozen, young collections spaced, and every
collection's pause measured (gateway/collector.py) until the node stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.admission import Admission
from gateway.collector import CollectionPauses
from gateway.config import Settings
from gateway.head import MAX_HEADER_LINES
from gateway.node import NODE
from gateway.proxies import TRUSTED
from gateway.server_log import RequestErrorLog

log = logging.getLogger(__name__)

DEFAULT_KEEPALIVE = 75.0  # aiohttp's own, kept while --header-timeout is 0 (off)
# Net allocations between two young-generation collections: CPython's 700, times 10.
# A connection leaves about 200 objects alive (its request, protocol, session...): at
# 700 a burst of handshakes set off a young collection every few connections, a middle
# one every few dozen, and a full one (the costly walk) every few hundred.
YOUNG_COLLECTION_THRESHOLD = 7000


def run(
    app: web.Application,
    settings: Settings,
    sock: socket.socket,
    *,
    loop: asyncio.AbstractEventLoop,
    backlog: int,
    on_listening: Callable[[], None],
    **runner_args: Any,
) -> None:
    """Serve `app` (a node made with `settings`) on the bound `sock` until SIGINT or
    SIGTERM; listen once the app has started. `runner_args` go to `web.AppRunner`."""
    admission = Admission(settings, app[NODE].metrics, app[TRUSTED])
    runner_args.update(
        keepalive_timeout=settings.header_timeout or DEFAULT_KEEPALIVE,
        logger=RequestErrorLog(logging.getLogger("aiohttp.server"), admission.bad_request),
        # aiohttp's own bounds, behind the gate's (which reads only a first head)
        max_line_size=settings.max_header_bytes,
        max_field_size=settings.max_header_bytes,
        max_headers=MAX_HEADER_LINES,
    )
    main = loop.create_task(_serve(app, sock, admission, backlog, on_listening, runner_args))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel(asyncio.all_tasks(loop), loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(
    app: web.Application,
    sock: socket.socket,
    admission: Admission,
    backlog: int,
    on_listening: Callable[[], None],
    runner_args: dict[str, Any],
) -> None:
    runner = web.AppRunner(app, handle_signals=True, **runner_args)
    await runner.setup()  # the app's startup: the node is ready to serve when it returns
    freeze_startup_objects()
    space_collections()
    collector = CollectionPauses(app[NODE].metrics.gc_pauses)
    collector.start()
    try:
        server = runner.server
        assert server is not None
        # Here, not in create_server: uvloop's create_server ignores a failed listen.
        sock.listen(backlog)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(admission.serve(server), sock=sock, backlog=backlog)
        on_listening()
        try:
            await loop.create_future()  # until cancelled: a signal, or GracefulExit
        finally:
            listener.close()
    finally:
        collector.stop()
        await runner.cleanup()
        admission.close()


def freeze_startup_objects() -> None:
    """Move what start-up made (modules, the app, the broker) out of the cyclic garbage
    collector's sight, once its garbage is collected.

    Those objects live as long as the process, yet each full collection walked them all
    again, and the allocations of a burst of connections set off collection after
    collection. Only the walk is saved: nothing frozen was garbage.
    """
    gc.collect()
    gc.freeze()
    log.debug("froze %d start-up objects out of the collector's walks", gc.get_freeze_count())


def space_collections() -> None:
    """Collect the young generation every YOUNG_COLLECTION_THRESHOLD net allocations
    rather than every 700; the older generations keep their ratios (10 and 10).

    Cyclic garbage waits a little longer to be freed (thousands of objects, not
    hundreds); objects freed by their reference counts, nearly all, are freed at once
    as before.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
    log.debug("garbage collection thresholds: %s", gc.get_threshold())


def _cancel(tasks: set[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left of the loop's tasks and wait for them (as asyncio.run does)."""
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception on shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
