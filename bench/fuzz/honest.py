"""The two honest users who chat on the fuzzed node; none of their messages may be lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from bench.fuzz.config import HONEST_ROOM, JSON_PROTOCOL, STEP
from bench.fuzz.run import FuzzRun


class Honest:
    """Two honest users on the fuzzed node, one JSON and one text, in HONEST_ROOM: each
    message one sends must reach the other, once."""

    def __init__(self, run: FuzzRun) -> None:
        self.run = run
        self.j_sent: list[str] = []  # acked
        self.t_sent: list[str] = []
        self.j_got: list[str] = []  # texts from honest-t that honest-j received
        self.t_got: list[str] = []  # texts from honest-j that honest-t received
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.t_end = asyncio.Event()
        self.progress = asyncio.Event()
        self.j: aiohttp.ClientWebSocketResponse | None = None
        self.t: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        http, url = self.run.http, self.run.node.url
        async with asyncio.timeout(STEP):
            self.j = await http.ws_connect(
                url, params={"name": "honest-j", "room": HONEST_ROOM}, protocols=(JSON_PROTOCOL,)
            )
            while json.loads(await self.j.receive_str())["type"] != "subscribed":
                pass
            self.t = await http.ws_connect(url, params={"name": "honest-t", "room": HONEST_ROOM})
            while not (await self.t.receive_str()).startswith("* you are in"):
                pass
        self.tasks = [
            asyncio.create_task(self._read_j(self.j)),
            asyncio.create_task(self._read_t(self.t)),
        ]

    async def _read_j(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame["type"] == "message" and frame["from"] == "honest-t":
                self.j_got.append(frame["text"])
                self.progress.set()
            future = self.acks.get(str(frame.get("ref")))
            if future is not None and not future.done():
                future.set_result(frame)
        self._ended("honest-j", ws)

    async def _read_t(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            for line in str(msg.data).split("\n"):
                if line.startswith("honest-j: "):
                    self.t_got.append(line.removeprefix("honest-j: "))
                    self.progress.set()
                elif line.startswith("! unknown command /honest-end"):
                    self.t_end.set()
                elif line.startswith("! "):  # a message of ours refused (say, unavailable)
                    self.run.report.honest_refused.append(f"honest-t: {line}")
        self._ended("honest-t", ws)

    def _ended(self, name: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        if not self.closing:
            self.run.report.anomaly(f"{name} was disconnected: close code {ws.close_code}")

    closing = False

    async def chat(self, stop: asyncio.Event) -> None:
        """Both talk, every honest_interval seconds, until `stop`."""
        assert self.j is not None and self.t is not None
        for n in itertools.count():
            if stop.is_set():
                return
            text = f"honest-t {n}"
            await self.t.send_str(text)
            self.t_sent.append(text)
            text, ref = f"honest-j {n}", f"hj{n}"
            future = self.acks[ref] = asyncio.get_running_loop().create_future()
            frame = {"type": "send", "room": HONEST_ROOM, "text": text, "ref": ref, "id": ref}
            await self.j.send_str(json.dumps(frame))
            try:
                async with asyncio.timeout(STEP):
                    answer = await future
            except TimeoutError:
                self.run.report.anomaly(f"honest-j: no answer to {ref} within {STEP}s")
                return
            if answer["type"] == "ack":
                self.j_sent.append(text)
            else:
                self.run.report.honest_refused.append(f"honest-j: {answer}")
            await asyncio.sleep(self.run.config.honest_interval)

    async def first_exchange(self) -> None:
        """Wait (bounded) until each has received something from the other."""
        async with asyncio.timeout(STEP):
            while not (self.j_got and self.t_got):
                self.progress.clear()
                await self.progress.wait()

    async def finish(self) -> None:
        """After the last message: wait (bounded) for everything sent to arrive, and count."""
        assert self.t is not None
        with contextlib.suppress(Exception):
            await self.t.send_str("/honest-end")  # answered after every line before it
            async with asyncio.timeout(STEP):
                await self.t_end.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STEP):
                while set(self.t_sent) - set(self.j_got) or set(self.j_sent) - set(self.t_got):
                    self.progress.clear()
                    await self.progress.wait()
        report = self.run.report
        report.honest_sent = len(self.j_sent) + len(self.t_sent)
        report.honest_received = len(set(self.j_got) & set(self.t_sent)) + len(
            set(self.t_got) & set(self.j_sent)
        )
        report.honest_lost = report.honest_sent - report.honest_received
        missing = sorted(set(self.t_sent) - set(self.j_got)) + sorted(
            set(self.j_sent) - set(self.t_got)
        )
        report.honest_missing = missing[:10]
        report.honest_duplicated = (len(self.j_got) - len(set(self.j_got))) + (
            len(self.t_got) - len(set(self.t_got))
        )
        if report.honest_duplicated:
            report.anomaly(f"honest users got {report.honest_duplicated} messages twice")
        for refusal in report.honest_refused[:5]:
            report.anomaly(f"an honest user was refused: {refusal}")

    async def close(self) -> None:
        self.closing = True
        for ws in (self.j, self.t):
            if ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STEP):
                        await ws.close()
        for task in self.tasks:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STEP):
                    await task
