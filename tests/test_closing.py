"""Every close the server starts is a closing handshake (RFC 6455 7.1.1), and the frame
layer refuses what the RFC says a server must refuse.

The server writes its close frame, waits (bounded) for the client's Close, and only
then closes TCP with a FIN. A client therefore reads the code the server sent, whatever
client it is and even when it was busy for a moment when the close came: these tests
use aiohttp's own client and read `ws.close_code`, the way a bot does (not the code in
the close frame, which the suite's `Peer.close_code` reads), and a bare socket that
checks the server is still waiting while the Close is held back, then gets a FIN.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, WAIT, JsonPeer, TextPeer, join_json, join_text
from tests.plugins.frames import (
    close_frame_of,
    ends_with_a_fin,
    open_raw,
    sized_send,
    still_open_after,
)
from tooling.gateway import GatewayProcess
from tooling.wsclient import CONTINUATION, PING, TEXT, encode_frame

StartGateway = Callable[..., Awaitable[TestClient]]
API_KEY = "the-api-key"
OPERATOR = {"Authorization": f"Bearer {API_KEY}"}
BUSY = 0.2  # seconds a client spends on something else when the close arrives
RUNS = 3  # each close, this many times: a race would show in some of them


async def close_code_after_busy(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Be busy for a moment (the close arrives meanwhile), then read until the end;
    the close code aiohttp's client reports."""
    await asyncio.sleep(BUSY)  # the scenario: a client doing something else, not a wait
    async with asyncio.timeout(WAIT):
        while (await ws.receive()).type not in (WSMsgType.CLOSED, WSMsgType.ERROR):
            pass
    return ws.close_code


async def operator_disconnect(client: TestClient, run: int) -> Any:
    peer = await join_json(client, f"vic{run}")
    response = await client.post(f"/api/users/vic{run}/disconnect", headers=OPERATOR)
    assert response.status == 202
    return peer.ws


async def takeover(client: TestClient, run: int) -> Any:
    first = await join_json(client, f"tab{run}")
    protocols = (JSON_PROTOCOL, f"chat.session.{first.welcome['session']}")
    ws = await client.ws_connect("/ws", params={"name": f"tab{run}"}, protocols=protocols)
    assert (await JsonPeer(ws).expect("welcome"))["name"] == f"tab{run}"
    return first.ws


async def rate_abuse(client: TestClient, run: int) -> Any:
    peer = await join_json(client, f"fast{run}")
    for _ in range(5):
        await peer.send(type="send", room="lobby", text="spam")
    return peer.ws


async def frame_too_large(client: TestClient, run: int) -> Any:
    peer = await join_json(client, f"big{run}")
    await peer.ws.send_str(sized_send(2049)[0])
    return peer.ws


async def quit_command(client: TestClient, run: int) -> Any:
    peer = await join_text(client, f"quitter{run}")
    await peer.say("/quit")
    return peer.ws


async def name_timeout(client: TestClient, run: int) -> Any:
    peer = TextPeer(await client.ws_connect("/ws"))
    assert await peer.recv() == "Your name:"
    return peer.ws


CLOSES = {
    "operator-4001": (operator_disconnect, 4001),
    "takeover-4000": (takeover, 4000),
    "rate-1008": (rate_abuse, 1008),
    "too-large-1009": (frame_too_large, 1009),
    "quit-1000": (quit_command, 1000),
    "name-timeout-1008": (name_timeout, 1008),
}


@pytest.mark.parametrize("case", list(CLOSES), ids=list(CLOSES))
async def test_aiohttps_client_reads_the_code_the_server_sent(
    gateway: StartGateway, case: str
) -> None:
    """Guards against the server dropping TCP right after its close frame: a client busy
    for a moment then finds the connection gone before it could answer, and aiohttp's
    client reports 1006 (the network broke) instead of the server's code."""
    start, code = CLOSES[case]
    client = await gateway(
        api_key=API_KEY,
        max_frame_bytes=2048,
        rate_per_second=1,
        rate_burst=2,
        rate_strikes=3,
        name_timeout=0.3,
    )
    for run in range(RUNS):
        ws = await start(client, run)
        assert await close_code_after_busy(ws) == code, f"run {run}"


async def test_a_shutdown_closes_with_1001_as_aiohttps_client_sees_it(client: TestClient) -> None:
    """Guards against a stopping node cutting connections after its 1001 close frame."""
    peers = [await join_json(client, f"last{n}") for n in range(RUNS)]
    stopping = asyncio.create_task(client.app.shutdown())
    codes = await asyncio.gather(*(close_code_after_busy(peer.ws) for peer in peers))
    assert codes == [1001] * RUNS
    async with asyncio.timeout(WAIT):
        await stopping


async def test_a_sigterm_drain_closes_with_1001_as_aiohttps_client_sees_it() -> None:
    """Guards against the drain of a real node (uvloop, SIGTERM) cutting its connections
    after the 1001 close frame: they must see 1001, to reconnect elsewhere at once."""
    for run in range(2):
        node = GatewayProcess(None, "--drain-seconds", "0.2").start()
        try:
            async with aiohttp.ClientSession() as http:
                sockets = [
                    await http.ws_connect(
                        node.url, params={"name": f"u{run}-{n}"}, protocols=(JSON_PROTOCOL,)
                    )
                    for n in range(RUNS)
                ]
                for ws in sockets:
                    assert (await ws.receive_json())["type"] == "welcome"
                node.send_signal(signal.SIGTERM)
                codes = await asyncio.gather(*(close_code_after_busy(ws) for ws in sockets))
                assert codes == [1001] * RUNS, f"run {run}"
        finally:
            node.close()


async def test_the_server_waits_for_the_clients_close_then_sends_a_fin(
    gateway: StartGateway,
) -> None:
    """Guards against the server closing TCP right after its close frame (RFC 6455
    7.1.1: it waits for the client's Close), and against it never closing at all."""
    client = await gateway(api_key=API_KEY)
    raw = await open_raw(client, "held")
    try:
        response = await client.post("/api/users/held/disconnect", headers=OPERATOR)
        assert response.status == 202
        assert (await close_frame_of(raw))[0] == 4001
        assert await still_open_after(raw, 0.5), "TCP ended before the client's Close"
        await raw.send_frame(8, (1000).to_bytes(2, "big"))
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()


async def test_a_client_that_never_answers_the_close_is_closed_after_the_timeout(
    gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against a client that never answers holding its connection (and its slot)
    open: after CLOSE_TIMEOUT the server closes TCP anyway, with a FIN."""
    monkeypatch.setattr("gateway.session.CLOSE_TIMEOUT", 0.3)
    client = await gateway(api_key=API_KEY)
    bob = await join_json(client, "bob")
    raw = await open_raw(client, "mute")
    try:
        await client.post("/api/users/mute/disconnect", headers=OPERATOR)
        assert (await close_frame_of(raw))[0] == 4001
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()
    await bob.expect("presence", event="leave", name="mute")


async def test_a_clients_close_is_answered_then_tcp_ends(client: TestClient) -> None:
    """Guards against a client's Close going unanswered (RFC 6455 5.5.1), or TCP ending
    before the answer."""
    raw = await open_raw(client, "leaver")
    try:
        await raw.send_frame(8, (1000).to_bytes(2, "big"))
        assert (await close_frame_of(raw))[0] == 1000
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()


@pytest.mark.parametrize("mode", ["json", "text"])
async def test_an_unmasked_frame_closes_with_1002_and_is_not_run(
    client: TestClient, mode: str
) -> None:
    """Guards against unmasked client frames being read as if masked (RFC 6455 5.1: the
    server must close the connection, 1002). The frames before it are run; the
    unmasked one is not."""
    bob = await join_json(client, "bob")
    raw = await open_raw(client, "bare", text=mode == "text")
    try:
        for text, masked in (("masked", True), ("unmasked", False)):
            line = f'{{"type":"send","room":"lobby","text":"{text}"}}' if mode == "json" else text
            await raw.send_frame(1, line.encode(), masked=masked)
        code, texts = await close_frame_of(raw)
        assert code == 1002
        if mode == "text":
            assert texts[-1] == b"! frames from a client must be masked"
        await raw.send_frame(8, (1002).to_bytes(2, "big"))
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()
    await bob.expect("message", text="masked")
    await bob.expect("presence", event="leave", name="bare")
    assert [f["text"] for f in bob.frames if f["type"] == "message"] == ["masked"]


BREACHES = {
    "reserved-bits": ([encode_frame(TEXT, b"hi", rsv=4)], "reserved bits set: no extension ..."),
    "unknown-opcode": ([encode_frame(3, b"x")], "unknown opcode 3"),
    "fragmented-ping": (
        [encode_frame(PING, b"p", fin=False)],
        "a control frame must be one frame of ...",
    ),
    "orphan-continuation": ([encode_frame(CONTINUATION, b"orphan")], "a fragment out of sequence"),
    "text-inside-fragments": (
        [encode_frame(TEXT, b"one", fin=False), encode_frame(TEXT, b"two")],
        "a fragment out of sequence",
    ),
}


@pytest.mark.parametrize("case", list(BREACHES), ids=list(BREACHES))
async def test_a_broken_frame_closes_with_1002_in_a_handshake(
    client: TestClient, case: str
) -> None:
    """Guards against a frame that breaks the protocol (RFC 6455 5.2 to 5.5) ending the
    connection without the handshake (aiohttp alone cuts TCP right after its 1002), or
    a text-mode client not being told why."""
    frames, reason = BREACHES[case]
    raw = await open_raw(client, "breaker", text=True)
    try:
        await raw.write(b"".join(frames))
        code, texts = await close_frame_of(raw)
        assert code == 1002
        line = texts[-1].decode()
        assert line.startswith("! " + reason.removesuffix("...")), line
        assert await still_open_after(raw, 0.3), "TCP ended before the client's Close"
        await raw.send_frame(8, (1002).to_bytes(2, "big"))
        assert await ends_with_a_fin(raw)
    finally:
        raw.close()


async def test_a_refused_upgrade_leaves_the_connection_to_http(client: TestClient) -> None:
    """A GET /ws that is no WebSocket handshake is answered 400, and the frame watch
    put in place for the upgrade does not stay on the kept-alive connection: the next
    request on it is read as HTTP and served (not misread as a frame)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(b"GET /ws HTTP/1.1\r\nHost: test\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 "), head
            length = next(
                int(line.partition(b":")[2])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            answer = await reader.read()  # to the end: the server closes after it
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        writer.close()


async def text_peer_told(client: TestClient, name: str, act: Callable[[TextPeer], Any]) -> Any:
    """Join in text mode, `act`, and read to the close; (its code, its last line)."""
    peer = await join_text(client, name)
    await act(peer)
    code = await peer.close_code()
    return code, peer.frames[-1]


async def test_a_text_client_is_told_why_before_every_close(gateway: StartGateway) -> None:
    """Guards against a text-mode client (websocat, wscat) being closed without a word:
    the close frame's reason is not shown by such tools, a last line is."""
    client = await gateway(api_key=API_KEY, rate_per_second=1, rate_burst=2, rate_strikes=3)

    async def quit_(peer: TextPeer) -> None:
        await peer.say("/quit")

    async def too_large(peer: TextPeer) -> None:
        await peer.say("x" * 70_000)

    async def disconnected(peer: TextPeer) -> None:
        await client.post("/api/users/dis/disconnect", headers=OPERATOR)

    assert await text_peer_told(client, "qui", quit_) == (1000, "* bye")
    told = await text_peer_told(client, "big", too_large)
    assert told == (1009, "! frame too large (64 KiB at most)")
    told = await text_peer_told(client, "dis", disconnected)
    assert told == (4001, "! disconnected by an operator")


async def test_a_json_client_gets_no_extra_frame_before_a_close(gateway: StartGateway) -> None:
    """Guards against text-mode last lines leaking into JSON mode, whose close code and
    reason say it all."""
    client = await gateway(api_key=API_KEY)
    peer = await join_json(client, "jay")
    await client.post("/api/users/jay/disconnect", headers=OPERATOR)
    assert await peer.close_code() == 4001
    kinds = {frame["type"] for frame in peer.frames}
    assert kinds == {"welcome", "subscribed", "presence"}  # no farewell frame
