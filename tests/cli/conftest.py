"""Fixtures for the `chat` tests; the helpers they build on are in chat_helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from chat_helpers import (
    API_KEY,
    JWT_SECRET,
    ChatProcess,
    GatewayProcess,
    Observer,
    TcpProxy,
    Terminal,
)


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[GatewayProcess]:
    """One gateway for the whole cli suite; tests keep apart by unique names and rooms."""
    server = GatewayProcess().start()
    yield server
    server.close()


@pytest.fixture
def own_gateway() -> Iterator[GatewayProcess]:
    """A gateway for one test, which may stop and restart it on the same port."""
    server = GatewayProcess().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def auth_gateway() -> Iterator[GatewayProcess]:
    """A gateway that wants tokens signed with JWT_SECRET."""
    server = GatewayProcess(None, "--jwt-secret", JWT_SECRET, "--jwt-leeway", "0").start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def moderated_gateway() -> Iterator[GatewayProcess]:
    """A gateway wanting tokens (JWT_SECRET), with the operator API on (API_KEY)."""
    server = GatewayProcess(
        None, "--jwt-secret", JWT_SECRET, "--jwt-leeway", "0", "--api-key", API_KEY
    ).start()
    yield server
    server.close()


@pytest.fixture
async def moderated_proxy(moderated_gateway: GatewayProcess) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of `moderated_gateway`, which the test may cut."""
    relay = await TcpProxy(moderated_gateway.port).start()
    yield relay
    await relay.close()


@pytest.fixture
def own_auth_gateway() -> Iterator[GatewayProcess]:
    """A gateway wanting tokens for one test, which may stop and restart it."""
    server = GatewayProcess(None, "--jwt-secret", JWT_SECRET, "--jwt-leeway", "0").start()
    yield server
    server.close()


@pytest.fixture
async def chat_procs() -> AsyncIterator[Callable[..., Any]]:
    """Starts `chat` processes; kills whatever is left at the end of the test."""
    started: list[ChatProcess] = []

    async def start(url: str, *args: str, **kwargs: Any) -> ChatProcess:
        proc = await ChatProcess.start(url, *args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.stop()


@pytest.fixture
async def observe() -> AsyncIterator[Callable[..., Any]]:
    """Connects JSON observers: `await observe(url, name, room)`."""
    async with aiohttp.ClientSession() as http:
        opened: list[aiohttp.ClientWebSocketResponse] = []

        async def connect(
            url: str, name: str, room: str = "lobby", token: str | None = None
        ) -> Observer:
            params = {"name": name, "room": room} | ({"token": token} if token else {})
            ws = await http.ws_connect(url, params=params, protocols=("chat.v1.json",))
            opened.append(ws)
            observer = Observer(ws, room)
            await observer.until(lambda f: f["type"] == "subscribed")
            return observer

        yield connect
        for ws in opened:
            await ws.close()


@pytest.fixture
async def proxy(gateway_server: GatewayProcess) -> AsyncIterator[TcpProxy]:
    relay = await TcpProxy(gateway_server.port).start()
    yield relay
    await relay.close()


@pytest.fixture
def terminals() -> Iterator[Callable[..., Terminal]]:
    """Starts `chat` under pseudo-terminals; kills whatever is left at the end."""
    started: list[Terminal] = []

    def start(url: str, *args: str, **kwargs: Any) -> Terminal:
        term = Terminal(url, *args, **kwargs)
        started.append(term)
        return term

    yield start
    for term in started:
        term.kill()
