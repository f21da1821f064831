"""Frames written to size: a `send` of an exact size (raw frames and handshakes are
tooling/rawsocket.py's); a bare-socket WebSocket in its room, and what it reads at a
close."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, WAIT
from tooling.rawsocket import RawWebSocket


def sized_send(size: int) -> tuple[str, int]:
    """A JSON `send` frame of exactly `size` bytes (ASCII), and the length of its text."""
    empty = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": ""})
    text = "x" * (size - len(empty))
    frame = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": text})
    assert len(frame.encode()) == size
    return frame, len(text)


async def open_raw(client: TestClient, name: str, *, text: bool = False) -> RawWebSocket:
    """A bare-socket WebSocket, in its room."""
    raw = await RawWebSocket.connect(
        client.host, client.port, f"name={name}", None if text else JSON_PROTOCOL
    )
    await raw.read_until_text(b"* you are in" if text else b"subscribed")
    return raw


async def close_frame_of(raw: RawWebSocket) -> tuple[int, list[bytes]]:
    """Read until the server's close frame; its code and the text frames before it."""
    texts: list[bytes] = []
    async with asyncio.timeout(WAIT):
        while True:
            for opcode, data in raw.frames():
                if opcode == 8:
                    return int.from_bytes(data[:2], "big"), texts
                texts.append(data)
            assert await raw.read(), "the connection ended before a close frame"


async def still_open_after(raw: RawWebSocket, seconds: float) -> bool:
    """Whether nothing at all (no byte, no FIN) comes from the server for `seconds`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            await loop.sock_recv(raw.sock, 1)
    except TimeoutError:
        return True
    return False


async def ends_with_a_fin(raw: RawWebSocket) -> bool:
    """Read to the end of the connection: True for an orderly end (FIN), False for a
    reset."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(WAIT):
        try:
            while await loop.sock_recv(raw.sock, 4096):
                pass
        except ConnectionResetError:
            return False
    return True
