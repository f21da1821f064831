"""The application's hooks (PROTOCOL section 11.1): it decides who connects, who enters
a room and which messages go through.

Each hook is a signed JSON POST through the node's one `BackendHttp`, bounded by
`--hook-timeout`, and off unless its URL is set:

- connect `{"name", "room", "token", "remote", "headers", "claims"}`: 200
  `{"name": N, "rooms"?, "moderates"?}` makes the connection N with those claims (as a
  token's: gateway/access.py); 403 is `unauthorized`;
- join `{"name", "room"}`: 200 lets the connection in; 403 is `forbidden`;
- publish `{"name", "room", "text", "id"}`: 200 `{}` sends the text as is, 200
  `{"text": T}` sends T instead (checked as any message text); 403 is `forbidden`.

A 403 refuses with the application's `message` (untrusted text: bounded, on one line,
no control character). Anything else (no answer in time, another status, a 200 whose
body is not what the contract says, a rewrite that is not valid text) is
`unavailable`: nothing is let through that the application did not approve.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from gateway.access import EVERY_ROOM, NO_ROOM, Identity, rooms_claim
from gateway.backend_http import Answer, BackendHttp, BackendUnreachable
from gateway.config import Settings
from gateway.credentials import presented_token
from gateway.errors import ErrorCode, ProtocolError
from gateway.metrics import Metrics
from gateway.names import FORBIDDEN_IN_TEXT, validate_name, validate_text
from gateway.server_log import SampledLog

log = logging.getLogger(__name__)

CONNECT, JOIN, PUBLISH = "connect", "join", "publish"
ALLOWED, REFUSED, REWRITTEN, UNAVAILABLE = "allowed", "refused", "rewritten", "unavailable"
# The request headers the connect hook is told (None when absent).
FORWARDED_HEADERS = ("Cookie", "Authorization", "Origin", "User-Agent")
MAX_REFUSAL_CHARS = 200  # of the application's message: it reaches screens and close frames
REFUSED_MESSAGE = "refused by the application"  # a 403 without a message of its own
UNAVAILABLE_MESSAGES = {
    CONNECT: "the chat cannot let you in right now (its application did not answer); "
    "try again later",
    JOIN: "the chat cannot let you into {room} right now (its application did not "
    "answer); try again later",
    PUBLISH: "the chat cannot check messages right now (its application did not answer): "
    "not sent, try again later",
}
_ONE_LINE = re.compile("[\t\n]")

T = TypeVar("T")


class _Unavailable(Exception):
    """The application gave no answer the contract allows; the reason is for the log."""


def refusal_message(body: object) -> str:
    """The message of a 403's body, made safe to show: characters message text may not
    hold replaced by U+FFFD, tabs and newlines by spaces (an error is one line), at most
    MAX_REFUSAL_CHARS; a generic message when the body has none."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return REFUSED_MESSAGE
    message = _ONE_LINE.sub(" ", FORBIDDEN_IN_TEXT.sub("\ufffd", message)).strip()
    if len(message) > MAX_REFUSAL_CHARS:
        message = message[: MAX_REFUSAL_CHARS - 1] + "\u2026"
    return message


def connect_identity(body: object) -> Identity:
    """The connection a connect hook's 200 makes: `_Unavailable` for a body that is not
    `{"name": N, "rooms"?: [...], "moderates"?: [...]}` with a valid name and patterns."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise _Unavailable("its 200 has no name")
    claims = {key: value for key, value in body.items() if value is not None}
    try:
        return Identity(
            validate_name(body["name"]),
            rooms_claim(claims, "rooms", EVERY_ROOM),
            rooms_claim(claims, "moderates", NO_ROOM),
        )
    except ProtocolError as exc:
        raise _Unavailable(f"its 200 is not a valid identity: {exc.message}") from None


def published_text(body: object, text: str, max_chars: int) -> tuple[str, str]:
    """The text a publish hook's 200 sends, and the result to count: `{}` keeps `text`
    (allowed), `{"text": T}` sends T (rewritten; `_Unavailable` unless T is valid
    message text)."""
    if not isinstance(body, dict):
        raise _Unavailable("its 200 is not a JSON object")
    if "text" not in body:
        return text, ALLOWED
    rewrite = body["text"]
    if not isinstance(rewrite, str):
        raise _Unavailable("its rewritten text is not a string")
    try:
        validate_text(rewrite, max_chars)
    except ProtocolError as exc:
        raise _Unavailable(f"its rewritten text is refused: {exc.message}") from None
    return rewrite, (ALLOWED if rewrite == text else REWRITTEN)


def _decide_connect(body: object) -> tuple[Identity, str]:
    return connect_identity(body), ALLOWED


def _decide_join(body: object) -> tuple[None, str]:
    return None, ALLOWED  # any 200 lets in: its body is not read


class Hooks:
    """One node's calls of the application's hooks (see the module)."""

    def __init__(self, settings: Settings, backend: BackendHttp | None, metrics: Metrics) -> None:
        self._settings = settings
        self._backend = backend
        self._metrics = metrics
        self._log = SampledLog(log)  # an application down must not flood the log

    @property
    def decides_connections(self) -> bool:
        """Whether the connect hook names each connection."""
        return self._settings.connect_hook_url is not None

    @property
    def decides_joins(self) -> bool:
        """Whether the join hook is asked before each entry into a room."""
        return self._settings.join_hook_url is not None

    async def connect(
        self,
        request: web.Request,
        name: str | None,
        room: str | None,
        claims: dict[str, Any] | None,
    ) -> Identity:
        """Who the application says the connection is. `name` and `room`: as asked
        (None when not); `claims`: a verified token's, when one came with the
        handshake. ProtocolError `unauthorized` (refused) or `unavailable`."""
        url = self._settings.connect_hook_url
        assert url is not None, "connect() without a connect hook"
        payload = {
            "name": name,
            "room": room,
            "token": presented_token(request),
            "remote": request.remote,
            "headers": {header: request.headers.get(header) for header in FORWARDED_HEADERS},
            "claims": claims,
        }
        return await self._ask(CONNECT, url, payload, _decide_connect, ErrorCode.UNAUTHORIZED, {})

    async def join(self, name: str, room: str) -> None:
        """Whether the application lets `name` into `room` (nothing when no join hook):
        ProtocolError `forbidden` (refused) or `unavailable`."""
        url = self._settings.join_hook_url
        if url is None:
            return
        payload = {"name": name, "room": room}
        await self._ask(JOIN, url, payload, _decide_join, ErrorCode.FORBIDDEN, {"room": room})

    async def publish(self, name: str, room: str, text: str, message_id: str | None) -> str:
        """The text the application lets `name` send to `room` (`text` itself when no
        publish hook): ProtocolError `forbidden` (refused) or `unavailable`."""
        url = self._settings.publish_hook_url
        if url is None:
            return text
        payload = {"name": name, "room": room, "text": text, "id": message_id}
        limit = self._settings.max_message_chars

        def decide(body: object) -> tuple[str, str]:
            return published_text(body, text, limit)

        return await self._ask(PUBLISH, url, payload, decide, ErrorCode.FORBIDDEN, {})

    async def _ask(
        self,
        hook: str,
        url: str,
        payload: dict[str, Any],
        decide: Callable[[object], tuple[T, str]],
        refused: ErrorCode,
        context: dict[str, str],
    ) -> T:
        """POST `payload` to `hook`'s `url`; what `decide` makes of a 200's body. A 403
        raises `refused` with the application's message; anything else `unavailable`."""
        try:
            with self._metrics.hook_seconds.labels(hook=hook).time():
                answer = await self._post(url, payload)
            if answer.status == 403:
                self._count(hook, REFUSED)
                raise ProtocolError(refused, refusal_message(answer.body))
            if answer.status != 200:
                raise _Unavailable(f"it answered {answer.status}")
            value, result = decide(answer.body)
        except _Unavailable as exc:
            self._count(hook, UNAVAILABLE)
            self._log.log(logging.WARNING, hook, "the %s hook is unavailable: %s", hook, exc)
            message = UNAVAILABLE_MESSAGES[hook].format(**context)
            raise ProtocolError(ErrorCode.UNAVAILABLE, message) from None
        self._count(hook, result)
        return value

    async def _post(self, url: str, payload: dict[str, Any]) -> Answer:
        if self._backend is None:  # the settings' rules make this a start-up error
            raise _Unavailable("no --backend-secret to sign with")
        try:
            return await self._backend.post(url, payload, timeout=self._settings.hook_timeout)
        except BackendUnreachable as exc:
            raise _Unavailable(str(exc)) from None

    def _count(self, hook: str, result: str) -> None:
        self._metrics.hook_requests.labels(hook=hook, result=result).inc()
