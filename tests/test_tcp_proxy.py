"""The TCP proxy's blackhole (tooling/tcp_proxy.py), as the fault campaign uses it: while
it lasts nothing passes either way and no socket is closed; healed, the held bytes
arrive in order."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tooling.tcp_proxy import TcpProxy

WAIT = 5.0
HELD = 0.3  # seconds a blackholed byte must stay away: what is asserted as "nothing came"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_a_blackhole_holds_the_bytes_both_ways_until_healed() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await TcpProxy(server.sockets[0].getsockname()[1]).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"before ")
        assert await asyncio.wait_for(reader.readexactly(7), WAIT) == b"before "
        proxy.blackhole()
        assert proxy.blackholed
        writer.write(b"during ")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), HELD)
        assert not reader.at_eof()
        proxy.heal()
        writer.write(b"after")
        assert await asyncio.wait_for(reader.readexactly(12), WAIT) == b"during after"
    finally:
        writer.close()
        await proxy.close()
        server.close()
        await server.wait_closed()
