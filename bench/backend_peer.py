"""The application's backend for the bench: hooks answered at once, events counted.

    python -m bench.backend_peer --port P --secret S [--record]

Every hook says yes (connect: the name asked for; join: 200; publish: `{}`), after
checking the signature like a real application would. Events are counted and their
lag (the event's `ts` to its arrival) kept; `GET /stats` returns the counts and the
lag's percentiles, which bench/run.py reads before it stops the cluster.

With `--record` (the fault campaign, bench/chaos/, serves it in its own process) it also
keeps every event it accepted, with the time it arrived (`GET /received?after=N`), and
can misbehave for a spell, as an application does (`Recording.refuse`, `.stall_for`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.backend_http import verify

SECRET = web.AppKey("secret", str)
LAGS = web.AppKey("lags", list[float])
COUNTS = web.AppKey("counts", dict[str, int])


@dataclass
class Recording:
    """Every event the application accepted, and how it answers for now.

    `events` holds (arrival, event) pairs, arrival on the monotonic clock, in the order
    the events came. Until `refused_until` every batch is answered 503 and not kept;
    until `stalled_until` every batch is kept, then answered 200 only after `stall`
    seconds (past the gateway's timeout: it stored them, the gateway never heard)."""

    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    refused_until: float = 0.0
    stalled_until: float = 0.0
    stall: float = 0.0

    def refuse(self, seconds: float) -> None:
        """Answer 503 to every batch for `seconds` from now."""
        self.refused_until = time.monotonic() + seconds

    def stall_for(self, seconds: float, each: float) -> None:
        """For `seconds` from now, keep each batch but answer it `each` seconds late."""
        self.stalled_until, self.stall = time.monotonic() + seconds, each

    def heal(self) -> None:
        """Answer at once again."""
        self.refused_until = self.stalled_until = 0.0


RECORDING = web.AppKey("recording", Recording)


def _count(request: web.Request, what: str) -> None:
    counts: dict[str, int] = request.app[COUNTS]
    counts[what] = counts.get(what, 0) + 1


async def _checked(request: web.Request) -> Any:
    body = await request.read()
    if not verify(request.app[SECRET], request.headers, body):
        raise web.HTTPUnauthorized(text="bad signature")
    return orjson.loads(body)


async def connect_hook(request: web.Request) -> web.Response:
    asked = await _checked(request)
    _count(request, "connect")
    return web.json_response({"name": asked.get("name") or "anonymous"})


async def join_hook(request: web.Request) -> web.Response:
    await _checked(request)
    _count(request, "join")
    return web.json_response({})


async def publish_hook(request: web.Request) -> web.Response:
    await _checked(request)
    _count(request, "publish")
    return web.json_response({})


async def events(request: web.Request) -> web.Response:
    batch = await _checked(request)
    recording = request.app.get(RECORDING)
    if recording is not None:
        arrived = time.monotonic()
        if arrived < recording.refused_until:
            _count(request, "refused")
            return web.json_response({}, status=503)
        recording.events.extend((arrived, event) for event in batch["events"])
        if arrived < recording.stalled_until:
            _count(request, "stalled")
            await asyncio.sleep(recording.stall)
    now = time.time() * 1000
    lags: list[float] = request.app[LAGS]
    for event in batch["events"]:
        lags.append(now - event["ts"])
    _count(request, "batches")
    request.app[COUNTS]["events"] = request.app[COUNTS].get("events", 0) + len(batch["events"])
    return web.json_response({})


async def stats(request: web.Request) -> web.Response:
    """Counts and the events' lag in ms (p50, p99, max) since the last reset."""
    held: list[float] = request.app[LAGS]
    lags = sorted(held)
    counts: dict[str, int] = request.app[COUNTS]
    figures: dict[str, Any] = dict(counts)
    if len(lags) >= 2:
        cuts = statistics.quantiles(lags, n=100)
        figures.update(lag_p50_ms=cuts[49], lag_p99_ms=cuts[98], lag_max_ms=lags[-1])
    return web.json_response(figures)


async def received(request: web.Request) -> web.Response:
    """The events recorded from the `after`-th on (`--record`), each with its arrival
    (monotonic seconds), and the index to ask from next."""
    events = request.app[RECORDING].events
    after = int(request.query.get("after", "0"))
    body = [{"t": t, "event": event} for t, event in events[after:]]
    return web.json_response({"events": body, "next": len(events)})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(secret: str, recording: Recording | None = None) -> web.Application:
    """The backend's routes, checking signatures with `secret`; with `recording`, the
    events are kept there too (and it says how to answer)."""
    app = web.Application()
    app[SECRET], app[LAGS], app[COUNTS] = secret, [], {}
    if recording is not None:
        app[RECORDING] = recording
        app.router.add_get("/received", received)
    app.router.add_post("/connect", connect_hook)
    app.router.add_post("/join", join_hook)
    app.router.add_post("/publish", publish_hook)
    app.router.add_post("/events", events)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    return app


VARIANTS = {
    # bench.run's broker variants: "+hooks" asks the application at every connect, join
    # and send; "+events" posts it every event.
    "+hooks": ("connect", "join", "publish"),
    "+events": ("events",),
}


@contextlib.contextmanager
def backend_for(broker: str, cores: tuple[int, ...] | None) -> Iterator[tuple[str, ...]]:
    """For a broker variant with "+hooks" or "+events": this application, running as a
    process of its own (on `cores`) while the block runs; yields the gateway's flags
    pointing at it (none for a plain variant)."""
    from bench.cluster import managed, wait_ready
    from tooling.ports import free_port

    wanted = [name for suffix, names in VARIANTS.items() if suffix in broker for name in names]
    if not wanted:
        yield ()
        return
    port, secret = free_port(), secrets.token_urlsafe(32)
    argv = [sys.executable, "-m", "bench.backend_peer", "--port", str(port), "--secret", secret]
    app = managed("backend", argv, cores)
    try:
        wait_ready(app, f"http://127.0.0.1:{port}/healthz", port)
        flags = ["--backend-secret", secret]
        for name in wanted:
            flag = "--events-url" if name == "events" else f"--{name}-hook-url"
            flags += [flag, f"http://127.0.0.1:{port}/{name}"]
        yield tuple(flags)
    finally:
        app.close()


def backend_stats(flags: tuple[str, ...]) -> dict[str, Any]:
    """The application's counts and events lag, read from the flags' own address."""
    urls = [flag for flag in flags if flag.startswith("http://")]
    if not urls:
        return {}
    base = urls[0].rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/stats", timeout=5) as answer:
        return dict(json.loads(answer.read()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.backend_peer", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", action="store_true", help="keep every event: /received")
    args = parser.parse_args(argv)
    app = make_app(args.secret, Recording() if args.record else None)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
