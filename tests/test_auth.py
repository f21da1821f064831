"""Auth (docs/protocol.md, "Auth"): with --jwt-secret the token decides the name."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import jwt
import pytest
import yarl
from aiohttp.test_utils import TestClient

from gateway.__main__ import describe, main
from gateway.auth import mint
from gateway.broker.redis_scripts import Keys
from gateway.config import Settings
from gateway.node import NODE
from tests.conftest import (
    JSON_PROTOCOL,
    WAIT,
    JsonPeer,
    TextPeer,
    poll_until,
    read_metric,
)
from tests.plugins.auth import SECRET, Gateway, connect_json, login, signed
from tests.plugins.redis import RedisBackend, name_holders
from tooling.gateway import GatewayProcess

OTHER_SECRET = "another-secret-of-at-least-32-bytes"


@pytest.fixture
async def authed(gateway: Gateway) -> TestClient:
    """A node that requires tokens."""
    return await gateway(jwt_secret=SECRET)


async def refused_json(client: TestClient, **query: str) -> str:
    """Connect, expect `unauthorized` as the first frame and close 1008; its message."""
    peer = await connect_json(client, **query)
    first = await peer.recv()
    assert first["type"] == "error" and first["code"] == "unauthorized", first
    assert await peer.close_code() == 1008
    return str(first["message"])


async def refused_count(client: TestClient, reason: str) -> float:
    return await read_metric(client, f'chat_handshakes_refused_total{{reason="{reason}"}}', 0.0)


# refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"name": "alice"}, "needs a token"),
        ({"token": "not-a-jwt"}, "not valid"),
        ({"token": signed({"sub": "alice"}, OTHER_SECRET)}, "not valid"),
        ({"token": signed({"sub": "alice", "exp": int(time.time()) - 60})}, "expired"),
        ({"token": signed({"sub": "alice", "nbf": int(time.time()) + 3600})}, "not valid"),
        ({"token": signed({"name": "alice"})}, "not valid"),  # no sub
        ({"token": signed({"sub": "alice"}, algorithm="HS512")}, "not valid"),
        (
            {"token": jwt.encode({"sub": "alice", "exp": 2**40}, None, algorithm="none")},
            "not valid",
        ),
        ({"token": signed({"sub": "al\u202eice"})}, "not a valid name"),
        ({"token": signed({"sub": "alice"}, expires=False)}, 'missing the "exp" claim'),
        ({"token": signed({"sub": "alice"}), "name": "mallory"}, "for alice, not"),
        ({"token": signed({"sub": "alice", "exp": "9999999999"})}, "exp must be a number"),
        ({"token": signed({"sub": "alice", "nbf": "0"})}, "nbf must be a number"),
        ({"token": signed({"sub": "alice", "iat": str(int(time.time()))})}, "iat must be"),
    ],
    ids=[
        "missing",
        "garbage",
        "other-secret",
        "expired",
        "not-yet-valid",
        "no-sub",
        "wrong-algorithm",
        "alg-none",
        "invisible-sub",
        "no-exp",
        "other-name",
        "exp-a-string",
        "nbf-a-string",
        "iat-a-string",
    ],
)
async def test_a_bad_token_is_refused_1008_before_welcome(
    authed: TestClient, query: dict[str, str], reason: str
) -> None:
    """Guards against anyone speaking as someone they are not: a missing, forged,
    expired or mismatched token never gets a welcome."""
    assert reason in await refused_json(authed, **query)


async def test_text_mode_without_a_token_gets_an_error_line_and_1008(authed: TestClient) -> None:
    """Guards against text mode asking for a name when the token must decide it."""
    peer = TextPeer(await authed.ws_connect("/ws", params={"name": "alice"}))
    line = await peer.recv()
    assert line.startswith("! this chat needs a token")
    assert await peer.close_code() == 1008


async def test_refusals_are_logged_and_counted(
    authed: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against an attack nobody can see: each refusal is a log line and a metric."""
    before = await refused_count(authed, "unauthorized")
    with caplog.at_level(logging.WARNING, logger="gateway.ws"):
        await refused_json(authed, token=signed({"sub": "alice"}, OTHER_SECRET))
    assert any("unauthorized" in r.getMessage() for r in caplog.records)
    assert await refused_count(authed, "unauthorized") == before + 1


async def test_a_refused_token_leaves_the_node_serving_others(authed: TestClient) -> None:
    """Guards against a refusal that harms the node or the people already chatting."""
    alice = await login(authed, "alice")
    await refused_json(authed, token="forged")
    ack = await alice.request("send", room="lobby", text="still here")
    await alice.expect("message", text="still here", offset=ack["offset"])


# good tokens -----------------------------------------------------------------------------


async def test_the_token_decides_the_name(authed: TestClient) -> None:
    """Guards against ?name= overriding the token: the welcome's name is its sub."""
    peer = await connect_json(authed, token=mint(SECRET, "Alice", 60), name="alice")
    assert (await peer.expect("welcome"))["name"] == "Alice"


async def test_a_token_in_the_authorization_header_works(authed: TestClient) -> None:
    """Guards against bots and the CLI, which send headers, being refused."""
    headers = {"Authorization": f"Bearer {mint(SECRET, 'bot', 60)}"}
    ws = await authed.ws_connect("/ws", headers=headers, protocols=(JSON_PROTOCOL,))
    assert (await JsonPeer(ws).expect("welcome"))["name"] == "bot"


async def test_text_mode_with_a_token_is_not_asked_for_a_name(authed: TestClient) -> None:
    """Guards against the name question in text mode when the token gave the name."""
    peer = TextPeer(await authed.ws_connect("/ws", params={"token": mint(SECRET, "ann", 60)}))
    assert await peer.recv() == "* welcome, ann! /help lists the commands"


async def test_several_connections_of_one_user_count_once(gateway: Gateway) -> None:
    """Guards against a second tab kicking the first (no 4000 with auth) and against a
    user shown twice, or leaving while one of their connections is still there."""
    node = await gateway(jwt_secret=SECRET, grace_period=0.0)
    bob = await login(node, "bob")
    first = await login(node, "alice")
    second = await login(node, "alice")
    await bob.expect("presence", event="join", name="alice")
    assert (await bob.request("who", room="lobby"))["members"] == ["alice", "bob"]

    await bob.request("dm", to="alice", text="to both tabs")
    for tab in (first, second):
        await tab.expect("dm", text="to both tabs")

    await first.ws.close()
    await poll_until(lambda: len(node.app[NODE].hub.sessions()) == 2)  # first is gone
    await bob.request("dm", to="alice", text="to the tab left")
    await second.expect("dm", text="to the tab left")
    await second.request("send", room="lobby", text="one tab left")
    await bob.expect("message", text="one tab left")
    assert (await bob.request("who", room="lobby"))["members"] == ["alice", "bob"]
    assert not [f for f in bob.frames if f.get("event") == "leave"]
    assert not second.ws.closed

    await second.ws.close()
    await bob.expect("presence", event="leave", name="alice")
    # The name is released just after the leave is published: ask until it is (bounded).
    async with asyncio.timeout(WAIT):
        answer = await bob.request("dm", to="alice", text="gone")
        while answer["type"] == "ack":
            answer = await bob.request("dm", to="alice", text="gone")
    assert answer["code"] == "user_not_found"


@pytest.mark.parametrize("broker_kind", ["redis"])
async def test_one_user_on_two_nodes_is_one_member(
    gateway: Gateway, redis_backend: RedisBackend
) -> None:
    """Guards against names being exclusive across nodes under auth, and against a
    user's connection on one node freeing the name its other node still holds."""
    a = await gateway(jwt_secret=SECRET, grace_period=0.0, node_id="a")
    b = await gateway(jwt_secret=SECRET, grace_period=0.0, node_id="b")
    bob = await login(b, "bob")
    on_a = await login(a, "alice")
    on_b = await login(b, "alice")
    await bob.expect("presence", event="join", name="alice")
    name_hash = Keys(a.app[NODE].settings.redis_prefix).name("alice")
    redis = redis_backend.client()

    def holders() -> list[bytes]:
        return name_holders(redis, name_hash)

    assert holders() == [b"a", b"b"]
    await on_a.ws.close()
    await poll_until(lambda: holders() == [b"b"])  # a's connection released, b's kept
    await bob.request("dm", to="alice", text="still online")
    await on_b.expect("dm", text="still online")
    assert (await bob.request("who", room="lobby"))["members"] == ["alice", "bob"]
    await on_b.ws.close()
    await bob.expect("presence", event="leave", name="alice")
    assert [f["event"] for f in bob.frames if f.get("name") == "alice"] == ["join", "leave"]
    await poll_until(lambda: not redis.exists(name_hash))


async def test_without_a_secret_names_stay_exclusive(client: TestClient) -> None:
    """Guards against the shared names of auth leaking into the default mode."""
    peer = await connect_json(client, name="carol")
    await peer.expect("welcome")
    second = await connect_json(client, name="carol")
    assert (await second.recv())["code"] == "name_taken"


# settings and the token command ------------------------------------------------------------


def test_a_short_secret_is_refused_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    """Guards against a guessable HS256 key (RFC 7518 wants at least 32 bytes)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--jwt-secret", "short"])
    assert exit_info.value.code == 2
    assert "--jwt-secret must be at least 32 bytes" in capsys.readouterr().err


def test_the_token_command_prints_a_token_the_gateway_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against operators minting tokens the nodes refuse or that never expire."""
    monkeypatch.setenv("CHAT_JWT_SECRET", SECRET)
    assert main(["token", "Zoë", "--ttl", "120"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "Zoë"
    assert 110 <= claims["exp"] - time.time() <= 121


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "alice"], "no secret"),
        (["token", "alice", "--jwt-secret", "short"], "at least 32 bytes"),
        (["token", "a\u200bb", "--jwt-secret", SECRET], "invisible"),
        (["token", "alice", "--jwt-secret", SECRET, "--ttl", "0"], "--ttl"),
    ],
)
def test_the_token_command_refuses_bad_input(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards against a token minted for a name no node would accept."""
    monkeypatch.delenv("CHAT_JWT_SECRET", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


async def test_the_logs_hold_no_secrets_and_no_forged_lines() -> None:
    """Guards against credentials in the logs (aiohttp's default access line has the
    query string, and ?token= and ?session= are bearer secrets) and against a client
    writing a line of its own into them (a %0A in the path)."""
    token = mint(SECRET, "erin", 60)
    node = GatewayProcess(None, "--log-level", "INFO", env={"CHAT_JWT_SECRET": SECRET}).start()
    try:
        async with aiohttp.ClientSession() as http:
            params = {"token": token, "session": "a-session-secret"}
            ws = await http.ws_connect(node.url, params=params, protocols=(JSON_PROTOCOL,))
            peer = JsonPeer(ws)
            await peer.expect("welcome")
            await ws.close()
            refused = await http.ws_connect(
                node.url,
                params={"token": token[:-4]},
                protocols=(JSON_PROTOCOL,),
            )
            assert await JsonPeer(refused).close_code() == 1008
            base = node.url.replace("ws://", "http://").removesuffix("/ws")
            forged = f"{base}/x%0A2099-01-01%20INFO%20aiohttp.access:%20FORGED"
            async with http.get(yarl.URL(forged, encoded=True)) as response:
                assert response.status == 404
        node.stop()
        log = node.log()
    finally:
        node.close()
    assert '"GET /ws"' in log and "unauthorized" in log  # the lines are there...
    for secret in (token, token[:-4], token.split(".")[1], "a-session-secret"):
        assert secret not in log  # ...without the secrets
    assert "/x%0A2099-01-01" in log  # the attempt, still encoded...
    assert not [line for line in log.splitlines() if line.startswith(("2099", "FORGED"))]


async def test_a_token_minted_on_a_clock_a_little_ahead_is_accepted(authed: TestClient) -> None:
    """Guards against refusing every token of an issuer whose clock runs a few seconds
    ahead of the node's (PyJWT refuses an `iat` in the future without leeway)."""
    peer = await connect_json(authed, token=mint(SECRET, "skewed", 60, now=time.time() + 10))
    assert (await peer.expect("welcome"))["name"] == "skewed"


READS = ["/api/rooms", "/api/rooms/lobby/members", "/api/rooms/lobby/messages"]


@pytest.mark.parametrize("path", READS)
async def test_with_auth_the_rest_reads_want_a_token_or_the_api_key(
    gateway: Gateway, path: str
) -> None:
    """Guards against history and member lists open to anyone over HTTP while /ws
    wants a token."""
    node = await gateway(jwt_secret=SECRET, api_key="the-api-key")
    refused = await node.get(path)
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthorized"
    forged = await node.get(
        path, headers={"Authorization": f"Bearer {signed({'sub': 'x'}, OTHER_SECRET)}"}
    )
    assert forged.status == 401
    for credential in (mint(SECRET, "reader", 60), "the-api-key"):
        allowed = await node.get(path, headers={"Authorization": f"Bearer {credential}"})
        assert allowed.status == 200


async def test_without_auth_the_rest_reads_are_open(client: TestClient) -> None:
    """Guards against the token check leaking into the default, open mode."""
    for path in READS:
        assert (await client.get(path)).status == 200


def test_the_start_line_shows_no_redis_password() -> None:
    """Guards against the Redis password of --redis-url in every node's first log line."""
    settings = Settings(redis_url="redis://chat:hunter2@redis.internal:6379/0")
    line = describe(settings)
    assert "hunter2" not in line and "redis://chat@redis.internal:6379/0" in line
    assert "auth off" in line
    assert "auth on" in describe(Settings(jwt_secret=SECRET))


def test_an_empty_secret_in_the_environment_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against `CHAT_JWT_SECRET: ${CHAT_JWT_SECRET}` with the host variable unset
    (compose makes it empty) starting an open node: empty is a mistake, not "off"."""
    monkeypatch.setenv("CHAT_JWT_SECRET", "")
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "1"])
    assert exit_info.value.code == 2
    assert "CHAT_JWT_SECRET is set but empty" in capsys.readouterr().err


async def test_a_long_refusal_keeps_its_close_code(client: TestClient) -> None:
    """Guards against a close reason cut inside a character (an error that echoes a
    32-emoji name is over the 123 bytes a close frame holds): the client then fails the
    close with 1007 and never sees 1008."""
    name = "\N{GRINNING FACE}" * 32
    holder = await connect_json(client, name=name)
    await holder.expect("welcome")
    second = await connect_json(client, name=name)
    assert (await second.recv())["code"] == "name_taken"
    assert await second.close_code() == 1008
