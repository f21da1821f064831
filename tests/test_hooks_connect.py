"""The connect hook (docs/operations.md, "Hooks"): the application names each connection, or refuses
it, from the handshake's cookies and headers. The application is tests/backend_app.py,
a real HTTP server in the test process; the gateways are real nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.__main__ import describe
from gateway.auth import mint
from gateway.config import Settings
from tests.backend_app import BackendApp
from tests.conftest import JSON_PROTOCOL, JsonPeer, TextPeer, read_metric
from tooling.gateway import GatewayProcess
from tooling.ports import free_port

Gateway = Callable[..., Awaitable[TestClient]]
JWT_SECRET = "a-jwt-secret-of-at-least-thirty-two-bytes-for-hooks"
API_KEY = "an-operator-key-for-the-hook-tests"
COOKIE = "sid=s3ss10n-c00k1e-never-logged; theme=dark"


def hooked(backend_app: BackendApp, **overrides: Any) -> dict[str, Any]:
    """Settings overrides with the connect hook on `backend_app`."""
    return {
        "backend_secret": backend_app.secret,
        "connect_hook_url": backend_app.url("/connect"),
        **overrides,
    }


async def connect(client: TestClient, **kwargs: Any) -> JsonPeer:
    """A JSON-mode handshake (nothing read yet)."""
    params = kwargs.pop("params", {})
    ws = await client.ws_connect("/ws", params=params, protocols=(JSON_PROTOCOL,), **kwargs)
    return JsonPeer(ws)


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
async def test_a_cookie_names_the_connection_and_its_rooms_claim_holds(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a connection named by the client when the application decides,
    against the hook's `rooms` claim not being enforced, and against a hook request
    that leaves out what the application needs or is not signed."""
    backend_app.answer("/connect", 200, {"name": "Ada", "rooms": ["team-*"], "moderates": None})
    client = await gateway(**hooked(backend_app))
    peer = await connect(
        client, params={"room": "team-a"}, headers={"Cookie": COOKIE, "Origin": "http://app"}
    )
    welcome = await peer.expect("welcome")
    assert welcome["name"] == "Ada"
    await peer.expect("subscribed", room="team-a")
    refused = await peer.request("join", room="lobby")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert (await peer.request("join", room="team-b"))["type"] == "subscribed"
    # A second connection of the same user shares the name (auth: names are proven).
    again = await connect(client, params={"room": "team-a", "name": "ada"})
    assert (await again.expect("welcome"))["name"] == "Ada"

    [first, second] = backend_app.received("/connect")
    assert backend_app.signed(first) and backend_app.signed(second)
    body = first.json()
    assert body["headers"]["Cookie"] == COOKIE
    assert body["headers"]["Origin"] == "http://app"
    assert body["headers"]["Authorization"] is None
    assert body["headers"]["User-Agent"].startswith("Python")
    assert body == {
        "name": None,
        "room": "team-a",
        "token": None,
        "remote": "127.0.0.1",
        "headers": body["headers"],
        "claims": None,
    }
    assert second.json()["name"] == "ada"
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="connect",result="allowed"}') == 2
    )
    assert await read_metric(client, 'chat_hook_seconds_count{hook="connect"}') == 2
    await peer.ws.close()
    await again.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_a_refusal_closes_1008_before_welcome_with_the_applications_message(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a refused connection let in, welcomed, closed with another code,
    or shown the application's message raw (a control character or a line break in it
    would rewrite a terminal or forge a line)."""
    backend_app.answer("/connect", 403, {"message": "log in at example.com\x1b[2J\nforged"})
    client = await gateway(**hooked(backend_app))
    peer = await connect(client, params={"name": "mallory"})
    assert await peer.close_code() == 1008
    assert [f["type"] for f in peer.frames] == ["error"]
    assert peer.frames[0]["code"] == "unauthorized"
    assert peer.frames[0]["message"] == "log in at example.com\ufffd[2J forged"

    text = TextPeer(await client.ws_connect("/ws"))
    assert await text.close_code() == 1008
    assert text.frames == ["! log in at example.com\ufffd[2J forged"]

    backend_app.answer("/connect", 403, {"message": "x" * 5000})
    long = await connect(client, params={"name": "mallory"})
    assert await long.close_code() == 1008
    assert len(long.frames[0]["message"]) == 200

    backend_app.answer("/connect", 403)  # no message: a refusal all the same
    bare = await connect(client, params={"name": "mallory"})
    assert await bare.close_code() == 1008
    assert bare.frames[0]["message"] == "refused by the application"
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="connect",result="refused"}') == 4
    )


@pytest.mark.parametrize("broker_kind", ["memory"])
@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503},
        {"status": 500, "body": {"name": "ada"}},
        {"status": 302, "body": {"name": "ada"}},
        {"status": 201, "body": {"name": "ada"}},
        {"status": 200, "body": {"name": 5}},
        {"status": 200, "body": {"name": "a" * 33}},
        {"status": 200, "body": {"name": "ada", "rooms": "lobby"}},
        {"status": 200, "raw": b"ada"},
        {"status": 200, "body": {"name": "ada"}, "delay": 1.0},
    ],
    ids=["503", "500", "302", "201", "name-not-str", "bad-name", "bad-rooms", "not-json", "slow"],
)
async def test_an_application_that_does_not_answer_is_unavailable_1011(
    gateway: Gateway, backend_app: BackendApp, answer: dict[str, Any]
) -> None:
    """Guards against a connection let in (or named) without the application's yes:
    an error status, a body the contract does not allow, or no answer in time."""
    backend_app.answer("/connect", **answer)
    client = await gateway(**hooked(backend_app, hook_timeout=0.3))
    peer = await connect(client, params={"name": "ada"})
    assert await peer.close_code() == 1011
    assert [(f["type"], f["code"]) for f in peer.frames] == [("error", "unavailable")]
    assert "try again later" in peer.frames[0]["message"]
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="connect",result="unavailable"}')
        == 1
    )


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_an_application_down_is_unavailable_1011(gateway: Gateway) -> None:
    """Guards against a connection let in when nothing listens at the hook's URL."""
    secret = "a-backend-secret-of-thirty-two-bytes-or-more"
    url = f"http://127.0.0.1:{free_port()}/connect"
    client = await gateway(backend_secret=secret, connect_hook_url=url)
    peer = await connect(client, params={"name": "ada"})
    assert await peer.close_code() == 1011
    assert peer.frames[0]["code"] == "unavailable"


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_with_a_jwt_secret_a_token_is_verified_first_and_its_claims_told(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against the hook deciding on a forged token (it must be refused before the
    application is asked), and against the verified claims not reaching the hook.
    Without a token the hook alone decides: the token is optional."""
    backend_app.answer("/connect", 200, {"name": "ada"})
    client = await gateway(**hooked(backend_app, jwt_secret=JWT_SECRET))
    token = mint(JWT_SECRET, "ada", 60, rooms=["lobby"])
    peer = await connect(client, headers={"Authorization": f"Bearer {token}"})
    await peer.expect("subscribed", room="lobby")
    [asked] = backend_app.bodies("/connect")
    assert asked["token"] == token
    assert asked["claims"]["sub"] == "ada" and asked["claims"]["rooms"] == ["lobby"]

    forged = mint("another-secret-of-thirty-two-bytes-or-more-!!", "ada", 60)
    bad = await connect(client, headers={"Authorization": f"Bearer {forged}"})
    assert await bad.close_code() == 1008
    assert bad.frames[0]["code"] == "unauthorized"
    assert len(backend_app.received("/connect")) == 1  # not asked

    cookie = await connect(client, headers={"Cookie": COOKIE})
    assert (await cookie.expect("welcome"))["name"] == "ada"
    assert backend_app.bodies("/connect")[-1]["claims"] is None
    await peer.ws.close()
    await cookie.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_with_only_a_connect_hook_the_rest_reads_need_the_api_key(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against REST reads open to anyone while the application restricts rooms
    per connection (its `rooms` claim would be bypassed by GET .../messages)."""
    client = await gateway(**hooked(backend_app, api_key=API_KEY))
    assert (await client.get("/api/rooms/lobby/messages")).status == 401
    allowed = await client.get(
        "/api/rooms/lobby/messages", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert allowed.status == 200


def test_the_start_line_says_who_names_the_connections() -> None:
    """Guards against a node whose names come from the application saying "JWT"."""
    secret = "a-backend-secret-of-thirty-two-bytes-or-more"
    hook = Settings(backend_secret=secret, connect_hook_url="http://app/connect")
    assert "the connect hook names each connection" in describe(hook)
    both = Settings(backend_secret=secret, connect_hook_url="http://app/c", jwt_secret=JWT_SECRET)
    assert "told a token's claims" in describe(both)
    assert "auth on (JWT)" in describe(Settings(jwt_secret=JWT_SECRET))


async def test_cookies_never_reach_the_log(backend_app: BackendApp) -> None:
    """Guards against a handshake's cookies (sessions) in the log of a node at DEBUG,
    whether the application lets the connection in, refuses it or is down."""
    node = GatewayProcess(
        None,
        "--log-level",
        "DEBUG",
        "--backend-secret",
        backend_app.secret,
        "--connect-hook-url",
        backend_app.url("/connect"),
        "--hook-timeout",
        "0.3",
    )
    await asyncio.to_thread(node.start)
    try:
        cookie = {"Cookie": COOKIE}
        async with aiohttp.ClientSession() as http:
            backend_app.answer("/connect", 200, {"name": "ada"})
            allowed = JsonPeer(
                await http.ws_connect(node.url, headers=cookie, protocols=(JSON_PROTOCOL,))
            )
            await allowed.expect("subscribed")
            await allowed.ws.close()
            for answer in ({"status": 403}, {"status": 200, "delay": 1.0}):
                backend_app.answer("/connect", **answer)
                ws = await http.ws_connect(node.url, headers=cookie, protocols=(JSON_PROTOCOL,))
                assert await JsonPeer(ws).close_code() in (1008, 1011)
        await asyncio.to_thread(node.stop)
        log = node.log()
    finally:
        node.close()
    assert len(backend_app.received("/connect")) == 3
    assert "connect hook is unavailable" in log, log
    assert "s3ss10n" not in log and "c00k1e" not in log, log
