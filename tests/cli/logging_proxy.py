"""A TCP relay that keeps each connection's HTTP request head, as a proxy's log would.

nginx writes the request line, query included, into its error log: whatever a client
puts in the URL ends up there. `LoggingProxy` relays to a gateway (tooling/tcp_proxy.py
does the relaying) and keeps the head of every request (`requests`), so a test can see
what a client put in the URL and in the headers. `drop_clients()` aborts only the client
side of each connection: the gateway still holds the old one, as when a network path
dies without a close.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from yarl import URL

from tooling.tcp_proxy import TcpProxy


@dataclass(frozen=True)
class LoggedRequest:
    """One request head: its line (method, target, version) and its headers."""

    line: str
    headers: dict[str, str]  # names lower-cased; repeated ones joined with ", "

    @property
    def target(self) -> URL:
        """The request target, query included."""
        return URL(self.line.split(" ")[1])

    @property
    def subprotocols(self) -> list[str]:
        """The WebSocket subprotocols offered, in order."""
        offered = self.headers.get("sec-websocket-protocol", "")
        return [part.strip() for part in offered.split(",") if part.strip()]


class LoggingProxy(TcpProxy):
    """Relays 127.0.0.1:`port` to the gateway on `target_port`, logging request heads."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.requests: list[LoggedRequest] = []

    async def _first(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read and keep the request head; no head, no connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        self.requests.append(_parse(head))
        return head


def _parse(head: bytes) -> LoggedRequest:
    line, *fields = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for field in filter(None, fields):
        name, _, value = field.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return LoggedRequest(line, headers)
