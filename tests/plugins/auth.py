"""Signed-in users for the tests (tests/test_auth.py and the modules that need a
signed user): the shared secret, a gateway with auth on, tokens and logins."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from tests.conftest import (
    JSON_PROTOCOL,
    JsonPeer,
)

SECRET = "a-test-secret-of-at-least-64-bytes-so-that-HS512-tokens-can-be-forged"


Gateway = Callable[..., Awaitable[TestClient]]


async def connect_json(client: TestClient, **query: str) -> JsonPeer:
    ws = await client.ws_connect("/ws", params=query, protocols=(JSON_PROTOCOL,))
    return JsonPeer(ws)


async def login(client: TestClient, name: str, room: str = "lobby") -> JsonPeer:
    """A JSON connection with a fresh token for `name`, welcomed and in `room`."""
    peer = await connect_json(client, token=mint(SECRET, name, 60), room=room)
    peer.welcome = await peer.expect("welcome")
    peer.subscribed = await peer.expect("subscribed", room=room)
    return peer


def signed(
    claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256", expires: bool = True
) -> str:
    """A token of `claims`, with an `exp` ten minutes ahead unless they set one (or not
    `expires`), so each refusal below is for its own reason."""
    if expires:
        claims = {"exp": int(time.time()) + 600, **claims}
    return jwt.encode(claims, secret, algorithm=algorithm)
