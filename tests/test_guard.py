"""Admission to /ws (gateway/guard.py): refusals before the upgrade, nobody else harmed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import JSON_PROTOCOL, WAIT, JsonPeer, TextPeer, join_json, refused_status

Gateway = Callable[..., Awaitable[TestClient]]
SITE = "https://chat.example.com"


async def join_once_the_node_lets_in(client: TestClient, name: str) -> JsonPeer:
    """Join as `name`, retrying 503/429 while a closed connection's handler finishes
    (its slot is freed when the handler returns); fails after WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                return await join_json(client, name)
            except aiohttp.WSServerHandshakeError as error:
                if error.status not in (503, 429):
                    raise
            await asyncio.sleep(0.02)


async def still_chatting(a: JsonPeer, b: JsonPeer) -> None:
    await a.request("send", room="lobby", text="still here")
    await b.expect("message", room="lobby", text="still here")


async def test_a_foreign_origin_is_refused_403_before_the_upgrade(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against cross-site WebSocket hijacking: a page on another site opening /ws
    from a visitor's browser (with the visitor's cookies) must get 403, not a socket."""
    client = await gateway(allowed_origins=f"{SITE}, https://other.example.com")
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    with caplog.at_level(logging.WARNING, logger="gateway.guard"):
        assert await refused_status(client, headers={"Origin": "https://evil.example"}) == 403
    assert any("origin" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    await still_chatting(alice, bob)


async def test_a_listed_origin_and_no_origin_are_admitted(gateway: Gateway) -> None:
    """Guards against the origin check locking out the site itself (any case, a trailing
    slash) or non-browser clients, which send no Origin."""
    client = await gateway(allowed_origins=SITE)
    ws = await client.ws_connect("/ws", params={"name": "carol"}, headers={"Origin": SITE})
    await ws.close()
    ws = await client.ws_connect(
        "/ws", params={"name": "dave"}, headers={"Origin": "HTTPS://Chat.Example.com/"}
    )
    await ws.close()
    await join_json(client, "erin")  # no Origin header


async def test_without_a_list_every_origin_is_admitted(gateway: Gateway) -> None:
    """Guards against the default (empty list) refusing browsers."""
    client = await gateway()
    ws = await client.ws_connect(
        "/ws", params={"name": "frank"}, headers={"Origin": "https://anywhere.example"}
    )
    await ws.close()


async def test_over_max_connections_a_new_one_gets_503_and_a_freed_slot_is_reused(
    gateway: Gateway,
) -> None:
    """Guards against a node taking connections without bound (memory, file descriptors)
    and against the count leaking: a slot freed by a closed connection is usable again."""
    client = await gateway(max_connections=2)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    assert await refused_status(client) == 503
    await still_chatting(alice, bob)
    assert (await client.get("/healthz")).status == 200  # other routes are not limited
    await bob.ws.close()
    carol = await join_once_the_node_lets_in(client, "carol")
    await still_chatting(alice, carol)


async def test_max_connections_zero_is_unlimited(gateway: Gateway) -> None:
    """Guards against 0 (documented as unlimited) refusing everyone."""
    client = await gateway(max_connections=0)
    await join_json(client, "alice")
    await join_json(client, "bob")


async def test_over_max_connections_per_ip_that_address_gets_429_and_others_are_let_in(
    gateway: Gateway,
) -> None:
    """Guards against one address holding every connection of a node (a flood from one
    host), and against the per-address count leaking when connections end."""
    client = await gateway(max_connections_per_ip=2)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    assert await refused_status(client) == 429
    await still_chatting(alice, bob)
    # Another address (127.0.0.2, loopback on Linux) is not held to 127.0.0.1's count.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other_host:
        ws = await other_host.ws_connect(
            client.make_url("/ws"), params={"name": "carol"}, protocols=(JSON_PROTOCOL,)
        )
        carol = JsonPeer(ws)
        await carol.expect("subscribed", room="lobby")
        await still_chatting(alice, carol)
        await ws.close()
    await bob.ws.close()
    dave = await join_once_the_node_lets_in(client, "dave")
    await still_chatting(alice, dave)


async def test_max_connections_per_ip_zero_is_unlimited(gateway: Gateway) -> None:
    """Guards against 0 (documented as unlimited) refusing everyone."""
    client = await gateway(max_connections_per_ip=0)
    for name in ("alice", "bob", "carol"):
        await join_json(client, name)


async def test_a_text_connection_that_gives_no_name_in_time_is_closed_1008(
    gateway: Gateway,
) -> None:
    """Guards against unnamed text-mode sockets (never answering "Your name:", or only
    with bad names) holding a connection slot for ever; the deadline is not reset by a
    refused name, and named users are not touched."""
    client = await gateway(name_timeout=0.3)
    alice = await join_json(client, "alice")
    bob = await join_json(client, "bob")
    silent = TextPeer(await client.ws_connect("/ws"))
    await silent.expect_line("Your name:")
    stubborn = TextPeer(await client.ws_connect("/ws"))
    await stubborn.expect_line("Your name:")
    await stubborn.say("in\u200bvisible")
    await stubborn.expect_line("! ...")
    for peer in (silent, stubborn):
        await peer.expect_line("! no name given in time")
        assert await peer.close_code() == 1008
    await still_chatting(alice, bob)


async def test_a_name_given_in_time_is_kept_past_the_timeout(gateway: Gateway) -> None:
    """Guards against the timeout firing after the name was given (the deadline must only
    bound the naming)."""
    client = await gateway(name_timeout=0.3)
    alice = await join_json(client, "alice")
    peer = TextPeer(await client.ws_connect("/ws"))
    await peer.expect_line("Your name:")
    await peer.say("carol")
    await peer.expect_line("* welcome, carol! ...")
    await asyncio.sleep(0.5)
    await peer.say("still here")
    await alice.expect("message", room="lobby", text="still here")
