"""Bearer secrets outside the URL (docs/protocol.md, Credentials): proxies log URLs, so
the token and the session secret also travel as subprotocols, which browsers can offer,
and the node answers with the mode alone."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from tests.conftest import JSON_PROTOCOL, JsonPeer, TextPeer, join_json

SECRET = "a-secret-of-at-least-thirty-two-bytes-for-tokens"


async def test_a_token_as_a_subprotocol_signs_in_and_is_never_echoed(gateway) -> None:
    """Guards against the page having to put its token in the URL (nginx logs it)."""
    client: TestClient = await gateway(jwt_secret=SECRET)
    token = mint(SECRET, "alice", 60)
    ws = await client.ws_connect("/ws", protocols=(JSON_PROTOCOL, f"chat.token.{token}"))
    assert ws.protocol == JSON_PROTOCOL
    peer = JsonPeer(ws)
    welcome = await peer.expect("welcome")
    assert welcome["name"] == "alice"
    await ws.close()


async def test_a_bad_token_as_a_subprotocol_is_refused(gateway) -> None:
    client: TestClient = await gateway(jwt_secret=SECRET)
    forged = mint("another-secret-of-thirty-two-bytes-or-more", "alice", 60)
    ws = await client.ws_connect("/ws", protocols=(JSON_PROTOCOL, f"chat.token.{forged}"))
    peer = JsonPeer(ws)
    first = await peer.recv()
    assert first["type"] == "error" and first["code"] == "unauthorized", first
    assert await peer.close_code() == 1008


async def test_a_session_as_a_subprotocol_takes_the_name_back(client: TestClient) -> None:
    """Guards against a reconnect having to carry ?session= (the takeover secret) in its URL."""
    first = await join_json(client, "alice")
    secret = first.welcome["session"]
    ws = await client.ws_connect(
        "/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL, f"chat.session.{secret}")
    )
    second = JsonPeer(ws)
    assert (await second.expect("welcome"))["name"] == "alice"
    assert await first.close_code() == 4000
    await ws.close()


async def test_a_wrong_session_as_a_subprotocol_is_name_taken(client: TestClient) -> None:
    await join_json(client, "alice")
    ws = await client.ws_connect(
        "/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL, "chat.session.not-it")
    )
    first = await JsonPeer(ws).recv()
    assert first["code"] == "name_taken", first


@pytest.mark.parametrize("offered", [("chat.v1.text",), ("chat.v1.text", "chat.session.x")])
async def test_text_mode_can_be_asked_for_by_subprotocol(client: TestClient, offered) -> None:
    """A browser that offers credentials must offer a mode the node answers with, or it
    fails the connection: chat.v1.text is text mode."""
    ws = await client.ws_connect("/ws", params={"name": "tess"}, protocols=offered)
    assert ws.protocol == "chat.v1.text"
    peer = TextPeer(ws)
    await ws.send_str("/who")
    await peer.expect_line("* members of lobby: tess")
    await ws.close()
