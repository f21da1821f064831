"""Frames written to size: a `send` of an exact size (raw frames and handshakes are
tooling/rawsocket.py's)."""

from __future__ import annotations

import json


def sized_send(size: int) -> tuple[str, int]:
    """A JSON `send` frame of exactly `size` bytes (ASCII), and the length of its text."""
    empty = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": ""})
    text = "x" * (size - len(empty))
    frame = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": text})
    assert len(frame.encode()) == size
    return frame, len(text)
