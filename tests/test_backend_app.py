"""The backend_app fixture itself, with the node's client of the application."""

from __future__ import annotations

import time

import pytest

from gateway.backend_http import BackendHttp, BackendUnreachable, verify
from tests.backend_app import BackendApp, Reply


async def test_records_signed_requests_and_answers_per_path(backend_app: BackendApp) -> None:
    """A request is recorded with its raw body and headers, signed with a fresh
    timestamp, and answered as the test said for its path."""
    backend_app.answer("/connect", 403, {"message": "no"})
    client = BackendHttp(backend_app.secret, 2.0)
    try:
        answer = await client.post(backend_app.url("/connect"), {"name": "ada"})
        other = await client.post(backend_app.url("/events"), {"events": []})
    finally:
        await client.close()
    assert (answer.status, answer.body) == (403, {"message": "no"})
    assert (other.status, other.body) == (200, {})
    [request] = backend_app.received("/connect")
    assert request.json() == {"name": "ada"}
    assert backend_app.signed(request)
    # gateway/backend_http.py's own check (bench/backend_peer.py uses it) agrees
    assert verify(backend_app.secret, request.headers, request.body)
    assert not verify(backend_app.secret, request.headers, request.body + b" ")
    assert abs(int(request.headers["X-Chat-Timestamp"]) - time.time()) < 5
    assert not BackendApp("another secret").signed(request)


async def test_handler_and_delay(backend_app: BackendApp) -> None:
    """A handler decides each answer; a delay longer than the timeout is unreachable."""
    seen: list[int] = []

    def flaky(request: object) -> Reply:
        seen.append(1)
        return Reply(503) if len(seen) < 2 else Reply(200, {"ok": True})

    backend_app.answer("/events", handler=flaky)
    backend_app.answer("/slow", delay=1.0)
    client = BackendHttp(backend_app.secret, 0.2)
    try:
        assert (await client.post(backend_app.url("/events"), {})).status == 503
        assert (await client.post(backend_app.url("/events"), {})).body == {"ok": True}
        with pytest.raises(BackendUnreachable):
            await client.post(backend_app.url("/slow"), {})
    finally:
        await client.close()
    assert len(await backend_app.wait_for("/events", 2)) == 2
