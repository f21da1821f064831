"""Helpers for the `chat` tests: a real gateway process, `chat` processes, a JSON
observer and a TCP proxy that can cut connections. Every wait is bounded by WAIT.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from screen import Screen

from tooling.gateway import GatewayProcess
from tooling.ports import free_port
from tooling.tcp_proxy import TcpProxy

__all__ = ["GatewayProcess", "TcpProxy", "free_port"]

WAIT = 8.0  # the most any single expectation waits, in seconds
# The most a client's whole run may take, start to exit: a python process's start-up
# alone took seconds on a loaded 2-core CI machine (a pipe-mode test timed out at 8 s).
EXIT_WAIT = 30.0
ROOT = Path(__file__).resolve().parents[2]
CHAT = [sys.executable, "-m", "cli"]
JWT_SECRET = "a-secret-for-the-cli-tests-of-at-least-32-bytes"
API_KEY = "the-operator-key-of-the-cli-tests"  # the operator API of `moderated_gateway`


def unique(prefix: str) -> str:
    """A name or room no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class ChatProcess:
    """`chat` in pipe mode: stdin, stdout and stderr are pipes; stdout (`lines`) and
    stderr (`error_lines`: the `! ...` lines) are kept line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.error_lines: list[str] = []
        self._cursors = {"out": 0, "err": 0}
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.lines)),
            asyncio.create_task(self._read(proc.stderr, self.error_lines)),
        ]

    @property
    def stderr(self) -> str:
        """Everything written to stderr so far."""
        return "".join(f"{line}\n" for line in self.error_lines)

    @classmethod
    async def start(
        cls,
        url: str,
        *args: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> ChatProcess:
        """`chat --url URL ARGS`; `env` is added to this process's environment."""
        proc = await asyncio.create_subprocess_exec(
            *(command or CHAT),
            "--url",
            url,
            *args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self, stream: asyncio.StreamReader | None, lines: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            lines.append(line.decode().rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def write(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.proc.stdin.drain()

    async def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.stdin.wait_closed()

    async def expect(self, pattern: str, timeout: float = WAIT) -> str:
        """The next stdout line (after the last one expected) that matches `pattern`."""
        return await self._expect("out", self.lines, self.proc.stdout, pattern, timeout)

    async def expect_error(self, pattern: str, timeout: float = WAIT) -> str:
        """The next stderr line (after the last one expected) that matches `pattern`."""
        return await self._expect("err", self.error_lines, self.proc.stderr, pattern, timeout)

    async def _expect(
        self,
        which: str,
        lines: list[str],
        stream: asyncio.StreamReader | None,
        pattern: str,
        timeout: float,
    ) -> str:
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for index in range(self._cursors[which], len(lines)):
                        if regex.search(lines[index]):
                            self._cursors[which] = index + 1
                            return lines[index]
                    if stream is not None and stream.at_eof():
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"no line matching {pattern!r}; {which} so far: {lines}")

    async def wait(self, timeout: float = EXIT_WAIT) -> int:
        """The exit code, once the process ends (fails after `timeout`)."""
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Observer:
    """A JSON-mode WebSocket client watching a room (not the code under test)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: str) -> None:
        self.ws = ws
        self.room = room
        self.frames: list[dict[str, Any]] = []

    async def until(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"observer closed: {msg.type.name}")
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if match(frame):
                    return frame

    async def message(self, sender: str, text: str) -> dict[str, Any]:
        """Wait for the room message `text` from `sender`."""
        return await self.until(
            lambda f: f["type"] == "message" and f["from"] == sender and f["text"] == text
        )

    async def say(self, text: str) -> dict[str, Any]:
        """Send `text` to the observer's room; returns the ack."""
        ref = uuid.uuid4().hex
        await self.ws.send_json({"type": "send", "room": self.room, "text": text, "ref": ref})
        return await self.until(lambda f: f.get("ref") == ref)

    def texts(self, sender: str) -> list[str]:
        return [f["text"] for f in self.frames if f["type"] == "message" and f["from"] == sender]


def chat_env(**extra: str) -> dict[str, str]:
    """The environment for `chat` under a pseudo-terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV"))}
    env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", **extra)
    return env


ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


class Terminal:
    """`chat` under a pseudo-terminal (pexpect), its output kept as plain text.

    prompt_toolkit draws with escape sequences and cursor moves, so the output is
    matched after stripping them; `expect` moves a cursor, so order is checked too.
    """

    def __init__(self, url: str, *args: str, env: dict[str, str] | None = None) -> None:
        import pexpect

        self._pexpect = pexpect
        self.child = pexpect.spawn(
            CHAT[0],
            [*CHAT[1:], "--url", url, *args],
            cwd=str(ROOT),
            env=chat_env(**(env or {})),
            dimensions=(40, 120),
            encoding="utf-8",
            codec_errors="replace",
        )
        self.text = ""
        self.screen = Screen(40, 120)
        self._cursor = 0

    def _read(self, deadline: float) -> bool:
        """Read what is there (waiting up to the deadline); False at end of file."""
        try:
            chunk = self.child.read_nonblocking(
                65536, timeout=max(0.01, deadline - time.monotonic())
            )
        except self._pexpect.TIMEOUT:
            return True
        except self._pexpect.EOF:
            return False
        self.text = ANSI.sub("", self.text + chunk).replace("\r", "")
        self.screen.feed(chunk)
        return True

    def expect_sync(self, pattern: str, timeout: float = WAIT) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self._cursor)
            if match:
                self._cursor = match.end()
                return match.group(0)
            if time.monotonic() >= deadline or not self._read(deadline):
                raise AssertionError(f"no {pattern!r} on the screen; it shows:\n{self.text}")

    async def expect(self, pattern: str, timeout: float = WAIT) -> str:
        """Wait (in a thread, so the event loop runs on) for `pattern` in the output."""
        return await asyncio.to_thread(self.expect_sync, pattern, timeout)

    def screen_lines_sync(
        self, settled: Callable[[list[str]], bool], timeout: float = WAIT
    ) -> list[str]:
        """The lines on the screen (scrollback included) once `settled(lines)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen.lines()
            if settled(lines):
                return lines
            if time.monotonic() >= deadline or not self._read(deadline):
                shown = "\n".join(lines)
                raise AssertionError(f"the screen never got there; it shows:\n{shown}")

    async def screen_lines(
        self, settled: Callable[[list[str]], bool], timeout: float = WAIT
    ) -> list[str]:
        """`screen_lines_sync` in a thread, so the event loop runs on."""
        return await asyncio.to_thread(self.screen_lines_sync, settled, timeout)

    def sendline(self, line: str) -> None:
        self.child.sendline(line)

    def exit_code_sync(self, timeout: float = WAIT) -> int | None:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            if time.monotonic() >= deadline:
                raise AssertionError(f"chat did not exit; the screen shows:\n{self.text}")
        self.child.close()
        return self.child.exitstatus

    async def exit_code(self, timeout: float = WAIT) -> int | None:
        """Wait for the end of the output, then the exit status."""
        return await asyncio.to_thread(self.exit_code_sync, timeout)

    def kill(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
