"""JSON mode (`chat.v1.json`): every frame one JSON object."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from gateway.access import MAX_BAN_SECONDS
from gateway.codecs.frames import text_frame
from gateway.commands import (
    Command,
    Delete,
    DirectSend,
    HistoryQuery,
    Join,
    Kick,
    Leave,
    ListRooms,
    Ping,
    Send,
    Who,
)
from gateway.errors import ErrorCode, ProtocolError
from gateway.events import Event

MAX_REF_CHARS = 64
MAX_ID_CHARS = 64


def _is_unicode(value: str) -> bool:
    """False for strings with lone surrogates, which JSON allows and UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Fields:
    """Typed access to one decoded frame's fields; a wrong type is a bad_frame."""

    def __init__(self, frame: dict[str, Any], ref: str | None) -> None:
        self._frame = frame
        self.ref = ref

    def _fail(self, message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_FRAME, message, self.ref)

    def text(self, key: str) -> str:
        value = self._frame.get(key)
        if not isinstance(value, str):
            raise self._fail(f"'{key}' must be a string")
        if not _is_unicode(value):
            raise self._fail(f"'{key}' is not valid Unicode")
        return value

    def optional_text(self, key: str, max_chars: int | None = None) -> str | None:
        value = self._frame.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(f"'{key}' must be a string or absent")
        if max_chars is not None and len(value) > max_chars:
            raise self._fail(f"'{key}' must be at most {max_chars} characters")
        if not _is_unicode(value):
            raise self._fail(f"'{key}' is not valid Unicode")
        return value

    def optional_int(self, key: str, low: int, high: int) -> int | None:
        value = self._frame.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(f"'{key}' must be a whole number from {low} to {high}")
        return value


def _send(f: _Fields) -> Command:
    return Send(
        room=f.text("room"), text=f.text("text"), id=f.optional_text("id", MAX_ID_CHARS), ref=f.ref
    )


def _join(f: _Fields) -> Command:
    return Join(room=f.text("room"), since=f.optional_text("since"), ref=f.ref)


def _history(f: _Fields) -> Command:
    return HistoryQuery(
        room=f.text("room"),
        before=f.optional_text("before"),
        limit=f.optional_int("limit", 1, 100),
        ref=f.ref,
    )


def _kick(f: _Fields) -> Command:
    seconds = f.optional_int("seconds", 0, MAX_BAN_SECONDS) or 0
    return Kick(room=f.text("room"), name=f.text("name"), seconds=seconds, ref=f.ref)


_DECODERS: dict[str, Callable[[_Fields], Command]] = {
    "send": _send,
    "join": _join,
    "leave": lambda f: Leave(room=f.text("room"), ref=f.ref),
    "who": lambda f: Who(room=f.text("room"), ref=f.ref),
    "rooms": lambda f: ListRooms(ref=f.ref),
    "history": _history,
    "dm": lambda f: DirectSend(to=f.text("to"), text=f.text("text"), ref=f.ref),
    "kick": _kick,
    "delete": lambda f: Delete(room=f.text("room"), offset=f.text("offset"), ref=f.ref),
    "ping": lambda f: Ping(ref=f.ref),
}


def _lenient_loads(frame: str) -> Any:
    """What orjson refused, read by the standard library, which takes more (1e400, huge
    integers, NaN, escaped lone surrogates), so such a frame's error still carries its
    `ref`; only on this error path, never for a valid frame."""
    try:
        return json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the frame is not valid JSON") from None


class JsonCodec:
    """Decodes client JSON objects; encodes events with their `wire()` form."""

    name = "json"

    def decode(self, frame: str) -> Command:
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            data = _lenient_loads(frame)
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
        ref = data.get("ref")
        if ref is not None and (
            not isinstance(ref, str) or len(ref) > MAX_REF_CHARS or not _is_unicode(ref)
        ):
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"'ref' must be a string of at most {MAX_REF_CHARS} characters"
            )
        kind = data.get("type")
        decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
        if decoder is None:
            known = ", ".join(sorted(_DECODERS))
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"unknown or missing 'type'; expected one of: {known}", ref
            )
        return decoder(_Fields(data, ref))

    def encode(self, event: Event, *, outgoing: bool = False) -> str | None:
        wire = event.wire()
        if wire is None:
            return None
        return orjson.dumps(wire).decode()

    def frame(self, event: Event, *, outgoing: bool = False) -> bytes | None:
        wire = event.wire()
        if wire is None:
            return None
        return text_frame(orjson.dumps(wire))
