"""A TCP relay that keeps each connection's HTTP request head, as a proxy's log would.

nginx writes the request line, query included, into its error log: whatever a client
puts in the URL ends up there. `LoggingProxy` relays to a gateway and keeps the head of
every request (`requests`), so a test can see what a client put in the URL and in the
headers. `drop_clients()` aborts only the client side of each connection: the gateway
still holds the old one, as when a network path dies without a close.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from yarl import URL


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


class LoggingProxy:
    """Relays 127.0.0.1:`port` to the gateway on `target_port`, logging request heads."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.requests: list[LoggedRequest] = []
        self._clients: set[asyncio.StreamWriter] = set()
        self._upstreams: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> LoggingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()
            return
        self.requests.append(_parse(head))
        self._clients.add(writer)
        self._upstreams.append(up_writer)
        up_writer.write(head)
        pipes = (self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, writer))
        for task in pipes:
            self._tasks.add(asyncio.create_task(task))

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if client in self._clients:  # a dropped client leaves the gateway side open
            writer.transport.abort()

    def drop_clients(self) -> None:
        """Abort the client side of every relayed connection; the gateway side stays."""
        clients, self._clients = self._clients, set()
        for writer in clients:
            writer.transport.abort()

    async def close(self) -> None:
        """Stop relaying: every connection is aborted, both sides."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        upstreams, self._upstreams = self._upstreams, []
        for up in upstreams:
            up.transport.abort()
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _parse(head: bytes) -> LoggedRequest:
    line, *fields = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for field in filter(None, fields):
        name, _, value = field.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return LoggedRequest(line, headers)
