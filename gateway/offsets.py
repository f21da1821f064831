"""Offsets as the server makes them: `{epoch}-{seq}`. Clients treat them as opaque."""

from __future__ import annotations


def parse_offset(offset: str) -> tuple[str, int] | None:
    """(epoch, sequence number) of an offset; None for one this server did not make."""
    epoch, _, seq = offset.rpartition("-")
    if not epoch or not seq.isdecimal():
        return None
    return epoch, int(seq)
