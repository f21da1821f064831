"""Pipe mode (stdin or stdout is not a terminal): lines in, plain lines out, for scripts.

Every input line is sent (slash commands work); what arrives is printed unstyled and
without a clock. Once stdin ends the client waits for the server's answer to every
line (a send's ack, a command's reply). It exits 0 only when everything went out: every
`! ...` line (something refused, by the server: too long, `/msg` to nobody, banned, ...;
or by the client: an unknown command) goes to stderr and makes the exit code 1, as does
giving up after `idle_timeout` seconds without an answer (the line names what is left).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from contextlib import suppress
from typing import TextIO

from cli.client import ChatClient, ClientConfig, describe
from cli.commands import run_line
from cli.connection import ConnectFailed, Rejected
from cli.events import ErrorLine
from cli.render import plain, render
from cli.visible import visible


class StdinLines:
    """Lines of a file descriptor, read by a daemon thread so the event loop never blocks.

    A thread (not `connect_read_pipe`) because stdin may be a regular file or
    /dev/null, which the loop cannot watch, or a terminal shared with the shell, which
    must not be made non-blocking. It is a daemon, as it may sit in a read when we
    exit; it uses `os.read`, never the buffered `sys.stdin`, whose lock would abort
    the interpreter's shutdown.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._pump, name="chat-stdin", daemon=True).start()

    def _pump(self) -> None:
        pending = b""
        try:
            while chunk := os.read(self._fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    self._put(raw.decode("utf-8", errors="replace").rstrip("\r"))
            if pending:
                self._put(pending.decode("utf-8", errors="replace").rstrip("\r"))
        except OSError:
            pass  # stdin is unreadable or went away: treat it as ended
        finally:
            self._put(None)

    def _put(self, line: str | None) -> None:
        with suppress(RuntimeError):  # the loop has closed: we are exiting anyway
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)

    async def next(self) -> str | None:
        """The next line, or None once the stream has ended."""
        return await self._queue.get()


async def run_pipe(
    config: ClientConfig, *, idle_timeout: float = 10.0, out: TextIO | None = None
) -> int:
    """Run the pipe mode; returns the exit code."""
    out = out if out is not None else sys.stdout
    client = ChatClient(config)
    try:
        await client.start()
    except (Rejected, ConnectFailed) as exc:
        print(f"chat: {visible(str(exc))}", file=sys.stderr)
        return 1
    printer = asyncio.create_task(_print_events(client, out, sys.stderr), name="chat-print")
    try:
        stopped_early = await _send_input(client, StdinLines(sys.stdin.fileno()))
        drained = stopped_early or await client.drain(idle_timeout)
        if not drained:
            print(f"chat: gave up: {_why_undrained(client, idle_timeout)}", file=sys.stderr)
    finally:
        await client.close()
        refused = await printer
    return 1 if client.exit_code or refused or not drained else 0


def _why_undrained(client: ChatClient, idle_timeout: float) -> str:
    """What `drain` left unanswered, and why it stopped waiting."""
    what = describe(client.unanswered)
    if client.failure:  # the client stopped: printed already, as a `!` line
        return f"{what} not answered: {client.failure}"
    return f"no answer from the server in {idle_timeout:g} s to {what}"


async def _send_input(client: ChatClient, lines: StdinLines) -> bool:
    """Send each input line until stdin ends or /quit; True when the client stopped first."""
    stopped = asyncio.ensure_future(client.wait_closed())
    try:
        while True:
            reading = asyncio.ensure_future(lines.next())
            await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                await asyncio.wait({reading})
                return True
            line = reading.result()
            if line is None or run_line(client, line):
                return False
    finally:
        stopped.cancel()
        await asyncio.wait({stopped})


async def _print_events(client: ChatClient, out: TextIO, err: TextIO) -> int:
    """Print what arrives on `out`, and the `! ...` lines (refusals, the client giving
    up) on `err`; returns how many of those there were."""
    writable, errors = True, 0
    async for event in client.events():
        if isinstance(event, ErrorLine):
            errors += 1
            for line in render(event, clock=False):
                with suppress(OSError, ValueError):
                    err.write(plain(line) + "\n")
                    err.flush()
            continue
        for line in render(event, clock=False):
            if not writable:
                continue
            try:
                out.write(plain(line) + "\n")
                out.flush()
            except BrokenPipeError:  # the reader went away (`| head`): keep chatting
                writable = False
                _silence(out)
    return errors


def _silence(out: TextIO) -> None:
    """Point a broken stdout at /dev/null, so the exit-time flush does not complain."""
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
