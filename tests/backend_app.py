"""The application's backend, played by a small aiohttp app in the test process.

A gateway calls its hooks and posts its events here (PROTOCOL section 11). The app
listens on a real port of 127.0.0.1, so gateways in this process and gateway
processes alike reach it. It records every request (path, headers, raw body) and
answers each path as the test says (`answer`), by default 200 with `{}`.

Used through the `backend_app` fixture (tests/conftest.py), or, by a test whose own
code is synchronous (gateways as processes), served from a thread (`in_thread`):

    backend_app.answer("/connect", 200, {"name": "ada"})
    settings: backend_secret=backend_app.secret, connect_hook_url=backend_app.url("/connect")
    [request] = backend_app.received("/connect")
    assert backend_app.signed(request)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

SECRET = "test-backend-secret-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Received:
    """One request the backend got: its path, headers and raw body."""

    path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded."""
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    """How a path is answered: a status and a JSON body (or raw bytes), after `delay`
    seconds. `body` None answers an empty body."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    delay: float = 0.0


# A handler decides the answer from the request (for answers that change as requests
# arrive: 503 three times, then 200).
Handler = Callable[[Received], Reply | Awaitable[Reply]]


class BackendApp:
    """A backend application: records requests, answers per path (see the module)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.requests: list[Received] = []
        self.base_url = ""
        self._answers: dict[str, Reply | Handler] = {}
        self._arrived = asyncio.Condition()

    def url(self, path: str) -> str:
        """The full URL of `path` on this backend (e.g. "/connect")."""
        return self.base_url + path

    def answer(
        self,
        path: str,
        status: int = 200,
        body: Any = None,
        *,
        raw: bytes | None = None,
        delay: float = 0.0,
        handler: Handler | None = None,
    ) -> None:
        """Answer every later request to `path` so: `status` with `body` as JSON (or
        `raw` bytes), after `delay` seconds; or whatever `handler` returns."""
        self._answers[path] = handler or Reply(status, body, raw, delay)

    def received(self, path: str | None = None) -> list[Received]:
        """The requests received so far (to `path` only, when given), in order."""
        return [r for r in self.requests if path is None or r.path == path]

    def bodies(self, path: str) -> list[Any]:
        """The decoded bodies of the requests to `path`, in order."""
        return [r.json() for r in self.received(path)]

    def signed(self, request: Received, max_age: float = 300.0) -> bool:
        """Whether `request` carries a valid signature and a fresh timestamp, checked as
        PROTOCOL section 11 says an application does: `X-Chat-Signature` is `sha256=`
        and the hex HMAC-SHA256 of `timestamp + "." + body`. Computed here, not with
        gateway/backend_http.py's `verify`: a test using the gateway's own code would
        pass with whatever that code signs."""
        timestamp = request.headers.get("X-Chat-Timestamp", "")
        given = request.headers.get("X-Chat-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age:
            return False
        signed = timestamp.encode() + b"." + request.body
        mac = hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given, f"sha256={mac}")

    async def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Wait until `path` got at least `count` requests; those requests."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received(path)) >= count)
        return self.received(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, CIMultiDictProxy(CIMultiDict(request.headers)),
                            await request.read())  # fmt: skip
        self.requests.append(received)
        async with self._arrived:
            self._arrived.notify_all()
        answer = self._answers.get(request.path, Reply(200, {}))
        reply = answer if isinstance(answer, Reply) else answer(received)
        if not isinstance(reply, Reply):
            reply = await reply
        if reply.delay:
            await asyncio.sleep(reply.delay)  # a slow application, on purpose
        if reply.raw is not None:
            return web.Response(status=reply.status, body=reply.raw)
        if reply.body is None:
            return web.Response(status=reply.status)
        return web.Response(
            status=reply.status, body=orjson.dumps(reply.body), content_type="application/json"
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BackendApp]:
        """Serve on a free port of 127.0.0.1 until the block ends."""
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()

    @contextmanager
    def in_thread(self, timeout: float = 10.0) -> Iterator[BackendApp]:
        """Serve on a free port of 127.0.0.1 from a thread of its own (its own event
        loop) until the block ends. `answer` may be called from the test's thread
        meanwhile: it only replaces a dict entry, which the handler reads whole."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop = loop.create_future()

        async def serve() -> None:
            try:
                async with self.running():
                    ready.set()
                    await stop
            finally:
                ready.set()  # a failure to start wakes the waiter too

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),),
                                  name="backend-app", daemon=True)  # fmt: skip
        thread.start()
        try:
            if not ready.wait(timeout) or not self.base_url:
                raise RuntimeError("the backend app did not start")
            yield self
        finally:
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
            thread.join(timeout)
            loop.close()
