"""`chat` against a gateway whose application decides (docs/operations.md, "Hooks"): a
refusal shows the application's own message, like any error, and the client goes on
(or, refused at the door, ends with it). The application is tests/backend_app.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from chat_helpers import GatewayProcess, unique

from tests.backend_app import BackendApp, Received, Reply


def decide_connect(request: Received) -> Reply:
    name = request.json()["name"]
    if name and name.startswith("mallory"):
        return Reply(403, {"message": "mallory is not a member of this site"})
    return Reply(200, {"name": name})


def decide_join(request: Received) -> Reply:
    if request.json()["room"].startswith("paid"):
        return Reply(403, {"message": "paid rooms are for subscribers"})
    return Reply(200, {})


def decide_publish(request: Received) -> Reply:
    text = request.json()["text"]
    if "spam" in text:
        return Reply(403, {"message": "no spam here"})
    return Reply(200, {"text": text.replace("darn", "d**n")})


@pytest.fixture
def hooked_gateway(backend_app: BackendApp) -> Iterator[GatewayProcess]:
    """A gateway whose connect, join and publish hooks are `backend_app`'s."""
    backend_app.answer("/connect", handler=decide_connect)
    backend_app.answer("/join", handler=decide_join)
    backend_app.answer("/publish", handler=decide_publish)
    server = GatewayProcess(
        None,
        "--backend-secret",
        backend_app.secret,
        "--connect-hook-url",
        backend_app.url("/connect"),
        "--join-hook-url",
        backend_app.url("/join"),
        "--publish-hook-url",
        backend_app.url("/publish"),
    )
    server.launch()
    yield server
    server.close()


async def test_refusals_show_the_applications_message(hooked_gateway, chat_procs, observe):
    """Guards against a `chat` that hides the application's reason or stops on a
    refused room or message: each refusal is a `! M` line with the application's M,
    and the client goes on; a rewritten message is shown as rewritten."""
    await asyncio.to_thread(hooked_gateway.wait_serving)
    room, ada = unique("room"), unique("ada")
    watcher = await observe(hooked_gateway.url, unique("watch"), room)
    chat = await chat_procs(hooked_gateway.url, "--name", ada, "--room", room)
    await chat.expect(rf"^\* you are in {room}: ")
    await chat.write(f"/join {unique('paid')}")
    await chat.expect_error(r"^! paid rooms are for subscribers$")
    await chat.write("buy spam")
    await chat.expect_error(r"^! no spam here$")
    await chat.write("darn it")
    await watcher.message(ada, "d**n it")
    await chat.end_input()
    assert await chat.wait() == 1  # a message was refused: a script must know
    assert watcher.texts(ada) == ["d**n it"]


async def test_refused_at_the_door_ends_with_the_applications_message(hooked_gateway, chat_procs):
    """Guards against a refused connection retried forever, or ended without the
    application's reason."""
    await asyncio.to_thread(hooked_gateway.wait_serving)
    chat = await chat_procs(hooked_gateway.url, "--name", unique("mallory"))
    await chat.end_input()
    assert await chat.wait() == 1
    assert "mallory is not a member of this site" in chat.stderr
