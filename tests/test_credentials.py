"""Bearer secrets outside the URL (docs/protocol.md, Credentials): proxies log URLs, so
the token and the session secret also travel as subprotocols, which browsers can offer,
and the node answers with the mode alone."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from multidict import MultiDict

from gateway.auth import mint
from tests.conftest import (
    JSON_PROTOCOL,
    JsonPeer,
    TextPeer,
    join_json,
    read_metric,
    refused_status,
)

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


memory_only = pytest.mark.parametrize("broker_kind", ["memory"], indirect=True)
NO_MODE_OFFERS = [
    ("chat.v2.json", "chat.token.a-token-value"),  # a mode this node does not know
    ("chat.v1.JSON", "chat.session.a-session-secret"),  # a mode, wrongly cased
    ("chat.token.a-token-value",),  # a credential alone
    ("graphql-ws", "chat.session.a-session-secret"),  # someone else's mode
    ("CHAT.V1.TEXT",),
]


@memory_only
@pytest.mark.parametrize("offered", NO_MODE_OFFERS)
async def test_an_offer_of_chat_subprotocols_without_a_mode_is_refused_400(
    client: TestClient, offered: tuple[str, ...]
) -> None:
    """Guards against accepting such an offer in text mode (not what the client asked
    for) after aiohttp logged the whole offer, a token or session secret included."""
    assert await refused_status(client, protocols=offered) == 400
    response = await client.get("/ws", headers={"Sec-WebSocket-Protocol": ", ".join(offered)})
    assert response.status == 400
    body = await response.text()
    assert "no mode: offer chat.v1.json or chat.v1.text" in body, body
    assert "a-token-value" not in body and "a-session-secret" not in body
    refused = 'chat_handshakes_refused_total{reason="subprotocol"}'
    assert await read_metric(client, refused) == 2  # both


@memory_only
async def test_chat_subprotocols_split_over_two_headers_are_refused_400(
    client: TestClient,
) -> None:
    """Guards against a mode missed in a second Sec-WebSocket-Protocol header (aiohttp
    reads only the first, so the node went on in text mode and logged the first one,
    the token in it)."""
    headers = MultiDict(
        [("Sec-WebSocket-Protocol", "chat.token.a-token-value"),
         ("Sec-WebSocket-Protocol", JSON_PROTOCOL)]
    )  # fmt: skip
    response = await client.get("/ws", headers=headers)
    assert response.status == 400
    assert "in one Sec-WebSocket-Protocol header" in await response.text()


@memory_only
@pytest.mark.parametrize(
    "offered",
    [(JSON_PROTOCOL, "chat.v2.json", "chat.token.x"), ("chat.v2.json", JSON_PROTOCOL), ("other",)],
)
async def test_an_offer_with_a_mode_or_without_our_family_is_served(
    client: TestClient, offered: tuple[str, ...]
) -> None:
    """An offer naming a mode among others is served in that mode (a newer client may
    offer the versions it speaks); one naming none of ours stays text mode."""
    ws = await client.ws_connect("/ws", params={"name": "olga"}, protocols=offered)
    expected = JSON_PROTOCOL if JSON_PROTOCOL in offered else None
    assert ws.protocol == expected
    await ws.close()
