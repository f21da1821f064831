"""Connecting to gateway processes (tooling/gateway.py) in JSON mode."""

from __future__ import annotations

import aiohttp

from tests.conftest import JSON_PROTOCOL, JsonPeer
from tooling.gateway import GatewayProcess


async def connect(
    http: aiohttp.ClientSession, node: GatewayProcess, name: str, **query: str
) -> JsonPeer:
    """A JSON-mode peer of `node`, past its `welcome` and first `subscribed`."""
    params = {"name": name, **query}
    ws = await http.ws_connect(node.url, params=params, protocols=(JSON_PROTOCOL,))
    peer = JsonPeer(ws)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed")
    return peer
