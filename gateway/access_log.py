"""The access log, without query strings: `?token=` and `?session=` are credentials.

The path is logged as it came, still percent-encoded, so a client cannot write a line
break (`%0A`) into the log and forge a line. The address is the client's, behind a
trusted proxy too: the one `gateway.proxies.real_client` recorded in the request, else
the peer's. Nothing here asks `request.app`: a request aiohttp could not parse or route
(a 400) has none, and asking raises.
"""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from gateway.proxies import CLIENT_ADDRESS


class AccessLogger(AbstractAccessLogger):
    """One INFO line per request: client, method, raw path (never the query), status, time."""

    @property
    def enabled(self) -> bool:
        """Whether a line would be written. aiohttp asks once per connection and, when
        not (`--log-level WARNING` and above), neither times a request nor calls `log`."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.get(CLIENT_ADDRESS, request.remote),
            request.method,
            request.rel_url.raw_path,
            response.status,
            time,
        )
