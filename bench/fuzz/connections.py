"""One fuzzing connection through aiohttp's client, and how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType

from bench.fuzz.config import STEP, Outcome, Probe
from gateway.controls import NOT_IN_TEXT

if TYPE_CHECKING:
    from bench.fuzz.run import FuzzRun


class Fuzzed:
    """One fuzzing connection through aiohttp's client: what it sent, what it was
    answered, and how it ended."""

    _ids = itertools.count(1)

    def __init__(self, run: FuzzRun, ws: aiohttp.ClientWebSocketResponse, mode: str) -> None:
        self.run = run
        self.ws = ws
        self.mode = mode
        self.frames: list[Any] = []  # the first KEEP decoded JSON objects or text lines
        self.counts: Counter[str] = Counter()  # frames by type ("subscribed+ref", "you are in")
        self.refs: set[str] = set()  # the refs of the answers received
        self.answered = False  # the end marker was answered: every input before it was
        self.errors = 0
        self.bad_sent = False
        self.quit_sent = False
        self.stalled = False
        self.last: list[str] = []  # the last inputs, for the anomaly report
        self.marker = f"fuzzend{next(self._ids)}"
        self.close_code: int | None = None  # the code of the node's close frame
        self.closing = False  # we started the closing handshake: its reply is ours
        self.ending = ""  # the last thing the reader saw when it was not a text frame
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    KEEP = 200

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.TEXT:
                    self._take(str(msg.data))
                elif msg.type is WSMsgType.CLOSE:
                    if not self.closing:
                        self.close_code = int(msg.data)
                    return
                elif msg.type is not WSMsgType.BINARY:
                    self.ending = f"{msg.type.name} {msg.data!r}"
                    return  # CLOSING, CLOSED or ERROR: the connection ended
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
            self.ending = repr(error)
            return
        finally:
            self.closed.set()
            self._arrived.set()

    def _take(self, data: str) -> None:
        report = self.run.report
        if self.mode == "json":
            frame = json.loads(data)
            if not isinstance(frame, dict):
                report.anomaly(f"the node sent a JSON frame that is not an object: {data[:80]}")
                return
            if frame.get("type") == "error":
                self.errors += 1
                report.error_codes[frame.get("code", "?")] += 1
            offset = frame.get("offset")
            if isinstance(offset, str) and len(self.run.offsets) < 100:
                self.run.offsets.add(offset)
            ref = frame.get("ref")
            if isinstance(ref, str):
                self.refs.add(ref)
            self.answered = self.answered or ref == self.marker
            self.counts[f"{frame.get('type')}{'+ref' if ref else ''}"] += 1
        else:
            frame = data
            if NOT_IN_TEXT.search(data):  # a terminal would run it, or split the line there
                report.anomaly(f"a text-mode line holds a control character: {data[:80]!r}")
            if data.startswith("! "):
                self.errors += 1
                report.error_codes["text-mode ! line"] += 1
            self.answered = self.answered or data.startswith(f"! unknown command /{self.marker}")
            if data.startswith("* you are in "):
                self.counts["you are in"] += 1
        if len(self.frames) < self.KEEP:
            self.frames.append(frame)
        self._arrived.set()

    async def wait_for(self, done: Callable[[], bool], within: float = STEP) -> bool:
        """True once `done()`, checked as frames arrive; False if the connection ended or
        time ran out first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    if done():
                        return True
                    if self.closed.is_set():
                        return False
                    self._arrived.clear()
                    await self._arrived.wait()
        return False

    def entered(self) -> bool:
        """True once the node put this connection in a room (subscribed / "you are in")."""
        return self.counts["subscribed"] > 0 or self.counts["you are in"] > 0

    async def send(self, probe: Probe) -> bool:
        """Send one input; False once the connection is gone."""
        if self.closed.is_set():
            return False
        self.run.report.frames += 1
        self.bad_sent = self.bad_sent or probe.bad is True
        self.quit_sent = self.quit_sent or probe.kind == "quit"
        self.last = [*self.last[-4:], f"{probe.kind}: {probe.data[:60]!r}"]
        try:
            async with asyncio.timeout(STEP):
                if isinstance(probe.data, bytes):
                    await self.ws.send_bytes(probe.data)
                else:
                    await self.ws.send_str(probe.data)
        except TimeoutError:
            self.stalled = True  # the node stopped reading this connection for STEP seconds
            return False
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return False
        return True

    async def finish(self, label: str, allowed: set[Outcome], *, answer_needed: bool) -> Outcome:
        """Make sure every input was answered, close, and judge how the connection ended."""
        if not self.closed.is_set():
            end = (
                json.dumps({"type": "ping", "ref": self.marker})
                if self.mode == "json"
                else f"/{self.marker}"
            )
            if await self.send(Probe(end, "end marker", False)):
                await self.wait_for(lambda: self.answered, 3 * STEP)
        answered = self.answered
        if not self.closed.is_set():
            self.closing = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STEP):
                    await self.ws.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP):
                await self._reader
        if not self._reader.done():
            self._reader.cancel()
        if self.close_code is not None:
            outcome = f"close {self.close_code}"
        elif answered:
            outcome = "closed by us"
        elif self.stalled:
            outcome = "stalled"
        else:
            outcome = "no answer" if not self.ws.closed else "dropped"
            self.last.append(f"then {self.ending or 'nothing'}")
        report = self.run.report
        report.outcomes[outcome] += 1
        if outcome not in allowed:
            report.anomaly(f"{label}: {outcome}; last inputs {self.last}")
        elif answer_needed and self.bad_sent and not self.errors and self.close_code is None:
            report.anomaly(f"{label}: bad input and no error answer; last inputs {self.last}")
        return outcome
