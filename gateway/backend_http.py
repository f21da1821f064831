"""Requests to the application's backend (docs/operations.md, "Hooks: the application
decides" and "Events for the application"): signed JSON POSTs.

Every hook call and every events batch goes through one `BackendHttp` per node: one
keep-alive aiohttp `ClientSession`, so a busy node reuses its connections to the
application instead of opening one per call. Each body is signed with the shared
secret (`--backend-secret`):

    X-Chat-Timestamp: <seconds since the epoch>
    X-Chat-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

TIMESTAMP_HEADER = "X-Chat-Timestamp"
SIGNATURE_HEADER = "X-Chat-Signature"
SIGNATURE_PREFIX = "sha256="
MAX_ANSWER_BYTES = 64 * 1024  # an answer larger than this is not what the contract says


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Chat-Signature value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of a signed JSON POST of `body`."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, max_age: float = 300.0) -> bool:
    """True when `headers` sign `body` with `secret` within `max_age` seconds of now
    (what an application does with each request; the tests use it too)."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > max_age:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


@dataclass(frozen=True, slots=True)
class Answer:
    """What the application answered: its status and its JSON body (None when the body
    was empty or not JSON)."""

    status: int
    body: object


class BackendUnreachable(Exception):
    """The application could not be reached, did not answer in time, or answered with a
    body too large to be an answer."""


class BackendHttp:
    """One node's client of the application: signed POSTs over one shared session."""

    def __init__(self, secret: str, timeout: float) -> None:
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the running loop, on first use
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                json_serialize=lambda value: orjson.dumps(value).decode(),
            )
        return self._session

    async def post(
        self,
        url: str,
        payload: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (the request's, given to aiohttp)
    ) -> Answer:
        """POST `payload` as signed JSON; BackendUnreachable when no answer came."""
        body = orjson.dumps(payload)
        headers = signed_headers(self._secret, body)
        limit = None if timeout is None else aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._client().post(
                url,
                data=body,
                headers=headers,
                timeout=limit or self._timeout,
                allow_redirects=False,  # a redirect is an answer, not a way to another URL
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                if len(raw) > MAX_ANSWER_BYTES:
                    raise BackendUnreachable(f"{url} answered more than {MAX_ANSWER_BYTES} bytes")
                return Answer(response.status, _json_or_none(raw))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendUnreachable(f"{url}: {type(exc).__name__} {exc}".rstrip()) from None

    async def close(self) -> None:
        """Close the shared session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _json_or_none(raw: bytes) -> object:
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
