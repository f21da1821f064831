"""The page with the application's hooks on (docs/operations.md, "Hooks"), in a real browser: a
refusal shows the application's own message in place, like any error (the login form,
the room form, the message not sent), and the browser's cookie reaches the connect
hook. The application is tests/backend_app.py; every wait is bounded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestClient
from playwright.async_api import expect

from gateway.app import create_app
from tests.backend_app import BackendApp, Received, Reply
from tests.conftest import TEST_SETTINGS, join_json
from tests.web_support import Pages, join, message_text, say


def decide_connect(request: Received) -> Reply:
    """The application's login: the name asked for, but nobody called mallory."""
    name = request.json()["name"]
    if name == "mallory":
        return Reply(403, {"message": "mallory is not a member of this site"})
    return Reply(200, {"name": name})


def decide_join(request: Received) -> Reply:
    if request.json()["room"] == "paid":
        return Reply(403, {"message": "paid is for subscribers"})
    return Reply(200, {})


def decide_publish(request: Received) -> Reply:
    text = request.json()["text"]
    if "spam" in text:
        return Reply(403, {"message": "no spam here"})
    return Reply(200, {"text": text.replace("darn", "d**n")})


async def test_refusals_show_the_applications_message_in_place(
    aiohttp_client: Any, backend_app: BackendApp, pages: Pages
) -> None:
    """Guards against a page that hides the application's reason: a refused login back
    on the form with the message, a refused room with the message under the room form,
    a refused message marked not sent with the message; and a rewritten message shown
    as the application rewrote it."""
    backend_app.answer("/connect", handler=decide_connect)
    backend_app.answer("/join", handler=decide_join)
    backend_app.answer("/publish", handler=decide_publish)
    settings = replace(
        TEST_SETTINGS,
        backend_secret=backend_app.secret,
        connect_hook_url=backend_app.url("/connect"),
        join_hook_url=backend_app.url("/join"),
        publish_hook_url=backend_app.url("/publish"),
    )
    node: TestClient = await aiohttp_client(create_app(settings))
    url = str(node.make_url("/"))
    watcher = await join_json(node, "watcher")
    page = await pages.open(url, "hooked")
    await page.context.add_cookies([{"name": "sid", "value": "browser-session", "url": url}])

    await page.get_by_test_id("name-input").fill("mallory")
    await page.get_by_test_id("name-input").press("Enter")
    await expect(page.get_by_test_id("name-error")).to_have_text(
        "Mallory is not a member of this site"
    )
    await join(page, "ada")
    assert backend_app.bodies("/connect")[-1]["headers"]["Cookie"] == "sid=browser-session"

    await page.get_by_test_id("room-input").fill("paid")
    await page.get_by_test_id("room-input").press("Enter")
    await expect(page.locator("#room-error")).to_have_text("Paid is for subscribers")

    await say(page, "buy spam")
    failed = page.locator("#pending .message.failed")
    await expect(failed.locator(".send-error")).to_have_text("Not sent: no spam here")
    await say(page, "darn it")
    await expect(message_text(page, "d**n it")).to_have_count(1)
    await watcher.expect("message", text="d**n it")
    assert [f["text"] for f in watcher.frames if f.get("type") == "message"] == ["d**n it"]
    await watcher.ws.close()
