"""Driving the web page: the system's Chromium under Playwright, and what a page user does.

Set CHAT_TEST_BROWSER=require (CI does) to fail instead of skipping without Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    WebSocket,
    async_playwright,
    expect,
)
from playwright.async_api import TimeoutError as PlaywrightTimeout

from gateway.credentials import offered_subprotocols

CHROMIUM = shutil.which("chromium")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_MS = 5000  # the most any single expectation on a page waits

# Console errors a page may log without anything being wrong: the browser reports each
# failed WebSocket attempt while a node is down (the page then retries).
EXPECTED_CONSOLE = re.compile(r"^WebSocket connection to .* failed")


def require_browser() -> str:
    """The Chromium to drive; skips the test without one (fails under CHAT_TEST_BROWSER=require)."""
    if CHROMIUM is None:
        if os.environ.get("CHAT_TEST_BROWSER") == "require":
            pytest.fail("CHAT_TEST_BROWSER=require, but there is no chromium on PATH")
        pytest.skip("no chromium on PATH: install it to test the web page")
    return CHROMIUM


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed (with Playwright's driver) at the end."""
    executable = require_browser()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=BROWSER_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageLog:
    """What a page said that a user would not see: console errors, crashes, dialogs."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.match(message.text):
            self.errors.append(f"console: {message.text}")

    def crash(self, error: Exception) -> None:
        self.errors.append(f"page error: {error}")

    async def dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()


class Pages:
    """Opens pages, each in a context of its own (own storage: another person), and at
    the end saves a screenshot of each into test-artifacts/ and checks their logs."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")
        self.opened: list[tuple[str, Page, PageLog]] = []

    async def open(
        self, url: str, label: str, *, bypass_csp: bool = False, init_script: str = ""
    ) -> Page:
        """A page of its own at `url`; `init_script` runs in it before the page's own."""
        context = await self.browser.new_context(
            viewport={"width": 1100, "height": 720}, bypass_csp=bypass_csp
        )
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        if init_script:
            await page.add_init_script(init_script)
        log = PageLog()
        page.on("console", log.console)
        page.on("pageerror", log.crash)
        page.on("dialog", log.dialog)
        await page.goto(url)
        self.opened.append((label, page, log))
        return page

    def log(self, page: Page) -> PageLog:
        return next(log for _, p, log in self.opened if p is page)

    async def screenshot(self, page: Page) -> None:
        """Save what `page` shows as test-artifacts/TEST-LABEL.png."""
        if page.is_closed():
            return
        label = next(label for label, p, _ in self.opened if p is page)
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):  # a screenshot is a help, not the test
            path = ARTIFACTS / f"{self.test_name}-{label}.png"
            await asyncio.wait_for(page.screenshot(path=str(path)), 5)

    async def close(self, page: Page) -> None:
        """A screenshot, then close the page (its person leaves)."""
        await self.screenshot(page)
        await page.context.close()

    async def finish(self) -> None:
        """Screenshots of every page, then: no page logged an error or opened a dialog."""
        for _, page, _ in self.opened:
            await self.screenshot(page)
        problems = [f"{label}: {e}" for label, _, log in self.opened for e in log.errors]
        problems += [f"{label}: dialog {d}" for label, _, log in self.opened for d in log.dialogs]
        for _, page, _ in self.opened:
            with contextlib.suppress(Exception):  # closed by the test already
                await page.context.close()
        assert not problems, "\n".join(problems)


async def join(page: Page, name: str) -> None:
    """Type `name` on the name form, press Enter, wait until connected."""
    await page.get_by_test_id("name-input").fill(name)
    await page.get_by_test_id("name-input").press("Enter")
    await expect(page.get_by_test_id("status")).to_have_text("Connected")


async def say(page: Page, text: str) -> None:
    """Type `text` in the composer and press Enter."""
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("message-input").press("Enter")


def message_text(page: Page, text: str) -> Locator:
    """The message bodies on the page whose whole text is `text` (count them to find twins)."""
    return (
        page.get_by_test_id("messages")
        .locator(".message .text")
        .filter(has_text=re.compile(f"^{re.escape(text)}$"))
    )


async def shown_texts(page: Page) -> list[str]:
    """Every message body in the open conversation, in order (pending ones last)."""
    return await page.get_by_test_id("messages").locator(".message .text").all_text_contents()


@dataclass
class Handshake:
    """One /ws upgrade as the server saw it: the query, the subprotocols offered (in
    order) and the one the server answered with."""

    query: dict[str, str]
    offered: list[str]
    answered: str | None


def record_handshakes(app: web.Application) -> list[Handshake]:
    """Every /ws upgrade `app` answers from now on (a growing list); call it before the
    app starts."""
    seen: list[Handshake] = []

    async def prepared(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/ws" and isinstance(response, web.WebSocketResponse):
            answered = response.headers.get("Sec-WebSocket-Protocol")
            seen.append(Handshake(dict(request.query), offered_subprotocols(request), answered))

    app.on_response_prepare.append(prepared)
    return seen


async def no_more_websockets(page: Page, opened: list[str], count: int) -> None:
    """`opened` stays at `count` for a second (short and bounded: nothing reconnects)."""
    with pytest.raises(PlaywrightTimeout):
        await page.wait_for_event("websocket", timeout=1000)
    assert len(opened) == count


def websocket_urls(page: Page) -> list[str]:
    """The URLs of the WebSockets `page` opens from now on (a growing list)."""
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


def received_frames(page: Page, kind: str) -> list[dict[str, object]]:
    """The JSON frames of type `kind` that `page` receives from now on, on any WebSocket."""
    frames: list[dict[str, object]] = []

    def received(payload: str | bytes) -> None:
        with contextlib.suppress(ValueError):
            frame = json.loads(payload)
            if isinstance(frame, dict) and frame.get("type") == kind:
                frames.append(frame)

    def opened(ws: WebSocket) -> None:
        ws.on("framereceived", received)

    page.on("websocket", opened)
    return frames
