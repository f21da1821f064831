"""Who may go where: the rooms a token lets its user into (docs/protocol.md, "Which
rooms a token opens").

With auth on, a token may carry `rooms`, a list of patterns: each a room name, or a
prefix ending in `*` (`team-*`; `*` alone is every room). The user may join, read
(history, replay, `who`, the REST reads) and so send only in the rooms they match. No
claim: every room. Without auth every room is open. The `moderates` claim (the rooms a
user moderates) is read and checked the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import ErrorCode, ProtocolError

# A room name, or the start of one followed by `*` (the start may be empty).
PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}|[A-Za-z0-9_-]{0,63}\*")
MAX_PATTERNS = 100  # in one claim: a token is sent with every handshake
MAX_BAN_SECONDS = 10 * 365 * 24 * 3600  # ten years: long enough to mean "for good"


@dataclass(frozen=True, slots=True)
class Rooms:
    """A set of rooms given by patterns; `patterns` None means every room."""

    patterns: tuple[str, ...] | None

    def allows(self, room: str) -> bool:
        """Whether `room` is one of these rooms."""
        if self.patterns is None:
            return True
        for pattern in self.patterns:
            if pattern.endswith("*"):
                if room.startswith(pattern[:-1]):
                    return True
            elif room == pattern:
                return True
        return False

    def check(self, room: str, what: str) -> None:
        """Raise `forbidden` unless `room` is one of these rooms; `what` says what was
        asked ("join", "read")."""
        if not self.allows(room):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"your token does not let you {what} {room}")


EVERY_ROOM = Rooms(None)
NO_ROOM = Rooms(())


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token says the user is, where they may go and what they moderate."""

    name: str
    rooms: Rooms = EVERY_ROOM
    moderates: Rooms = NO_ROOM


def rooms_claim(claims: dict[str, object], claim: str, absent: Rooms) -> Rooms:
    """The patterns of `claim` in a token's claims (`absent` when it has none); raises
    unauthorized for a claim that is not a list of patterns."""
    if claim not in claims:
        return absent
    value = claims[claim]
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise ProtocolError(
            ErrorCode.UNAUTHORIZED,
            f"the token's {claim} must be a list of at most {MAX_PATTERNS} room patterns",
        )
    for pattern in value:
        if not isinstance(pattern, str) or not PATTERN.fullmatch(pattern):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"the token's {claim} holds {pattern!r}: a pattern is a room name, or the "
                "start of one ending in '*'",
            )
    return Rooms(tuple(value))


def parse_patterns(text: str) -> list[str]:
    """Comma-separated room patterns (for `chat-gateway token --rooms`); ValueError
    for one that is not a pattern."""
    patterns = [part.strip() for part in text.split(",") if part.strip()]
    for pattern in patterns:
        if not PATTERN.fullmatch(pattern):
            raise ValueError(
                f"{pattern!r} is not a room pattern: a room name, or the start of one ending in '*'"
            )
    return patterns
