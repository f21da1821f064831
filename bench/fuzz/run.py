"""One fuzz run against one node: watching it, and opening connections to it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable

import aiohttp

from bench.fuzz.config import JSON_PROTOCOL, STEP, FuzzConfig, Outcome
from bench.fuzz.connections import Fuzzed
from bench.fuzz.node import FuzzedNode
from bench.fuzz.report import FuzzReport
from tooling.rawsocket import RawWebSocket


class FuzzRun:
    """One fuzz run against one node: the scenarios, the honest users, the figures."""

    def __init__(
        self, config: FuzzConfig, node: FuzzedNode, http: aiohttp.ClientSession, report: FuzzReport
    ) -> None:
        self.config = config
        self.node = node
        self.http = http
        self.report = report
        self.offsets: set[str] = set()
        self.base = f"http://127.0.0.1:{node.port}"
        self.round = 0

    # observing the node ---------------------------------------------------------

    async def get(self, path: str) -> tuple[int, str]:
        async with asyncio.timeout(STEP), self.http.get(self.base + path) as response:
            return response.status, await response.text()

    async def metric(self, name: str) -> float:
        """The sum of a metric's samples on /metrics."""
        _, body = await self.get("/metrics")
        values = [
            float(line.rpartition(" ")[2])
            for line in body.splitlines()
            if line.startswith((name + "{", name + " "))
        ]
        return sum(values)

    async def rooms(self) -> tuple[list[str], int]:
        """The rooms /api/rooms lists (the busiest 100 at most), and how many there are."""
        _, body = await self.get("/api/rooms")
        listing = json.loads(body)
        return [entry["room"] for entry in listing["rooms"]], int(listing["total"])

    async def watch_health(self) -> None:
        """Poll /healthz every half second for as long as the fuzz runs."""
        while True:
            self.report.healthz_checks += 1
            try:
                status, _ = await self.get("/healthz")
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                status = 0
            if status != 200 or not self.node.alive():
                self.report.healthz_failures += 1
            await asyncio.sleep(0.5)

    async def settle(self, connections: int = 0, rooms: tuple[str, ...] = ()) -> bool:
        """Poll (bounded) until only `connections` are open and only `rooms` are left."""
        deadline = time.monotonic() + self.config.settle_cap
        while True:
            try:
                self.report.connections_left = await self.metric("chat_connections")
                self.report.rooms_left = (await self.rooms())[0]
            except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError, KeyError):
                self.report.rooms_left = ["? /api/rooms did not answer"]
            if self.report.connections_left == connections and self.report.rooms_left == [*rooms]:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)  # under the REST read rate (5/s) of one address

    # opening connections --------------------------------------------------------

    async def open(self, mode: str, params: dict[str, str], label: str) -> Fuzzed | None:
        """A fuzzing connection through aiohttp; None if the handshake was refused."""
        self.report.connections += 1
        protocols = (JSON_PROTOCOL,) if mode == "json" else ()
        try:
            async with asyncio.timeout(STEP):
                ws = await self.http.ws_connect(
                    self.node.url, params=params, protocols=protocols, max_msg_size=0
                )
        except aiohttp.WSServerHandshakeError as error:
            outcome = f"http {error.status}"
            self.report.outcomes[outcome] += 1
            if error.status != 429:  # over --max-connections-per-ip is a protocol answer
                self.report.anomaly(f"{label}: handshake refused with {error.status}")
            return None
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
            self.report.outcomes["could not connect"] += 1
            self.report.anomaly(f"{label}: could not connect: {error!r}")
            return None
        return Fuzzed(self, ws, mode)

    async def raw_socket(self, rcvbuf: int | None = None) -> RawWebSocket:
        """A bare TCP connection to the node, for hand-written bytes."""
        self.report.connections += 1
        return await RawWebSocket.open("127.0.0.1", self.node.port, rcvbuf=rcvbuf, timeout=STEP)

    async def raw(
        self, query: str, *, json_mode: bool, rcvbuf: int | None = None
    ) -> RawWebSocket | None:
        """A hand-written WebSocket, upgraded; None (and an anomaly) if that failed."""
        sock = await self.raw_socket(rcvbuf)
        try:
            status = await sock.upgrade(query, JSON_PROTOCOL if json_mode else None, STEP)
        except BaseException:
            sock.close()
            raise
        if status != 101:
            self.report.outcomes[f"http {status}"] += 1
            if status != 429:
                self.report.anomaly(f"raw upgrade {query[:60]}: HTTP {status}")
            sock.close()
            return None
        return sock

    def judge(self, label: str, outcome: Outcome, allowed: set[Outcome], detail: str = "") -> None:
        self.report.outcomes[outcome] += 1
        if outcome not in allowed:
            self.report.anomaly(f"{label}: {outcome}, expected one of {sorted(allowed)} {detail}")

    async def guarded(self, label: str, work: Awaitable[None]) -> None:
        """Run one scenario worker; a harness failure is reported, not raised."""
        try:
            await work
        except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError, ValueError) as error:
            self.report.anomaly(f"{label}: {error!r}")
