"""Moderators, operators and two nodes on one chat, for the moderation tests and the
console API."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.auth import mint
from tests.conftest import JsonPeer
from tests.plugins.auth import SECRET, Gateway, connect_json

API_KEY = "the-api-key"


OPERATOR = {"Authorization": f"Bearer {API_KEY}"}


MODERATOR = ["team-*"]  # the rooms the moderator's token moderates


async def two_nodes(gateway: Gateway, broker_kind: str, **settings: Any) -> list[TestClient]:
    """Two nodes of one chat (on the in-process broker, one node twice)."""
    first = await gateway(jwt_secret=SECRET, api_key=API_KEY, node_id="n1", **settings)
    if broker_kind == "memory":
        return [first, first]
    return [first, await gateway(jwt_secret=SECRET, api_key=API_KEY, node_id="n2", **settings)]


async def user(
    node: TestClient, name: str, room: str = "team-a", moderates: list[str] | None = None
) -> JsonPeer:
    """A JSON connection of `name` (moderating `moderates`), welcomed and in `room`."""
    token = mint(SECRET, name, 60, moderates=moderates)
    peer = await connect_json(node, token=token, room=room)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed", room=room)
    return peer
