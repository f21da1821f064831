"""The access log, without query strings: `?token=` and `?session=` are credentials.

The path is logged as it came, still percent-encoded, so a client cannot write a line
break (`%0A`) into the log and forge a line.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class AccessLogger(AbstractAccessLogger):
    """One INFO line per request: peer, method, raw path (never the query), status, time."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.remote,
            request.method,
            request.rel_url.raw_path,
            response.status,
            time,
        )
