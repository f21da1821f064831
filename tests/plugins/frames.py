"""Frames and handshakes written by hand: a `send` of an exact size, the status a raw
handshake is answered with."""

from __future__ import annotations

import json
import socket


def sized_send(size: int) -> tuple[str, int]:
    """A JSON `send` frame of exactly `size` bytes (ASCII), and the length of its text."""
    empty = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": ""})
    text = "x" * (size - len(empty))
    frame = json.dumps({"type": "send", "room": "lobby", "ref": "big", "text": text})
    assert len(frame.encode()) == size
    return frame, len(text)


def raw_status(port: int, data: bytes) -> int:
    """Send `data` on a new connection; the status line's code the node answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        for _ in range(64):  # bounded: the status line comes in the first reads
            chunk = sock.recv(4096)
            answer += chunk
            if not chunk or b"\r\n" in answer:
                break
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split()[1])
