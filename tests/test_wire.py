"""gateway/wire.py: complete frames built once, one write per connection per iteration,
and the limit on unsent bytes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import WSMsgType, web

from gateway.codecs.frames import close_frame, text_frame, text_frames
from gateway.wire import Corker, Outbox
from tests.conftest import poll_until


async def received(aiohttp_client, data: bytes, count: int) -> list[tuple[WSMsgType, object]]:
    """`data` written through an Outbox by a tiny aiohttp server, as aiohttp's client
    reads it: (type, data) of the first `count` messages."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        Outbox(request.transport, Corker(), 1 << 30).push(data)  # type: ignore[arg-type]
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/", max_msg_size=0)
    out = []
    for _ in range(count):
        message = await ws.receive(timeout=5.0)
        out.append((message.type, message.data))
    await ws.close()
    return out


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
async def test_a_text_frame_is_what_a_client_parses(aiohttp_client, size: int) -> None:
    """Guards against a wrong length encoding at the 126 / 65536 boundaries."""
    text = "é" * (size // 2) + "x" * (size % 2)  # `size` bytes of UTF-8
    payload = text.encode()
    assert len(payload) == size
    assert await received(aiohttp_client, text_frame(payload), 1) == [(WSMsgType.TEXT, text)]


async def test_frames_back_to_back_are_each_a_message(aiohttp_client) -> None:
    data = text_frames(["a", "bc", ""]) + close_frame(1008, b"too slow")
    assert await received(aiohttp_client, data, 4) == [
        (WSMsgType.TEXT, "a"),
        (WSMsgType.TEXT, "bc"),
        (WSMsgType.TEXT, ""),
        (WSMsgType.CLOSE, 1008),
    ]


class RecordingTransport(asyncio.Transport):
    """A transport that keeps each write (to count them) with a settable buffer size."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_frames_of_one_iteration_go_out_in_one_write() -> None:
    """Guards against one system call per frame: a connection's frames of one loop
    iteration are joined (uWebSockets' cork), and two connections get one write each."""
    corker = Corker()
    first, second = RecordingTransport(), RecordingTransport()
    a, b = Outbox(first, corker, 1000), Outbox(second, corker, 1000)
    for frame in (b"1", b"22", b"333"):
        assert a.push(frame)
    assert b.push(b"x")
    assert first.writes == [] and second.writes == []  # nothing until the iteration ends
    await asyncio.sleep(0)
    assert first.writes == [b"122333"] and second.writes == [b"x"]
    assert a.push(b"4")  # the next flush waits as long as the last one took: bounded
    await poll_until(lambda: len(first.writes) == 2, 1.0)
    assert first.writes == [b"122333", b"4"]


async def test_unsent_bytes_over_the_limit_are_refused() -> None:
    """Guards against an outbox that grows without bound behind a peer that stops reading:
    the transport's buffer counts, and so does what waits for this iteration's write."""
    transport = RecordingTransport()
    outbox = Outbox(transport, Corker(), 10)
    assert outbox.push(b"12345")
    assert outbox.push(b"12345")
    assert not outbox.push(b"1")  # 11 bytes unsent
    await asyncio.sleep(0)
    transport.buffered = 8  # the kernel took 2 of them
    assert outbox.push(b"12")
    assert not outbox.push(b"1")


async def test_a_close_without_flush_drops_the_queue_and_a_stuck_transport_is_aborted(
    monkeypatch,
) -> None:
    """Guards against a reader that never reads holding its connection open: the queue
    is dropped for the close frame, and once finished the transport is closed and, still
    holding bytes, aborted."""
    monkeypatch.setattr("gateway.wire.CUT_AFTER", 0.01)
    transport = RecordingTransport()
    outbox = Outbox(transport, Corker(), 10)
    outbox.push(b"queued")
    transport.buffered = 5
    assert outbox.close(close_frame(1008, b"too slow"), flush=False)
    assert transport.writes == [close_frame(1008, b"too slow")] and not transport.closed
    outbox.finish()
    assert transport.closed
    async with asyncio.timeout(1.0):
        while not transport.aborted:  # noqa: ASYNC110 (bounded: the timer is 10 ms)
            await asyncio.sleep(0.005)


async def test_a_close_with_flush_writes_the_queue_first() -> None:
    """Guards against a close frame overtaking the frames queued before it."""
    transport = RecordingTransport()
    outbox = Outbox(transport, Corker(), 100)
    outbox.push(b"queued")
    assert outbox.close(b"last", flush=True)
    assert transport.writes == [b"queued", b"last"] and not transport.closed
    transport.closed = True
    assert not outbox.close(b"again", flush=True)  # closing already: nothing written


async def test_an_outbox_writes_to_a_real_socket() -> None:
    """The same through asyncio's own transport: the peer reads exactly the frames."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    try:
        outbox = Outbox(transport, Corker(), 1 << 20)  # type: ignore[arg-type]
        outbox.push(text_frame(b"hello"))
        outbox.push(text_frame(b"world"))
        theirs.setblocking(False)
        expected = text_frames(["hello", "world"])
        got = b""
        async with asyncio.timeout(2.0):
            while len(got) < len(expected):
                got += await loop.sock_recv(theirs, 4096)
        assert got == expected
    finally:
        transport.close()
        theirs.close()


async def test_a_node_never_negotiates_permessage_deflate(client) -> None:
    """Guards against a browser's default offer of permessage-deflate being accepted:
    every connection gets the same uncompressed frames, built once per message."""
    ws = await client.ws_connect(
        "/ws", params={"name": "alice"}, protocols=("chat.v1.json",), compress=15
    )
    assert ws.compress == 0
    await ws.close()
