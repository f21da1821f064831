"""The read side of a connection's frame layer: client bytes in, messages out, no I/O.

A `FrameReader` is fed the chunks a connection's transport receives, cut anywhere, and
returns the complete messages in them: a data message once its last fragment has come
(fragments joined, unmasked), a control frame (ping, pong, close) as soon as it has
come, also between the fragments of a data message. It refuses (RFC 6455 5.1 to 5.5):

- a frame without the mask bit: a server MUST close on it, with 1002; so do reserved
  bits (no extension is ever agreed), unknown opcodes, a fragmented or long control
  frame and a fragment out of sequence;
- a message (its fragments added up) over the frame limit: 1009, at its header, before
  any of its payload is kept.

A refusal is kept in `violation`; from then on, and from the moment the server starts
a close of its own (`closing`), the reader only reads frame headers, skips payloads and
returns nothing but the client's Close frame (RFC 6455 7.1.1: the server closes TCP
once both sides have sent one). Text is returned as bytes: whether it is valid UTF-8
(1007 otherwise) is the connection's to check (gateway/link.py).
"""

from __future__ import annotations

OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA
Violation = tuple[int, str]  # close code, reason
# RFC 6455 7.4: the codes a Close frame may carry (1004-1006 and 1015 never go on the wire)
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
Message = tuple[int, bytes]  # opcode (of the first fragment), unmasked payload
UNMASKED_REASON = "frames from a client must be masked"


def size_text(limit: int) -> str:
    """`64 KiB`, `2 KiB`, or `1500 bytes`: the frame limit as a person reads it."""
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


def unmask(payload: bytes, key: bytes) -> bytes:
    """`payload` XOR the 4-byte mask `key` repeated (RFC 6455 5.3), as one integer
    operation: byte i of the result is payload[i] ^ key[i % 4]."""
    size = len(payload)
    if not size:
        return payload
    keys = (key * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")
    return value.to_bytes(size, "little")


class FrameReader:
    """One connection's client frames, parsed across any chunking (see the module)."""

    __slots__ = (
        "_fin",
        "_fragments",
        "_head",
        "_in_frame",
        "_kept",
        "_key",
        "_max_message",
        "_message",
        "_message_opcode",
        "_need",
        "_opcode",
        "closing",
        "violation",
    )

    def __init__(self, max_message: int) -> None:
        self._max_message = max_message
        self._head = b""  # the start of a header cut off at the end of the last chunk
        self._in_frame = False  # a header was read; its payload (`_need` bytes) comes
        self._need = 0
        self._opcode = 0
        self._fin = False
        self._key = b""  # the frame's mask key (empty: unmasked, only once refused)
        self._kept: list[bytes] | None = []  # the frame's payload so far; None: skipped
        self._message = 0  # bytes of the fragmented data message under way
        self._message_opcode = 0  # its first fragment's opcode; 0: none under way
        # its fragments so far, unmasked, in one buffer: as many bytes as the limit
        # allows, however many fragments (empty ones count nothing towards the limit)
        self._fragments = bytearray()
        self.closing = False  # return nothing but the client's Close
        self.violation: Violation | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        """The messages complete with `chunk`, in order (none past a refusal)."""
        out: list[Message] = []
        data = self._head + chunk if self._head else chunk
        self._head = b""
        pos, end = 0, len(data)
        while True:
            if self._in_frame:
                take = min(self._need, end - pos)
                if self._kept is not None and take:
                    self._kept.append(data[pos : pos + take] if take < end - pos or pos else data)
                self._need -= take
                pos += take
                if self._need:
                    return out
                self._frame_done(out)
            if end - pos < 2:
                self._head = data[pos:]
                return out
            pos = self._header(data, pos, end)
            if pos < 0:
                return out

    def _header(self, data: bytes, pos: int, end: int) -> int:
        """Read the header at `pos`; where its payload starts, or -1 when it is cut off
        (kept for the next chunk)."""
        first, second = data[pos], data[pos + 1]
        length, start = second & 0x7F, pos + 2
        if length >= 126:
            start += 2 if length == 126 else 8
            if start > end:
                self._head = data[pos:]
                return -1
            length = int.from_bytes(data[pos + 2 : start], "big")
        masked = second & 0x80
        if masked:
            if start + 4 > end:
                self._head = data[pos:]
                return -1
            self._key = data[start : start + 4]
            start += 4
        else:
            self._key = b""
        opcode = first & 0x0F
        if not self.closing:
            violation = self._judge(first, opcode, masked, length)
            if violation is not None:
                self.closing = True
                self.violation = violation
        self._opcode, self._fin = opcode, bool(first & 0x80)
        # Once closing only a Close is kept, and not one over the control frame limit
        # (refused by then): its length could be anything, past the message limit.
        closing_kept = opcode == OPCODE_CLOSE and length <= 125
        self._kept = [] if not self.closing or closing_kept else None
        self._in_frame, self._need = True, length
        return start

    def _frame_done(self, out: list[Message]) -> None:
        self._in_frame = False
        kept, self._kept = self._kept, None
        if kept is None:
            return
        payload = kept[0] if len(kept) == 1 else b"".join(kept)
        if self._key:
            payload = unmask(payload, self._key)
        opcode = self._opcode
        if opcode >= OPCODE_CLOSE:
            out.append((opcode, payload))
            return
        if opcode != OPCODE_CONTINUATION:
            self._message_opcode = opcode
        if not self._fin:
            self._fragments += payload
            return
        if opcode == OPCODE_CONTINUATION:  # the last of several fragments
            self._fragments += payload
            payload = bytes(self._fragments)
            self._fragments = bytearray()
        out.append((self._message_opcode, payload))
        self._message_opcode = 0

    def _judge(self, first: int, opcode: int, masked: int, length: int) -> Violation | None:
        """Why this frame is refused, if it is (RFC 6455 5.2 to 5.5)."""
        if not masked:
            return 1002, UNMASKED_REASON
        if length >> 63:
            return 1002, "a 64-bit length must have its high bit clear"
        if first & 0x70:
            return 1002, "reserved bits set: no extension was agreed"
        if opcode >= OPCODE_CLOSE:  # close, ping, pong
            if opcode > OPCODE_PONG:
                return 1002, f"unknown opcode {opcode}"
            if not first & 0x80 or length > 125:
                return 1002, "a control frame must be one frame of at most 125 bytes"
            return None
        if opcode > OPCODE_BINARY:
            return 1002, f"unknown opcode {opcode}"
        fragmented = self._message_opcode != 0
        if (opcode == OPCODE_CONTINUATION) != fragmented:  # a continuation needs a message
            return 1002, "a fragment out of sequence"
        total = length + self._message  # (0 unless a fragmented message is under way)
        if total > self._max_message:
            return 1009, f"frame too large ({size_text(self._max_message)} at most)"
        self._message = 0 if first & 0x80 else total
        return None


def close_answer(payload: bytes) -> Violation:
    """The code to answer a client's Close with, and '' (or the refusal of a bad one)."""
    if not payload:
        return 1000, ""
    code = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or not (code in _SENDABLE or 3000 <= code <= 4999):
        return 1002, "invalid close frame"
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        return 1007, "invalid UTF-8 in the close reason"
    return code, ""
