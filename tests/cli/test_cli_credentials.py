"""Where `chat` puts its secrets: never in the URL, which proxies log (nginx's error log
keeps the request line, query included), so a relay in front of a real gateway logs
every request head and the tests read what it would have written down."""

from __future__ import annotations

import pytest
from chat_helpers import JWT_SECRET, unique
from logging_proxy import LoggingProxy

from gateway.auth import mint

SECRETS_IN_QUERY = ("session", "token")


@pytest.mark.parametrize("auth", [False, True], ids=["name", "token"])
async def test_the_session_secret_travels_as_a_subprotocol_never_in_the_url(
    request, chat_procs, observe, auth
):
    """The connection dies on the way while the gateway still holds it: `chat`
    reconnects, offers `chat.v1.json` then `chat.session.<SECRET>`, takes its name back
    and goes on; no request line ever carries `session=` or `token=`.

    Guards against: `?session=` (or `?token=`) in the URL of a reconnect, a session not
    sent at all (the name is still held: the reconnect is refused as taken), the
    secret offered before the mode, and `name`, `room` or the token header dropped.
    """
    gateway = request.getfixturevalue("auth_gateway" if auth else "gateway_server")
    room, carol, dave = unique("secret"), unique("carol"), unique("dave")
    token = mint(JWT_SECRET, carol, 600) if auth else ""
    watcher = await observe(
        gateway.url, dave, room, token=mint(JWT_SECRET, dave, 600) if auth else None
    )
    relay = await LoggingProxy(gateway.port).start()
    try:
        args = [] if auth else ["--name", carol]
        chat = await chat_procs(relay.url, *args, "--room", room, env={"CHAT_TOKEN": token})
        await chat.expect(rf"^\* you are in {room}: ")
        relay.drop_clients()  # the gateway keeps the old connection, and the name
        await chat.expect(r"^\* reconnecting\.\.\.$")
        await chat.expect(r"^\* reconnected$")
        await chat.write("still me")
        await watcher.message(carol, "still me")
        await chat.end_input()
        assert await chat.wait() == 0, chat.stderr
    finally:
        await relay.close()

    first, again, *_ = relay.requests
    for logged in relay.requests:
        assert not set(logged.target.query) & set(SECRETS_IN_QUERY), logged.line
        assert logged.target.query["room"] == room
        assert logged.target.query.get("name", carol) == carol  # the token's, with auth
        assert logged.headers.get("authorization") == (f"Bearer {token}" if auth else None)
    assert first.subprotocols == ["chat.v1.json"]  # no session yet
    mode, session = again.subprotocols
    assert mode == "chat.v1.json"
    assert session.startswith("chat.session.") and len(session) > len("chat.session.")
