"""Bounded readiness waits: poll a check until it holds, a process dies or time is up."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Protocol

POLL = 0.05  # seconds between two checks (every wait has a deadline)


class NotReady(RuntimeError):
    """What was waited for did not come in time, or its process exited first."""


class Interrupted(NotReady):
    """A stop was asked for (a signal) while waiting."""


class Watched(Protocol):
    """A process being waited on: `running`, `exit_code` and its log's `tail`."""

    @property
    def running(self) -> bool: ...

    @property
    def exit_code(self) -> int | None: ...

    def tail(self, lines: int = 30) -> str: ...


def get_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `port`."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout: float,
    *,
    process: Watched | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    errors: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll `ready` every POLL seconds until it is true. Raises NotReady after `timeout`
    seconds or when `process` exits first (with its log's tail), Interrupted when
    `stop_requested()`; `errors` raised by `ready` count as not ready yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except errors:
            pass
        if stop_requested():
            raise Interrupted(f"stopped while {what} was starting")
        if process is not None and not process.running:
            code, tail = process.exit_code, process.tail()
            raise NotReady(f"{what} exited with {code} while starting\n{tail}")
        if time.monotonic() > deadline:
            tail = f"\n{process.tail()}" if process is not None else ""
            raise NotReady(f"{what} was not ready within {timeout:g}s{tail}")
        time.sleep(POLL)  # a poll, bounded by the deadline
