"""Log lines a stranger can cause: sampled, one line each, never a traceback.

A refused connection and a request aiohttp could not parse are events any client can
repeat a thousand times a second. `SampledLog` writes at most one line per kind every
`interval` seconds and says in it how many it left out. `RequestErrorLog` is the logger
aiohttp's request handler is given: a parse error (a header line without a colon, a
request line too long for aiohttp) is reported through a callback in one line instead
of aiohttp's traceback at ERROR, whose text holds the request's bytes (a URL with its
`?session=`). Every other error, a handler's bug, keeps its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

SAMPLE_INTERVAL = 10.0  # seconds between two lines of one kind


class SampledLog:
    """At most one line per kind each `interval` seconds, on `logger`."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}  # by kind: when its next line may be written
        self._left_out: dict[str, int] = {}  # by kind: lines not written since its last

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """Write `message % args` unless a line of `kind` was written less than
        `interval` ago; then only count it. (Kinds are a fixed, small set.)"""
        now = self._clock()
        if now < self._next.get(kind, now):
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._next[kind] = now + self._interval
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            message += f" (and {left_out} more like it in the last {self._interval:.0f}s)"
        self._logger.log(level, message, *args)


BadRequestCallback = Callable[[int, str, HttpProcessingError], None]


class RequestErrorLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with its parse errors handed to `on_bad_request(level,
    peer, error)` instead of logged (pass it as the handler's `logger`)."""

    def __init__(self, logger: logging.Logger, on_bad_request: BadRequestCallback) -> None:
        super().__init__(logger, {})
        self._on_bad_request = on_bad_request

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if isinstance(error, HttpProcessingError):
            peer = str(args[0]) if args else "?"  # aiohttp: "Error handling request from %s"
            self._on_bad_request(level, peer, error)
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs  # no extra: the records stay aiohttp's own
