"""The frame layer of a connection handed to its link (gateway/link.py), through a
bare socket: fragments and the control frames between them, ping and pong, text that
is not UTF-8, messages over the limit, and the client's Close, valid or not. The
closing handshake the server starts, unmasked frames and reserved bits are in
tests/test_closing.py; the heartbeat in tests/test_refusals.py.

And what the link is for: an idle connection holds no task and nothing of aiohttp's.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import WAIT, join_json
from tests.plugins.frames import close_frame_of, ends_with_a_fin, open_raw
from tooling.rawsocket import RawWebSocket
from tooling.wsclient import CLOSE, CONTINUATION, PING, PONG, TEXT, encode_frame


@pytest.fixture
def broker_kind() -> str:
    """The frame layer is the same on every broker: the in-process one is enough."""
    return "memory"


async def frames_until(raw: RawWebSocket, needle: bytes) -> list[tuple[int, bytes]]:
    """Every frame read until a text frame containing `needle` (included)."""
    seen: list[tuple[int, bytes]] = []
    async with asyncio.timeout(WAIT):
        while True:
            for opcode, data in raw.frames():
                seen.append((opcode, data))
                if opcode == TEXT and needle in data:
                    return seen
            assert await raw.read(), "closed while waiting"


async def test_a_fragmented_message_is_run_and_a_ping_between_its_fragments_answered(
    client: TestClient,
) -> None:
    """Guards against fragments run one by one (a character cut between two of them
    refused as invalid UTF-8), and a ping between fragments left unanswered or
    answered only once the message is complete."""
    raw = await open_raw(client, "frag")
    try:
        line = json.dumps(
            {"type": "send", "room": "lobby", "text": "héllo", "ref": "r1"}, ensure_ascii=False
        )
        data = line.encode()
        cut = data.index("é".encode()) + 1  # inside the é
        await raw.write(
            encode_frame(TEXT, data[:cut], fin=False)
            + encode_frame(PING, b"beat")
            + encode_frame(CONTINUATION, data[cut:-3], fin=False)
            + encode_frame(CONTINUATION, data[-3:]),
        )
        seen = await frames_until(raw, b'"ack"')
        assert (PONG, b"beat") in seen
        ack = json.loads(seen[-1][1])
        assert ack["ref"] == "r1"
        await raw.write(encode_frame(PING, b""))  # an empty ping: an empty pong
        await raw.write(encode_frame(TEXT, b'{"type":"ping","ref":"r2"}'))
        assert (PONG, b"") in await frames_until(raw, b'"r2"')
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([encode_frame(TEXT, b"caf\xe9")], 1007),  # latin-1, not UTF-8
        ([encode_frame(TEXT, b"ok \xf0\x9f", fin=False), encode_frame(CONTINUATION, b"!")], 1007),
        (
            [encode_frame(TEXT, b"x" * 3000, fin=False), encode_frame(CONTINUATION, b"y" * 1500)],
            1009,
        ),
        ([encode_frame(CLOSE, (999).to_bytes(2, "big"))], 1002),  # not a close code
        ([encode_frame(CLOSE, (1005).to_bytes(2, "big"))], 1002),  # never sent on the wire
        ([encode_frame(CLOSE, b"\x03")], 1002),  # one byte: half a code
        ([encode_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff")], 1007),  # reason not UTF-8
    ],
    ids=[
        "invalid-utf8",
        "invalid-utf8-fragmented",
        "fragments-over-limit",
        "close-999",
        "close-1005",
        "close-one-byte",
        "close-reason-not-utf8",
    ],
)
async def test_a_bad_message_closes_with_its_code_in_a_handshake(
    gateway: object, frames: list[bytes], code: int
) -> None:
    """Guards against a frame RFC 6455 says to fail the connection on (1007 for text
    that is not UTF-8, 1009 for a message over the limit, even in small fragments, 1002
    for a Close with an invalid code) being accepted, or ending without a close frame
    and a FIN."""
    client = await gateway(max_frame_bytes=4096)  # type: ignore[operator]
    raw = await open_raw(client, "bad")
    try:
        await raw.write(b"".join(frames))
        assert (await close_frame_of(raw))[0] == code
        if frames[-1][0] & 0x0F != CLOSE:
            await raw.write(encode_frame(CLOSE, code.to_bytes(2, "big")))
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()


async def test_a_clients_close_code_is_echoed_and_an_empty_one_answered_1000(
    client: TestClient,
) -> None:
    """Guards against the answer to a client's Close carrying another code than the
    client's (RFC 6455 5.5.1), or none."""
    for name, payload, answer in (
        ("four", (4000).to_bytes(2, "big") + b"bye", 4000),
        ("none", b"", 1000),
    ):
        raw = await open_raw(client, name)
        try:
            await raw.write(encode_frame(CLOSE, payload))
            assert (await close_frame_of(raw))[0] == answer
            assert await ends_with_a_fin(raw)
        finally:
            raw.close()


async def test_an_idle_connection_holds_no_task_and_nothing_of_aiohttps(
    client: TestClient,
) -> None:
    """Guards against a welcomed connection keeping its handler task (its request, the
    middleware frames, aiohttp's reader and writer) alive while it idles, or being
    forgotten: it still gets what its room says, and its end is still run."""
    server = client.server.handler  # aiohttp's web.Server: the connections it serves
    tasks_before = len(asyncio.all_tasks())
    peers = [await join_json(client, f"idle{i}") for i in range(10)]
    assert len(asyncio.all_tasks()) <= tasks_before + 2  # not one (or more) per connection
    assert len(server.connections) <= 1  # the test client's own keep-alive, at most
    ack = await peers[0].request("send", room="lobby", text="still there")
    await peers[9].expect("message", offset=ack["offset"])
    await peers[1].ws.close()
    await peers[0].expect("presence", event="leave", name="idle1")


async def test_a_refused_handshake_leaves_nothing_in_aiohttps_server(client: TestClient) -> None:
    """Guards against aiohttp keeping the request handler of a connection refused at the
    handshake: the link owns the transport from the upgrade on, so aiohttp never hears
    of its end unless told."""
    server = client.server.handler
    before = len(server.connections)
    for _ in range(5):
        ws = await client.ws_connect("/ws", protocols=("chat.v1.json",))  # no name: 1008
        await ws.receive(timeout=WAIT)  # the error
        await ws.receive(timeout=WAIT)  # the close
        await ws.close()
    async with asyncio.timeout(WAIT):
        while len(server.connections) > before:  # noqa: ASYNC110 (aiohttp has no event for it)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "frames",
    [
        [encode_frame(CLOSE, (1000).to_bytes(2, "big") + b"r" * 124)],  # 126 bytes
        [encode_frame(TEXT, b"unmasked", masked=False), encode_frame(CLOSE, b"")],
    ],
    ids=["close-over-125-bytes", "unmasked-then-close-in-one-write"],
)
async def test_a_refused_frame_followed_by_a_close_is_still_refused_with_1002(
    client: TestClient, frames: list[bytes]
) -> None:
    """Guards against a Close read after (or as) a refused frame being taken for the
    answer to a Close of the server's that was never sent: the refusal is lost, and the
    connection stays open with nothing read from it any more (RFC 6455 5.5: a control
    frame over 125 bytes, 5.1: an unmasked frame, both fail the connection with 1002)."""
    raw = await open_raw(client, "refusedclose")
    try:
        await raw.write(b"".join(frames))
        assert (await close_frame_of(raw))[0] == 1002
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()


@pytest.mark.parametrize("broker_kind", ["redis"])  # each send waits for a round trip
@pytest.mark.parametrize("half_close", [False, True], ids=["open", "then-fin"])
async def test_the_messages_before_a_clients_close_are_run_before_it_is_answered(
    client: TestClient, half_close: bool
) -> None:
    """Guards against a client's Close dropping the messages it sent before it (queued,
    not yet run): a client that sends and closes at once loses what it sent, which
    aiohttp's reader, run in order, never did; and against the answer to that Close
    not being written when the client also ended its side of TCP (a FIN) after it."""
    watcher = await join_json(client, "watcher")
    raw = await open_raw(client, "leaver")
    try:
        sends = [
            encode_frame(
                TEXT, json.dumps({"type": "send", "room": "lobby", "text": f"m{i}"}).encode()
            )
            for i in range(5)
        ]
        await raw.write(b"".join(sends) + encode_frame(CLOSE, (1000).to_bytes(2, "big")))
        if half_close:
            raw.sock.shutdown(socket.SHUT_WR)
        assert (await close_frame_of(raw))[0] == 1000
        for i in range(5):
            await watcher.expect("message", text=f"m{i}")
    finally:
        raw.close()
