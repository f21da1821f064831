"""Connecting to gateway processes (tooling/gateway.py): an HTTP client session
(`http`), and JSON-mode peers (`connect`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from tests.conftest import JSON_PROTOCOL, JsonPeer
from tooling.gateway import GatewayProcess


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP (and WebSocket) client session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(
    http: aiohttp.ClientSession,
    node: GatewayProcess,
    name: str | None,
    *,
    offers: Sequence[str] = (),
    **query: str,
) -> JsonPeer:
    """A JSON-mode peer of `node` as `name` (None: a token in `query` names it), past its
    `welcome` (the first frame, as the protocol has it) and its first `subscribed` (to
    `room`, when `query` names one); `offers` are subprotocols offered after the mode."""
    params = {"name": name, **query} if name is not None else query
    ws = await http.ws_connect(node.url, params=params, protocols=(JSON_PROTOCOL, *offers))
    peer = JsonPeer(ws)
    peer.welcome = await peer.recv()
    assert peer.welcome["type"] == "welcome", peer.welcome
    room = {"room": query["room"]} if "room" in query else {}
    peer.subscribed = await peer.expect("subscribed", **room)
    return peer
