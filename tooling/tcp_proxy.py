"""A TCP proxy for tests and the fault campaign: cut connections, swallow replies, make
subscriptions deaf, slow down replies, or blackhole the traffic for a while."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """A TCP relay in front of a server (a gateway, or redis-server) that a test controls.

    `cut()` aborts every relayed connection, `drop_clients()` only their client sides
    (the server still holds its end, as when a network path dies without a close);
    while `accepting` is False new ones are dropped at once; with `drop_downstream` the
    server's bytes never reach any client; `subscriber_delay` holds what subscribers
    hear, `command_delay` the replies to every other connection (what a subscriber
    hears comes first); `silence_subscribers()` makes every
    connection that has sent SUBSCRIBE deaf for good, leaving its socket open (a
    subscription that hears nothing). `blackhole()` stops relaying in both directions,
    sockets left open (no RST, no FIN), as a network that drops packets does; `heal()`
    lets the held bytes through in order, as TCP's retransmissions would once the path
    is back. `_first` is where a subclass reads what comes before the relay (a request
    head, say)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.drop_downstream = False
        self.subscriber_delay = 0.0
        self.command_delay = 0.0
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()  # client sides
        self._dropped: set[asyncio.StreamWriter] = set()  # client sides dropped alone
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribers: set[asyncio.StreamWriter] = set()  # client sides that subscribed
        self._silenced: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def silence_subscribers(self) -> None:
        self._silenced |= self._subscribers

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    def blackhole(self) -> None:
        """Relay nothing, either way, until `heal()`: reads stop, so the senders' buffers
        fill as they would against a dead path."""
        self._flowing.clear()

    def heal(self) -> None:
        """Relay again, the held bytes first."""
        self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _first(self, reader: asyncio.StreamReader) -> bytes | None:
        """What a new connection sends before the relay starts, read by the proxy (None
        refuses the connection); a subclass that reads a request head reads it here."""
        return b""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        first = await self._first(reader)
        if first is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}
        self._clients.add(writer)
        if first:
            up_writer.write(first)
        pipes = (
            self._pipe(reader, up_writer, writer, False),
            self._pipe(up_reader, writer, writer, True),
        )
        for task in pipes:
            self._tasks.add(asyncio.create_task(task))

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        downstream: bool,
    ) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        later = asyncio.create_task(self._write_later(held, writer))
        self._tasks.add(later)
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    await self._flowing.wait()
                    if not downstream and b"SUBSCRIBE" in data.upper():
                        self._subscribers.add(client)
                    if downstream and (self.drop_downstream or client in self._silenced):
                        continue
                    delay = 0.0
                    if downstream:
                        subscriber = client in self._subscribers
                        delay = self.subscriber_delay if subscriber else self.command_delay
                    if delay:
                        due = asyncio.get_running_loop().time() + delay
                        held.put_nowait((due, data))
                        continue
                    writer.write(data)
                    await writer.drain()
        finally:
            later.cancel()
            if client not in self._dropped:  # a dropped client leaves the server's side open
                writer.transport.abort()

    async def _write_later(
        self, held: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        """Write each held chunk at its time, in order."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

    def drop_clients(self) -> None:
        """Abort the client side of every relayed connection; the server's side stays."""
        self._dropped |= self._clients
        for writer in self._clients:
            writer.transport.abort()
        self._writers -= self._clients
        self._clients.clear()

    def cut(self) -> None:
        """Abort every relayed connection, both sides."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self._clients.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
