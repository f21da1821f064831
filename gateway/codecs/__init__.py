"""The two wire modes. A codec turns a client frame into a Command and an Event into a frame.

Codecs are pure: no I/O, no state, so the hub encodes each event once per codec and every
connection of that mode gets the same string.
"""

from __future__ import annotations

from typing import Protocol

from gateway.commands import Command
from gateway.events import Event


class Codec(Protocol):
    """One wire mode."""

    name: str

    def decode(self, frame: str) -> Command | None:
        """A client's text frame as a Command; None when there is nothing to do.

        Raises ProtocolError for a frame that breaks the protocol.
        """
        ...

    def encode(self, event: Event, *, outgoing: bool = False) -> str | None:
        """The frame for `event`, or None when this mode does not show it.

        `outgoing` is true for a direct message shown to its sender's other connections.
        """
        ...

    def frame(self, event: Event, *, outgoing: bool = False) -> bytes | None:
        """`encode`'s result as complete WebSocket frames, ready for the wire (built
        once per event and mode, then written to every connection of that mode)."""
        ...


JSON_SUBPROTOCOL = "chat.v1.json"
TEXT_SUBPROTOCOL = "chat.v1.text"  # text mode, for a client that must offer a subprotocol
