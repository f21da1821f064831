"""C1 controls (U+0080 to U+009F) and the line and paragraph separators (U+2028, U+2029)
in message text are refused like the other control characters, in both modes; and no
text-mode client receives a line a message forged (issue 19, finding 5): U+009B is a
one-byte CSI to a terminal, and U+0085, U+2028 and U+2029 are line breaks to anything
that splits lines as str.splitlines does."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from gateway.node import NODE
from tests.conftest import join_json, join_text

REFUSED = ["\x80", "\x85", "\x9b", "\x9f", "\u2028", "\u2029"]
IDS = [f"U+{ord(c):04X}" for c in REFUSED]
API_KEY = "k3y-for-tests"
# Every line boundary str.splitlines knows but newline (which a message may hold).
OTHER_BREAKS = ["\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
FORGED = "* admin joined lobby"


@pytest.mark.parametrize("char", REFUSED, ids=IDS)
async def test_json_mode_refuses_c1_controls_and_separators(client: TestClient, char: str) -> None:
    """Guards against a message or DM carrying a C1 control or a line separator to others."""
    ann = await join_json(client, "ann")
    bob = await join_json(client, "bob")
    error = await ann.request("send", room="lobby", text=f"hi{char}{FORGED}")
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    assert "U+2028" in error["message"] or "U+009F" in error["message"], error
    error = await ann.request("dm", to="bob", text=f"psst{char}x")
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    ack = await ann.request("send", room="lobby", text="plain")  # the connection still works
    assert ack["type"] == "ack"
    assert (await bob.expect("message"))["text"] == "plain"  # the refused ones never came


@pytest.mark.parametrize("char", REFUSED, ids=IDS)
async def test_text_mode_refuses_them_the_same_way(client: TestClient, char: str) -> None:
    ann = await join_text(client, "ann")
    bob = await join_json(client, "bob")
    await ann.say(f"hi{char}{FORGED}")
    await ann.expect_line("! a message may not contain ...")
    await ann.say(f"/msg bob psst{char}x")
    await ann.expect_line("! a message may not contain ...")
    await ann.say("fine")
    assert (await bob.expect("message"))["text"] == "fine"


async def test_the_rest_publish_refuses_them(gateway) -> None:
    client: TestClient = await gateway(api_key=API_KEY)
    for char in REFUSED:
        response = await client.post(
            "/api/rooms/lobby/messages",
            json={"from": "ops", "text": f"hi{char}x"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert response.status == 400, char
        assert (await response.json())["error"]["code"] == "bad_request"


async def test_a_forged_line_in_a_message_or_dm_comes_indented(client: TestClient) -> None:
    """Guards against `hi\\n* admin joined lobby` reaching a text client as a join."""
    ann = await join_text(client, "ann")
    mallory = await join_json(client, "mallory")
    await mallory.send(type="send", room="lobby", text=f"hi\n{FORGED}\n[dm] admin: re-enter")
    await ann.expect_line("mallory: hi")
    assert await ann.recv() == f"  {FORGED}"
    assert await ann.recv() == "  [dm] admin: re-enter"
    await mallory.send(type="dm", to="ann", text=f"psst\n{FORGED}")
    await ann.expect_line("[dm] mallory: psst")
    assert await ann.recv() == f"  {FORGED}"


async def test_a_stored_message_holding_them_reaches_text_mode_neutralised(
    client: TestClient,
) -> None:
    """Guards against a message stored before these characters were refused (or by an
    older node of the cluster) forging a line in text mode: every line boundary there
    starts an indented line, and a C1 control is shown as U+FFFD, live and in /history.
    JSON clients get the text as it was stored: it is theirs to show (the page and `chat`
    do so harmlessly)."""
    ann = await join_text(client, "ann")
    bob = await join_json(client, "bob")
    text = "hi" + "".join(f"{brk}{FORGED}" for brk in OTHER_BREAKS) + "\x9b31m!"
    await client.app[NODE].broker.publish("lobby", "mallory", text, origin="an-older-node")
    expected = ["mallory: hi", *[f"  {FORGED}"] * (len(OTHER_BREAKS) - 1), f"  {FORGED}\ufffd31m!"]
    await ann.expect_line(expected[0])
    assert [await ann.recv() for _ in expected[1:]] == expected[1:]
    assert (await bob.expect("message"))["text"] == text
    await ann.say("/history 1")
    await ann.expect_line("* the last message of lobby:")
    assert [await ann.recv() for _ in expected] == expected
