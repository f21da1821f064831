"""`chat` against a gateway run with --jwt-secret: the token gives the name, goes along
on every reconnect, and a refused one ends the client at once with the server's reason."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from aiohttp import web
from chat_helpers import JWT_SECRET, WAIT, unique

from cli.client import ChatClient, ClientConfig
from gateway.auth import mint

REFUSED_WITHIN = 5.0  # seconds: a refusal ends `chat` well before any retry could


def token_for(name: str, ttl: float = 600) -> str:
    return mint(JWT_SECRET, name, ttl)


@pytest.mark.parametrize("given_as", ["env", "flag"])
async def test_pipe_mode_with_a_token_needs_no_name_and_speaks_as_the_token(
    auth_gateway, chat_procs, observe, given_as
):
    """`CHAT_TOKEN=... chat` (or `chat --token ...`) without --name sends as the
    token's name.

    Guards against: --name still required in pipe mode with a token, CHAT_TOKEN
    ignored, and an empty `?name=` sent (the server refuses it as not the token's name).
    """
    room, bot = unique("auth"), unique("bot")
    watcher = await observe(auth_gateway.url, "watch", room, token=token_for("watch"))
    token = token_for(bot)
    if given_as == "env":
        chat = await chat_procs(auth_gateway.url, "--room", room, env={"CHAT_TOKEN": token})
    else:
        chat = await chat_procs(auth_gateway.url, "--room", room, "--token", token)
    await chat.expect(rf"^\* you are in {room}: ")
    await chat.write("signed by the token")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr
    await watcher.message(bot, "signed by the token")


async def test_the_token_goes_in_a_header_not_in_the_url(aiohttp_server):
    """Guards against a token in the URL, where any proxy on the way may log it: the
    client sends `Authorization: Bearer` (browsers cannot; programs can)."""
    seen: list[web.Request] = []

    async def gateway(request: web.Request) -> web.WebSocketResponse:
        seen.append(request)
        ws = web.WebSocketResponse(protocols=("chat.v1.json",))
        await ws.prepare(request)
        await ws.send_json({"type": "welcome", "name": "Ann", "node": "fake", "session": "s"})
        await ws.send_json({"type": "subscribed", "room": "lobby", "members": ["Ann"]})
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/ws", gateway)
    server = await aiohttp_server(app)
    token = token_for("Ann")
    client = ChatClient(ClientConfig(url=str(server.make_url("/ws")), name="", token=token))
    async with asyncio.timeout(WAIT):
        await client.start()
        await client.close()
    assert client.name == "Ann"  # the welcome's
    [request] = seen
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert dict(request.query) == {"room": "lobby"}  # no token, no empty name


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (mint(JWT_SECRET, "late", 60, now=time.time() - 3600), "has expired"),
        (jwt.encode({"sub": "forger"}, "another-secret-of-at-least-32-bytes!"), "not valid"),
        (None, "needs a token"),
    ],
    ids=["expired", "forged", "none"],
)
async def test_a_refused_token_exits_1_at_once_with_the_reason(
    auth_gateway, chat_procs, token, reason
):
    """Guards against: a refused (or missing) token retried forever, a hung script, an
    exit 0, or stderr that does not say what the server said and what to do."""
    args = ["--token", token] if token else ["--name", unique("anon")]
    chat = await chat_procs(auth_gateway.url, *args, env={"CHAT_TOKEN": ""})
    await chat.end_input()
    assert await chat.wait(timeout=REFUSED_WITHIN) == 1
    assert reason in chat.stderr
    hint = "refused the token" if token else "--token or CHAT_TOKEN"
    assert hint in chat.stderr
    assert chat.lines == []


async def test_reconnect_after_a_restart_sends_the_token_again(
    own_auth_gateway, chat_procs, observe
):
    """The gateway stops (close 1001) and comes back: `chat` reconnects with its token
    and goes on under the token's name.

    Guards against: a token sent on the first connection only (the reconnect refused,
    the client exiting 1), or a reconnect that asks for a name the token decides.
    """
    carol = unique("carol")
    chat = await chat_procs(own_auth_gateway.url, env={"CHAT_TOKEN": token_for(carol)})
    await chat.expect(r"^\* you are in lobby: ")
    own_auth_gateway.stop()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    own_auth_gateway.start()
    await chat.expect(r"^\* reconnected$")
    watcher = await observe(own_auth_gateway.url, "dave", token=token_for("dave"))
    await chat.write("back with my token")
    await watcher.message(carol, "back with my token")
    await chat.end_input()
    assert await chat.wait() == 0, chat.stderr


async def test_a_token_expired_while_away_ends_the_client_with_exit_1(own_auth_gateway, chat_procs):
    """The token expires while the gateway is down: the reconnect is refused, and
    `chat` stops with exit 1 and the reason, instead of retrying forever.

    Guards against: `unauthorized` on a reconnect taken as a passing failure.
    """
    token = mint(JWT_SECRET, unique("eve"), 2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    chat = await chat_procs(own_auth_gateway.url, env={"CHAT_TOKEN": token})
    await chat.expect(r"^\* you are in lobby: ")
    own_auth_gateway.stop()
    await chat.expect(r"^\* reconnecting\.\.\.$")
    await asyncio.sleep(max(0.0, expires + 0.1 - time.time()))  # a clock to wait for, not an event
    own_auth_gateway.start()
    assert await chat.wait(timeout=REFUSED_WITHIN + 10) == 1  # the backoff is at most 10 s
    assert "the server refused the token: the token has expired" in chat.stderr


async def test_the_terminal_with_a_token_does_not_ask_for_a_name(auth_gateway, terminals, observe):
    """Guards against: "Your name:" asked although the token decides it, and a terminal
    that never says who you are."""
    room, pat = unique("term"), unique("pat")
    watcher = await observe(auth_gateway.url, "watch", room, token=token_for("watch"))
    term = terminals(auth_gateway.url, "--room", room, env={"CHAT_TOKEN": token_for(pat)})
    await term.expect(rf"\* signed in as {pat}")
    await term.expect(rf"\* you are in {room}: ")
    term.sendline("typed with a token")
    await watcher.message(pat, "typed with a token")
    term.sendline("/quit")
    assert await term.exit_code() == 0
    assert "Your name" not in term.text
