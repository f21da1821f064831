"""The access log, without query strings: `?token=` and `?session=` are credentials.

The path is logged as it came, still percent-encoded, so a client cannot write a line
break (`%0A`) into the log and forge a line. The address is the client's, behind a
trusted proxy too (gateway/proxies.py).
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, Request, StreamResponse

from gateway.proxies import TRUSTED, client_address


class AccessLogger(AbstractAccessLogger):
    """One INFO line per request: peer, method, raw path (never the query), status, time."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        address = request.remote
        networks = request.app.get(TRUSTED) if isinstance(request, Request) else None
        if networks:
            address = client_address(address, request.headers.get("X-Forwarded-For"), networks)
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            address,
            request.method,
            request.rel_url.raw_path,
            response.status,
            time,
        )
