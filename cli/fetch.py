"""A history request of the view's own, whose answer shows before live messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from cli.events import RoomMessage

FETCH_REF = "fetch-"  # the refs of the view's own history requests

Frame = dict[str, Any]


@dataclass(slots=True)
class HistoryFetch:
    """A history request whose answer is shown before the room's live messages.

    The answer is cut after `up_to`, the room's newest offset when it was entered:
    everything after it arrives live (or as the replay of a resume from `up_to`), and
    is held until the answer is shown, so the order stays right and nothing shows twice.
    """

    room: str
    up_to: str
    limit: int
    recent: bool  # the room's recent history, shown as a page; else a gap, shown as live
    ref: str = ""
    held: list[RoomMessage] = field(default_factory=list)

    def request(self) -> Frame:
        """The history request (again, after a reconnect: held messages are replayed)."""
        self.ref, self.held = f"{FETCH_REF}{uuid4().hex}", []
        return {"type": "history", "room": self.room, "limit": self.limit, "ref": self.ref}

    def older(self, messages: list[RoomMessage]) -> list[RoomMessage] | None:
        """The answer's messages up to `up_to`; None when it is not among them."""
        offsets = [msg.offset for msg in messages]
        return messages[: offsets.index(self.up_to) + 1] if self.up_to in offsets else None
