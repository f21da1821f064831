"""Complete server-to-client WebSocket frames (RFC 6455 5.2), as bytes.

A server's frame is unmasked, so it is a few header bytes and the payload: a codec
builds each event's frame once, and the same bytes go to every connection of its mode
(gateway/wire.py writes them). Pure functions: no state, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
FIN = 0x80
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame holding `payload` (UTF-8)."""
    return _frame(FIN | OPCODE_TEXT, payload)


def close_frame(code: int, reason: bytes) -> bytes:
    """A close frame with `code` and `reason` (at most 123 bytes of UTF-8)."""
    return _frame(FIN | OPCODE_CLOSE, struct.pack("!H", code) + reason)


def ping_frame(payload: bytes = b"") -> bytes:
    """A ping (at most 125 bytes of payload): the heartbeat's question."""
    return _frame(FIN | OPCODE_PING, payload)


def pong_frame(payload: bytes) -> bytes:
    """The pong answering a ping with `payload` (RFC 6455 5.5.3: the same bytes)."""
    return _frame(FIN | OPCODE_PONG, payload)


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _LEN16.pack(first, 126, size) + payload
    return _LEN64.pack(first, 127, size) + payload


def text_frames(texts: Iterable[str]) -> bytes:
    """A text frame for each string, back to back (they go out as one write)."""
    return b"".join(text_frame(text.encode()) for text in texts)
