"""Every protection of the hardening issue, row by row: the offender is refused, the
refusal is logged (and counted where a metric exists), and the people already chatting
on the node are not harmed.

The protections' finer behaviour is tested beside their code (test_guard, test_auth,
test_limits, test_names, test_http); this file is the one place that walks the list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from tests.conftest import (
    JSON_PROTOCOL,
    JsonPeer,
    TextPeer,
    join_json,
    read_metric,
    refused_status,
)

Gateway = Callable[..., Awaitable[TestClient]]
SECRET = "a-secret-for-the-refusal-tests-of-32-bytes-or-more"


async def json_close(client: TestClient, query: dict[str, str]) -> tuple[str, int | None]:
    """Open a JSON connection that is refused: its error code and close code."""
    ws = await client.ws_connect("/ws", params=query, protocols=(JSON_PROTOCOL,))
    peer = JsonPeer(ws)
    error = await peer.expect("error")
    return str(error["code"]), await peer.close_code()


# What each row does to the node; each returns what the offender saw.


async def foreign_origin(client: TestClient) -> Any:
    return await refused_status(client, headers={"Origin": "https://evil.example"})


async def one_too_many(client: TestClient) -> Any:
    return await refused_status(client)  # the bystanders hold the node's two slots


async def bad_token(client: TestClient) -> Any:
    return await json_close(client, {"token": mint(SECRET[::-1], "alice", 60)})


async def bidi_name(client: TestClient) -> Any:
    return await json_close(client, {"name": "evil\u202egnp.exe"})


async def silent_text_client(client: TestClient) -> Any:
    peer = TextPeer(await client.ws_connect("/ws"))
    await peer.expect_line("! no name given in time")
    return await peer.close_code()


async def wrong_api_key(client: TestClient) -> Any:
    response = await client.post(
        "/api/rooms/lobby/messages",
        json={"from": "bot", "text": "hi"},
        headers={"Authorization": "Bearer wrong"},
    )
    return response.status


async def flood(client: TestClient) -> Any:
    peer = await join_json(client, "flooder")
    for _ in range(10):
        await peer.send(type="send", room="lobby", text="spam")
    await peer.expect("error", code="rate_limited")
    return await peer.close_code()


async def giant_frame(client: TestClient) -> Any:
    peer = await join_json(client, "giant")
    await peer.ws.send_str("x" * 5000)
    return await peer.close_code()


async def invalid_utf8(client: TestClient) -> Any:
    peer = await join_json(client, "garbler")
    await peer.ws._writer.send_frame(b'{"type":"ping","x":"\xff"}', aiohttp.WSMsgType.TEXT)
    return await peer.close_code()


async def too_many_rooms(client: TestClient) -> Any:
    peer = await join_json(client, "roamer")
    await peer.request("join", room="second")
    error = await peer.request("join", room="third")
    await peer.request("ping")  # the connection stays
    return error["code"]


@dataclass(frozen=True)
class Row:
    """One protection: how to start the node, how to offend, what must be seen."""

    settings: dict[str, Any]
    offend: Callable[[TestClient], Awaitable[Any]]
    refused: Any
    logger: str
    level: int
    metric: str | None = None  # a /metrics sample that must go up
    increase: int = 1
    bystander_query: dict[str, str] = field(default_factory=dict)


ROWS = {
    "origin": Row(
        {"allowed_origins": "https://chat.example.com"},
        foreign_origin,
        403,
        "gateway.guard",
        logging.WARNING,
        'chat_handshakes_refused_total{reason="origin"}',
    ),
    "max-connections": Row(
        {"max_connections": 2},
        one_too_many,
        503,
        "gateway.guard",
        logging.WARNING,
        'chat_handshakes_refused_total{reason="full"}',
    ),
    "per-ip": Row(
        {"max_connections_per_ip": 2},
        one_too_many,
        429,
        "gateway.guard",
        logging.WARNING,
        'chat_handshakes_refused_total{reason="per_ip"}',
    ),
    "auth": Row(
        {"jwt_secret": SECRET},
        bad_token,
        ("unauthorized", 1008),
        "gateway.ws",
        logging.WARNING,
        'chat_handshakes_refused_total{reason="unauthorized"}',
    ),
    "lookalike-name": Row(
        {},
        bidi_name,
        ("invalid_name", 1008),
        "gateway.ws",
        logging.INFO,
        'chat_handshakes_refused_total{reason="invalid_name"}',
    ),
    "name-timeout": Row(
        {"name_timeout": 0.2},
        silent_text_client,
        1008,
        "gateway.ws",
        logging.INFO,
        'chat_handshakes_refused_total{reason="name_timeout"}',
    ),
    "api-key": Row({"api_key": "right"}, wrong_api_key, 401, "gateway.http", logging.WARNING),
    "rate-limit": Row(
        {"rate_per_second": 0.001, "rate_burst": 1, "rate_strikes": 3},
        flood,
        1008,
        "gateway.handlers",
        logging.WARNING,
        'chat_errors_total{code="rate_limited"}',
        increase=3,  # the strikes
    ),
    "frame-limit": Row(
        {"max_frame_bytes": 4096}, giant_frame, 1009, "gateway.served", logging.INFO
    ),
    "invalid-utf8": Row({}, invalid_utf8, 1007, "gateway.served", logging.INFO),
    "rooms-per-connection": Row(
        {"max_rooms_per_connection": 2},
        too_many_rooms,
        "bad_frame",
        "gateway.served",
        logging.DEBUG,
        'chat_errors_total{code="bad_frame"}',
    ),
}


async def sample(client: TestClient, name: str) -> float:
    return await read_metric(client, name, 0.0)


async def bystanders(client: TestClient, auth: bool) -> tuple[JsonPeer, JsonPeer]:
    if not auth:
        return await join_json(client, "alice"), await join_json(client, "bob")
    return (
        await join_json(client, "alice", token=mint(SECRET, "alice", 60)),
        await join_json(client, "bob", token=mint(SECRET, "bob", 60)),
    )


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
async def test_each_protection_refuses_logs_and_harms_nobody_else(
    gateway: Gateway, row: Row, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a protection that is silent (an attack nobody sees), that does not
    hold, or that takes the node or the people on it down with the offender."""
    client = await gateway(**row.settings)
    alice, bob = await bystanders(client, "jwt_secret" in row.settings)
    before = await sample(client, row.metric) if row.metric else 0.0
    with caplog.at_level(row.level, logger=row.logger):
        assert await row.offend(client) == row.refused
    logged = [r for r in caplog.records if r.name == row.logger and r.levelno >= row.level]
    assert logged, f"nothing logged by {row.logger}"
    if row.metric:
        assert await sample(client, row.metric) == before + row.increase
    await alice.request("send", room="lobby", text="still here")
    await bob.expect("message", room="lobby", text="still here")


async def test_heartbeats_close_a_dead_peer_and_keep_a_live_one(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against dead peers (a laptop closed, a NAT that forgot the flow) holding a
    connection and a presence for ever. Not a row above: there the bystanders do not read
    all the time, and a client that does not read does not answer pings either."""
    client = await gateway(heartbeat=0.2)
    live = await join_json(client, "live")
    ws = await client.ws_connect(
        "/ws", params={"name": "zombie"}, protocols=(JSON_PROTOCOL,), autoping=False
    )
    zombie = JsonPeer(ws)  # never answers the node's pings
    await zombie.expect("welcome")
    with caplog.at_level(logging.INFO, logger="gateway.served"):
        # `live` reads (and so answers pings) for as long as the zombie takes to die
        code, _ = await asyncio.gather(
            zombie.close_code(), live.expect("presence", event="leave", name="zombie")
        )
    assert code == 1006  # dropped, not closed politely: the peer is gone
    assert any("PONG" in r.getMessage() for r in caplog.records if r.name == "gateway.served")
    ack = await live.request("send", room="lobby", text="still here")
    await live.expect("message", offset=ack["offset"])
