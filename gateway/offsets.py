"""Offsets as the server makes them: `{epoch}-{seq}`. Clients treat them as opaque."""

from __future__ import annotations

MAX_SEQ_DIGITS = 19  # a Redis stream id's sequence is a 64-bit integer


def parse_offset(offset: str) -> tuple[str, int] | None:
    """(epoch, sequence number) of an offset; None for one this server did not make
    (a longer number than any sequence is refused before int() sees it: past 4300
    digits int() raises)."""
    epoch, _, seq = offset.rpartition("-")
    if not epoch or not seq.isdecimal() or not seq.isascii() or len(seq) > MAX_SEQ_DIGITS:
        return None
    return epoch, int(seq)
