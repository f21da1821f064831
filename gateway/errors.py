"""Protocol errors: the codes a client can receive (docs/protocol.md, "Error codes")
and the exception carrying one."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code a client can receive."""

    BAD_FRAME = "bad_frame"
    INVALID_NAME = "invalid_name"
    NAME_TAKEN = "name_taken"
    INVALID_ROOM = "invalid_room"
    NOT_IN_ROOM = "not_in_room"
    TOO_LONG = "too_long"
    RATE_LIMITED = "rate_limited"
    USER_NOT_FOUND = "user_not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    UNAVAILABLE = "unavailable"


class ProtocolError(Exception):
    """A client's frame broke a rule; answered with an `error`, the connection stays."""

    def __init__(
        self, code: ErrorCode, message: str, ref: str | None = None, *, until: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.until = until  # `banned`: when the ban ends (epoch milliseconds)


class BrokerUnavailable(Exception):
    """The backend cannot take the operation now; nothing was stored."""


class NotReplicated(BrokerUnavailable):
    """The primary took the write but too few replicas confirmed it in time: it is not
    acknowledged (a primary lost now would lose it); the same id may be sent again."""
