"""A reader that stops reading is really cut off (DESIGN: a slow client never slows the
room): once its unsent bytes pass --send-queue-limit, its TCP connection is gone within
seconds, its presence leave is announced and it no longer counts as connected, while
it never reads again. (It used to stay ESTABLISHED for 30 s and more, counted in
chat_connections, with no leave.)"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, join_json, poll_until, read_metric
from tooling.rawsocket import RawWebSocket

TCP_ESTABLISHED = 1
CUT_WITHIN = 8.0  # seconds from the overflow to the TCP connection's end, at most


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of `sock` (tcp_info.tcpi_state), read without reading data."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return int(struct.unpack("B", info[:1])[0])


async def test_a_reader_that_never_reads_again_is_cut_off(gateway: Any) -> None:
    client: TestClient = await gateway(send_queue_limit=20_000, rate_per_second=0)
    stalled = await RawWebSocket.connect(
        client.host, client.port, "name=slow&room=lobby", JSON_PROTOCOL
    )
    try:
        await stalled.read_until_text(b'"type":"subscribed"')  # and never reads again
        bystander = await join_json(client, "bystander")
        writer = await join_json(client, "writer")
        assert await read_metric(client, 'chat_connections{mode="json"}') == 3
        sent = 0
        while await read_metric(client, "chat_slow_consumers_closed_total") == 0:
            assert sent < 4000, "the stalled reader was never found over its limit"
            for _ in range(50):
                ack = await writer.request("send", room="lobby", text="z" * 3000)
                assert ack["type"] == "ack", ack
                sent += 1
        async with asyncio.timeout(CUT_WITHIN):
            await bystander.expect("presence", event="leave", name="slow", timeout=CUT_WITHIN)
        await poll_until(lambda: tcp_state(stalled.sock) != TCP_ESTABLISHED, CUT_WITHIN)
        assert await read_metric(client, 'chat_connections{mode="json"}') == 2
        ack = await writer.request("send", room="lobby", text="after")  # the room goes on
        assert (await bystander.expect("message", offset=ack["offset"]))["text"] == "after"
    finally:
        stalled.close()
