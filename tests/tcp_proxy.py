"""A TCP proxy in front of redis-server that can make subscriptions deaf."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Relays 127.0.0.1:port -> target; `silence_subscribers()` stops the server->client
    bytes of every connection that has sent SUBSCRIBE, leaving the socket open."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._subscribers: list[asyncio.Event] = []  # per subscriber connection: silenced
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def silence_subscribers(self) -> None:
        for silenced in self._subscribers:
            silenced.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, upstream_writer]
        silenced = asyncio.Event()
        up = asyncio.create_task(self._pipe(reader, upstream_writer, silenced, watch=True))
        down = asyncio.create_task(self._pipe(upstream_reader, writer, silenced, watch=False))
        self._tasks |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        silenced: asyncio.Event,
        *,
        watch: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if watch and b"SUBSCRIBE" in data.upper() and silenced not in self._subscribers:
                    self._subscribers.append(silenced)
                if not watch and silenced.is_set():
                    continue  # deaf: swallow what the server says
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task
