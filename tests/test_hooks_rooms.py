"""The join and publish hooks (docs/operations.md, "Hooks"): the application decides
who enters a room (every way in: the URL's first room, `join` frames, text-mode `/join`, a resume's
rejoin) and which messages go through, in both modes. The application is
tests/backend_app.py, a real HTTP server in the test process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import JSON_PROTOCOL, JsonPeer, TextPeer, join_json, join_text, read_metric

Gateway = Callable[..., Awaitable[TestClient]]
PAID = "the room paid is for subscribers"


def hooked(backend_app: BackendApp, **overrides: Any) -> dict[str, Any]:
    """Settings overrides with the join and publish hooks on `backend_app`."""
    return {
        "backend_secret": backend_app.secret,
        "join_hook_url": backend_app.url("/join"),
        "publish_hook_url": backend_app.url("/publish"),
        **overrides,
    }


def no_paid_room(request: Received) -> Reply:
    """The application's join rule: nobody enters `paid`."""
    if request.json()["room"] == "paid":
        return Reply(403, {"message": PAID})
    return Reply(200, {})


def moderate(request: Received) -> Reply:
    """The application's publish rule: `spam` refused, `darn` rewritten, `slow` late."""
    text = request.json()["text"]
    if "spam" in text:
        return Reply(403, {"message": "no spam here"})
    if "darn" in text:
        return Reply(200, {"text": text.replace("darn", "d**n")})
    if "slow" in text:
        return Reply(200, {}, delay=1.0)
    if "evil" in text:
        return Reply(200, {"text": "\x1b[2J forged"})
    return Reply(200, {})


async def history_texts(peer: JsonPeer, room: str) -> list[str]:
    answer = await peer.request("history", room=room)
    return [m["text"] for m in answer["messages"]]


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_the_first_room_of_the_url_goes_through_the_join_hook(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against the URL's room entered without the application's yes: refused, it
    closes 1008 before the welcome with the application's message (as a rooms claim
    does); allowed, the application was asked with the name and the room."""
    backend_app.answer("/join", handler=no_paid_room)
    client = await gateway(**hooked(backend_app))
    ws = await client.ws_connect(
        "/ws", params={"name": "ada", "room": "paid"}, protocols=(JSON_PROTOCOL,)
    )
    refused = JsonPeer(ws)
    assert await refused.close_code() == 1008
    assert [(f["type"], f["code"], f["message"]) for f in refused.frames] == [
        ("error", "forbidden", PAID)
    ]
    ada = await join_json(client, "ada", "lobby")
    assert backend_app.bodies("/join") == [
        {"name": "ada", "room": "paid"},
        {"name": "ada", "room": "lobby"},
    ]
    assert all(backend_app.signed(r) for r in backend_app.received("/join"))
    assert await read_metric(client, 'chat_hook_requests_total{hook="join",result="refused"}') == 1
    assert await read_metric(client, 'chat_hook_requests_total{hook="join",result="allowed"}') == 1
    await ada.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
async def test_join_frames_and_slash_join_are_decided_and_a_refusal_keeps_the_connection(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a `join` frame or a text-mode `/join` that enters a room the
    application refused, against a refusal that closes the connection or (text mode)
    takes it out of the room it was in, and against asking again for a room the
    connection is already in."""
    backend_app.answer("/join", handler=no_paid_room)
    client = await gateway(**hooked(backend_app))
    ada = await join_json(client, "ada", "lobby")
    refused = await ada.request("join", room="paid")
    assert (refused["type"], refused["code"], refused["message"]) == ("error", "forbidden", PAID)
    assert (await ada.request("join", room="side"))["type"] == "subscribed"
    again = await ada.request("join", room="side")
    assert again["type"] == "error" and "already in" in again["message"]
    assert (await ada.request("ping"))["type"] == "pong"  # still connected

    bob = await join_text(client, "bob", "lobby")
    await bob.say("/join paid")
    await bob.expect_line(f"! {PAID}")
    await bob.say("still here")
    await bob.expect_line("* sent")  # in lobby yet
    await ada.expect("message", room="lobby", text="still here")
    await bob.say("/join side")
    await bob.expect_line("* you are in side; members: ...")
    rooms = [body["room"] for body in backend_app.bodies("/join")]
    assert rooms == ["lobby", "paid", "side", "lobby", "paid", "side"]
    await ada.ws.close()
    await bob.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_a_resumes_rejoin_is_decided_again(gateway: Gateway, backend_app: BackendApp) -> None:
    """Guards against a reconnection that takes its rooms back (the URL's room and
    `join` frames with `since`) without the application: it may have changed its mind."""
    client = await gateway(**hooked(backend_app))
    ada = await join_json(client, "ada", "lobby")
    offset = (await ada.request("send", room="lobby", text="hello"))["offset"]
    assert (await ada.request("join", room="paid"))["type"] == "subscribed"
    session = ada.welcome["session"]
    await ada.ws.close()

    backend_app.answer("/join", handler=no_paid_room)  # the application changed its mind
    back = await join_json(client, "ada", "lobby", since=offset, session=session)
    refused = await back.request("join", room="paid", since=offset)
    assert (refused["code"], refused["message"]) == ("forbidden", PAID)
    rooms = [body["room"] for body in backend_app.bodies("/join")]
    assert rooms == ["lobby", "paid", "lobby", "paid"]
    await back.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory", "redis", "cluster"])
async def test_a_refused_message_is_neither_delivered_nor_stored(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a message the application refused reaching anyone or the history,
    and against the refusal not reaching the sender (JSON: `forbidden` with the
    application's message and the send's ref; text mode: `! M`)."""
    backend_app.answer("/publish", handler=moderate)
    client = await gateway(**hooked(backend_app))
    ada = await join_json(client, "ada")
    bob = await join_text(client, "bob")
    refused = await ada.request("send", room="lobby", text="buy spam", id="m1")
    assert (refused["type"], refused["code"], refused["message"]) == (
        "error",
        "forbidden",
        "no spam here",
    )
    await bob.say("more spam")
    await bob.expect_line("! no spam here")
    assert (await ada.request("send", room="lobby", text="hello"))["type"] == "ack"
    await bob.expect_line("ada: hello")  # the first message bob gets: no spam before it
    assert await history_texts(ada, "lobby") == ["hello"]
    assert [m for m in ada.frames if "spam" in str(m.get("text"))] == []  # never came
    assert backend_app.bodies("/publish")[:2] == [
        {"name": "ada", "room": "lobby", "text": "buy spam", "id": "m1"},
        {"name": "bob", "room": "lobby", "text": "more spam", "id": None},
    ]
    assert all(backend_app.signed(r) for r in backend_app.received("/publish"))
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="publish",result="refused"}') == 2
    )
    await ada.ws.close()
    await bob.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
async def test_a_rewritten_message_is_what_everyone_gets(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against the original text reaching anyone (or the history) when the
    application rewrote it."""
    backend_app.answer("/publish", handler=moderate)
    client = await gateway(**hooked(backend_app))
    ada = await join_json(client, "ada")
    bob = await join_text(client, "bob")
    assert (await ada.request("send", room="lobby", text="darn it"))["type"] == "ack"
    await ada.expect("message", room="lobby", text="d**n it")
    await bob.expect_line("ada: d**n it")
    await bob.say("darn again")
    await bob.expect_line("* sent")
    await ada.expect("message", room="lobby", text="d**n again")
    assert await history_texts(ada, "lobby") == ["d**n it", "d**n again"]
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="publish",result="rewritten"}')
        == 2
    )
    await ada.ws.close()
    await bob.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory", "redis"])
@pytest.mark.parametrize("text", ["slow one", "evil one"])
async def test_no_answer_in_time_or_an_invalid_rewrite_is_unavailable_and_nothing_stored(
    gateway: Gateway, backend_app: BackendApp, text: str
) -> None:
    """Guards against a message sent without the application's yes (it did not answer
    within --hook-timeout) or with a rewrite that is not valid message text (a control
    character would reach every screen)."""
    backend_app.answer("/publish", handler=moderate)
    client = await gateway(**hooked(backend_app, hook_timeout=0.3))
    ada = await join_json(client, "ada")
    answer = await ada.request("send", room="lobby", text=text, id="m1")
    assert (answer["type"], answer["code"]) == ("error", "unavailable")
    assert "not sent" in answer["message"]
    assert await history_texts(ada, "lobby") == []
    assert [f for f in ada.frames if f.get("type") == "message"] == []
    assert (
        await read_metric(client, 'chat_hook_requests_total{hook="publish",result="unavailable"}')
        == 1
    )
    await ada.ws.close()


@pytest.mark.parametrize("broker_kind", ["memory"])
async def test_text_mode_refusal_of_the_first_room_is_one_line(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a text-mode client refused its first room seeing no reason."""
    backend_app.answer("/join", handler=no_paid_room)
    client = await gateway(**hooked(backend_app))
    peer = TextPeer(await client.ws_connect("/ws", params={"name": "ada", "room": "paid"}))
    assert await peer.close_code() == 1008
    assert peer.frames == [f"! {PAID}"]


@pytest.mark.parametrize("broker_kind", ["redis", "cluster"])
async def test_across_nodes_only_what_the_application_approved_arrives(
    gateway: Gateway, backend_app: BackendApp
) -> None:
    """Guards against a node that publishes the original text, or a refused message, to
    the other nodes: a member on another node gets only the rewritten text."""
    backend_app.answer("/publish", handler=moderate)
    first = await gateway(**hooked(backend_app, node_id="n1"))
    second = await gateway(**hooked(backend_app, node_id="n2"))
    ada = await join_json(first, "ada")
    bob = await join_json(second, "bob")
    assert (await ada.request("send", room="lobby", text="spam"))["code"] == "forbidden"
    assert (await ada.request("send", room="lobby", text="darn"))["type"] == "ack"
    await bob.expect("message", room="lobby", text="d**n")
    assert [f["text"] for f in bob.frames if f.get("type") == "message"] == ["d**n"]
    assert await history_texts(bob, "lobby") == ["d**n"]
    await ada.ws.close()
    await bob.ws.close()
