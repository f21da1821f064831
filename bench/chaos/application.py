"""The campaign's application: every node's `--events-url`, recording each event.

It is bench/backend_peer.py's application (`--record`), served in the campaign's own
process on 127.0.0.1, so that what it received is read directly: each event with the
time it arrived, on the history's clock. The nemesis makes it misbehave for spells
(`refuse`: 503 to every batch; `stall`: each batch kept but answered past the gateway's
timeout, so that the gateway posts it again). At the end the campaign waits (bounded,
`drained`) until the nodes hold nothing more for it before the checker reads it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from bench.backend_peer import Recording, make_app
from bench.chaos.history import Delivered, History
from bench.chaos.system import System
from gateway.broker.event_log import PARTITIONS
from gateway.feed_delivery import POST_TIMEOUT

DRAIN_TIMEOUT = 90.0  # seconds the end waits for the events to drain (backoff is 30 s)
DRAIN_QUIET = 3.0  # ... and for nothing new to arrive, once no node says any wait
STALL = POST_TIMEOUT + 1.0  # seconds a stalled batch waits for its 200: past the timeout


class Application:
    """The application the nodes post their events to (see the module)."""

    def __init__(self) -> None:
        self.secret = secrets.token_urlsafe(32)
        self.recording = Recording()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def node_env(self) -> dict[str, str]:
        """The settings that make a node post its events here."""
        return {"CHAT_EVENTS_URL": self.url, "CHAT_BACKEND_SECRET": self.secret}

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        runner = web.AppRunner(
            make_app(self.secret, self.recording), handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def refuse(self, seconds: float) -> None:
        """Answer 503 to every batch for `seconds`."""
        self.recording.refuse(seconds)

    def stall(self, seconds: float) -> None:
        """For `seconds`, keep every batch but answer it only past the gateway's timeout."""
        self.recording.stall_for(seconds, STALL)

    def heal(self) -> None:
        self.recording.heal()

    def deliveries(self, history: History) -> list[Delivered]:
        """Every event received so far, with its arrival on `history`'s clock."""
        return [Delivered(t - history.started, event) for t, event in self.recording.events]

    async def drained(self, system: System) -> str | None:
        """Wait (bounded) until the nodes hold every partition between them, none says
        an event waits, and nothing new arrived for a while; None then, else what was
        still waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT
        seen, quiet_since = len(self.recording.events), loop.time()
        while True:
            states = [
                await asyncio.to_thread(system.events, index) for index in range(len(system.nodes))
            ]
            waiting = _waiting(states)
            if len(self.recording.events) != seen:
                seen, quiet_since = len(self.recording.events), loop.time()
            if waiting is None and loop.time() - quiet_since >= DRAIN_QUIET:
                return None
            if loop.time() > deadline:
                return waiting or "events still arriving"
            await asyncio.sleep(0.5)


def _waiting(states: list[dict[str, Any] | None]) -> str | None:
    """What the nodes' feeds say still waits (None: nothing, every partition held)."""
    held: set[int] = set()
    backlog = 0
    for state in states:
        if state is None:
            return "a node does not answer /readyz"
        held.update(state.get("partitions") or [])
        backlog += int(state.get("backlog") or 0)
    if len(held) < PARTITIONS:
        return f"{PARTITIONS - len(held)} partitions held by no node"
    return f"{backlog} events waiting" if backlog else None
