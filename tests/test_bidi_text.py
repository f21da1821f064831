"""Bidi controls in message text (U+202A-U+202E, U+2066-U+2069) are refused, as names
refuse them: "\u202eRTL override" showed as "edirrevo LTR" to everyone."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import join_json, join_text

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
API_KEY = "k3y-for-tests"


@pytest.mark.parametrize("control", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
async def test_json_mode_refuses_bidi_controls_in_text(client: TestClient, control: str) -> None:
    """Guards against a message whose text shows reversed (or reorders what follows it)."""
    ann = await join_json(client, "ann")
    bob = await join_json(client, "bob")
    error = await ann.request("send", room="lobby", text=f"{control}RTL override")
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    assert "bidi" in error["message"]
    error = await ann.request("dm", to="bob", text=f"psst {control}")
    assert error["type"] == "error" and error["code"] == "bad_frame", error
    ack = await ann.request("send", room="lobby", text="plain")  # the connection still works
    assert ack["type"] == "ack"
    assert (await bob.expect("message"))["text"] == "plain"  # the refused ones never came


async def test_text_mode_refuses_bidi_controls(client: TestClient) -> None:
    ann = await join_text(client, "ann")
    bob = await join_json(client, "bob")
    await ann.say("\u202eRTL override")
    await ann.expect_line("! a message may not contain bidi...")
    await ann.say("fine")
    assert (await bob.expect("message"))["text"] == "fine"


async def test_the_rest_publish_refuses_bidi_controls(gateway) -> None:
    client: TestClient = await gateway(api_key=API_KEY)
    response = await client.post(
        "/api/rooms/lobby/messages",
        json={"from": "ops", "text": "\u2067x"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_marks_and_joiners_stay_allowed(client: TestClient) -> None:
    """Guards against refusing too much: direction marks in Arabic or Hebrew text and the
    zero-width joiner of emoji sequences are ordinary text."""
    ann = await join_json(client, "ann")
    for text in (
        "\u0645\u0631\u062d\u0628\u0627 \u200f!",
        "\u05e9\u05dc\u05d5\u05dd \u200e",
        "\U0001f469\u200d\U0001f4bb",
    ):
        ack = await ann.request("send", room="lobby", text=text)
        assert ack["type"] == "ack", (text, ack)
