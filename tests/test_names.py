"""Names and sessions (docs/protocol.md, "Names and sessions"): what a name may be, and
who holds it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import mint
from gateway.node import NODE
from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import JSON_PROTOCOL, JsonPeer, TextPeer, join_json

Gateway = Callable[..., Awaitable[TestClient]]
SECRET = "a-test-secret-of-at-least-32-bytes-for-tokens"

# Names that render as another name, as nothing, or as the start of a text-mode line
# (issue 19, findings 4 and 5), with what the refusal must say.
INVISIBLE_OR_FORGED = {
    "ali\u034fce": "U+034F",  # a combining grapheme joiner: shows as "alice"
    "alice\u3164": "U+3164",  # a Hangul filler: shows as "alice"
    "\u3164": "U+3164",  # a name that shows as nothing
    "\u2800": "U+2800",  # a braille blank: the same
    "bob\ufe0f": "U+FE0F",  # a variation selector
    "\u0301bob": "combining mark",  # an accent on nothing
    "bo\u0301\u0302\u0303\u0304\u0306b": "stack combining marks",  # a pile over the line
    "bo\u0308\u0308b": "stack combining marks",  # one mark twice: drawn as once
    "[dm] admin": "start with",  # "[dm] admin: hi" in a room reads as a direct message
    "! server": "start with",  # an error line
    "* x": "start with",  # a system line
    "\uff3bdm\uff3d admin": "start with",  # fullwidth brackets
    "\u01c3 server": "start with",  # a click letter that looks like "!"
}
# Names that look exactly like "alice" (the same UTS #39 skeleton).
ALICE_LOOKALIKES = ["\u0430lice", "al\u0456ce", "a1ice", "\u0251lice"]


async def connect(client: TestClient, **params: str) -> JsonPeer:
    ws = await client.ws_connect("/ws", params=params, protocols=(JSON_PROTOCOL,))
    return JsonPeer(ws)


async def test_a_taken_name_is_refused_case_insensitively(client: TestClient) -> None:
    """Guards against two users with the same name (the seed let two 'bob's in)."""
    await join_json(client, "Bob")
    second = await connect(client, name="bOB")
    error = await second.recv()
    assert (error["type"], error["code"]) == ("error", "name_taken")
    assert await second.close_code() == 1008


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 33, "bad\x00name", "tab\tname", "zero\u200bwidth", "rtl\u202ename"]
)
async def test_invalid_names_are_refused(client: TestClient, name: str) -> None:
    """Guards against empty, overlong or invisible-character names."""
    peer = await connect(client, name=name)
    error = await peer.recv()
    assert error["code"] == "invalid_name"
    assert await peer.close_code() == 1008


async def test_json_mode_requires_a_name(client: TestClient) -> None:
    """Guards against anonymous JSON connections."""
    peer = await connect(client)
    assert (await peer.recv())["code"] == "invalid_name"
    assert await peer.close_code() == 1008


async def test_names_of_any_script_are_welcome(client: TestClient) -> None:
    """Guards against an ASCII-only name rule."""
    for name in ("Zoë", "Дмитрий", "李小龍", "a b"):
        peer = await join_json(client, name)
        assert peer.welcome["name"] == name


async def test_a_session_takes_the_name_over(client: TestClient) -> None:
    """Guards against a user locked out of their name by their own stale connection."""
    watcher = await join_json(client, "watcher")
    old = await join_json(client, "alice")
    new = await join_json(client, "alice", session=old.welcome["session"])
    assert new.welcome["name"] == "alice"
    assert await old.close_code() == 4000  # session taken over
    await watcher.send(type="send", room="lobby", text="marker", ref="m")
    await new.expect("message", text="marker")
    await watcher.expect("message", text="marker")
    assert not [f for f in watcher.frames if f["type"] == "presence" and f["name"] == "alice"][1:]


async def test_a_wrong_session_does_not_take_the_name(client: TestClient) -> None:
    """Guards against taking someone's name with a guessed session."""
    owner = await join_json(client, "alice")
    thief = await connect(client, name="alice", session="guess")
    assert (await thief.recv())["code"] == "name_taken"
    assert (await owner.request("ping"))["type"] == "pong"


async def test_a_name_is_free_again_after_its_connection_closed(client: TestClient) -> None:
    """Guards against names that stay taken forever after a clean close, and against
    a reconnect at once (a page reloaded) refused while the old connection's release
    is still under way (its Close is answered before its name is released)."""
    alice = await join_json(client, "alice")
    await alice.ws.close()
    again = await join_json(client, "alice")
    assert again.welcome["name"] == "alice"


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
async def test_a_connection_closed_during_its_handshake_leaves_no_release_pending(
    gateway: Callable[..., Awaitable[TestClient]], backend_app: BackendApp
) -> None:
    """Guards against a name marked as being released by a connection whose client
    closed during its handshake (after the claim, while the join hook was asked), and
    never marked released: every later claim of that name on the node waited 2.5 s."""
    asked, answer = asyncio.Event(), asyncio.Event()

    async def held(request: Received) -> Reply:
        asked.set()
        await answer.wait()
        return Reply(200, {})

    backend_app.answer("/join", handler=held)
    client = await gateway(
        backend_secret=backend_app.secret, join_hook_url=backend_app.url("/join")
    )
    node = client.server.app[NODE]
    ws = await client.ws_connect("/ws", params={"name": "alice"}, protocols=(JSON_PROTOCOL,))
    async with asyncio.timeout(5):
        await asked.wait()  # claimed; the first room is being decided
    await ws.close()  # the client's Close, mid-handshake
    answer.set()
    async with asyncio.timeout(5):  # the handshake ends, and the connection with it
        while node.releases.under_way("alice"):  # noqa: ASYNC110 (a poll: no event for it)
            await asyncio.sleep(0.01)
    assert (await join_json(client, "alice")).welcome["name"] == "alice"


async def test_direct_messages_reach_a_name_after_quick_reconnects(client: TestClient) -> None:
    """Guards against DMs lost after quick reconnects of the same name (the name's
    channel must stay subscribed while the old connection is released)."""
    bob = await join_json(client, "bob")
    alice = await join_json(client, "alice")
    for i in range(5):
        await alice.ws.close()
        alice = await join_json(client, "alice", session=alice.welcome["session"])
        assert (await bob.request("dm", to="alice", text=f"psst {i}"))["type"] == "ack"
        assert (await alice.expect("dm"))["text"] == f"psst {i}"


@pytest.mark.parametrize("broker_kind", ["memory"])  # refused before the broker is asked
@pytest.mark.parametrize("name", list(INVISIBLE_OR_FORGED))
async def test_invisible_and_line_like_names_are_refused_in_json_mode(
    client: TestClient, name: str
) -> None:
    """Guards against names that render as another name, as nothing, or as the start of
    a system, error or direct-message line."""
    peer = await connect(client, name=name)
    error = await peer.recv()
    assert (error["type"], error["code"]) == ("error", "invalid_name")
    assert INVISIBLE_OR_FORGED[name] in error["message"]
    assert await peer.close_code() == 1008


@pytest.mark.parametrize("broker_kind", ["memory"])
@pytest.mark.parametrize("name", list(INVISIBLE_OR_FORGED))
async def test_invisible_and_line_like_names_are_refused_in_text_mode(
    client: TestClient, name: str
) -> None:
    """The same in text mode, where the name is asked for again."""
    peer = TextPeer(await client.ws_connect("/ws"))
    await peer.expect_line("Your name:")
    await peer.say(name)
    refusal = await peer.recv()
    assert refusal.startswith("! a name may not") and INVISIBLE_OR_FORGED[name] in refusal
    assert await peer.recv() == "Your name:"
    await peer.say("carol")
    await peer.expect_line("* welcome, carol! /help lists the commands")


@pytest.mark.parametrize("lookalike", ALICE_LOOKALIKES)
async def test_a_look_alike_of_an_online_name_is_refused(
    client: TestClient, lookalike: str
) -> None:
    """Guards against a second 'alice' in another script while alice is online."""
    alice = await join_json(client, "alice")
    peer = await connect(client, name=lookalike)
    error = await peer.recv()
    assert (error["type"], error["code"]) == ("error", "name_taken")
    assert error["message"] == (
        f"the name {lookalike} looks like alice, who is online: pick another"
    )
    assert await peer.close_code() == 1008
    assert (await alice.request("ping"))["type"] == "pong"


async def test_a_look_alike_is_refused_in_text_mode(client: TestClient) -> None:
    """The same in text mode: a `! ` line, and the name asked for again."""
    await join_json(client, "alice")
    peer = TextPeer(await client.ws_connect("/ws", params={"name": "\u0430lice"}))
    await peer.expect_line("! the name \u0430lice looks like alice, who is online: pick another")
    assert await peer.recv() == "Your name:"


async def test_a_session_does_not_move_a_name_to_its_look_alike(client: TestClient) -> None:
    """Guards against the session of 'alice' handing her name to a Cyrillic 'alice'."""
    alice = await join_json(client, "alice")
    peer = await connect(client, name="\u0430lice", session=alice.welcome["session"])
    assert (await peer.recv())["code"] == "name_taken"
    assert (await alice.request("ping"))["type"] == "pong"  # not taken over


async def test_a_look_alike_is_free_once_the_name_is_gone(client: TestClient) -> None:
    """Guards against a skeleton that stays held after its name's connection closed;
    then the other way round: 'alice' is refused while a Cyrillic 'alice' is online."""
    alice = await join_json(client, "alice")
    await alice.ws.close()
    cyrillic = await join_json(client, "\u0430lice")
    assert cyrillic.welcome["name"] == "\u0430lice"
    latin = await connect(client, name="alice")
    assert (await latin.recv())["code"] == "name_taken"


async def test_a_direct_message_to_a_look_alike_reaches_nobody(client: TestClient) -> None:
    """Guards against a DM to a Cyrillic 'alice' (offline) delivered to alice."""
    bob = await join_json(client, "bob")
    alice = await join_json(client, "alice")
    answer = await bob.request("dm", to="\u0430lice", text="for someone else")
    assert answer["code"] == "user_not_found"
    assert (await bob.request("dm", to="alice", text="marker"))["type"] == "ack"
    assert (await alice.expect("dm"))["text"] == "marker"  # the first DM alice sees


async def two_nodes(gateway: Gateway, broker_kind: str, **settings: object) -> list[TestClient]:
    """Two nodes of one chat (on the in-process broker, one node twice)."""
    first = await gateway(node_id="n1", **settings)
    if broker_kind == "memory":
        return [first, first]
    return [first, await gateway(node_id="n2", **settings)]


async def test_a_look_alike_on_another_node_is_refused(gateway: Gateway, broker_kind: str) -> None:
    """Guards against a look-alike check that only knows this node's names."""
    one, other = await two_nodes(gateway, broker_kind)
    await join_json(one, "alice")
    peer = await connect(other, name="\u0430lice")
    assert (await peer.recv())["code"] == "name_taken"


async def test_a_token_for_a_look_alike_is_refused_while_the_name_is_online(
    gateway: Gateway, broker_kind: str
) -> None:
    """Guards against a token's look-alike name joining the connections of the user it
    imitates (with auth a name is shared by its connections, on any node)."""
    one, other = await two_nodes(gateway, broker_kind, jwt_secret=SECRET)
    alice = await connect(one, token=mint(SECRET, "alice", 60))
    await alice.expect("welcome")
    peer = await connect(other, token=mint(SECRET, "\u0430lice", 60))
    error = await peer.recv()
    assert (error["code"], error["message"]) == (
        "name_taken",
        "the name \u0430lice looks like alice, who is online: pick another",
    )
    assert await peer.close_code() == 1008
    again = await connect(other, token=mint(SECRET, "alice", 60))  # alice herself: shared
    assert (await again.expect("welcome"))["name"] == "alice"


async def test_a_name_starting_with_a_brace_is_a_name_like_any_other(client: TestClient) -> None:
    """Guards against '}' ending the name's hash tag at once: the key was then hashed
    whole, and on a Redis Cluster its claim and DM scripts crossed slots."""
    bob = await join_json(client, "bob")
    brace = await join_json(client, "}x{")
    assert (await bob.request("dm", to="}x{", text="hi"))["type"] == "ack"
    assert (await brace.expect("dm"))["text"] == "hi"
