"""The kinds of channel messages: the one letter each message on a channel starts with.

Python publishes and reads them through `Kind`; the Lua scripts that publish get them
from `LUA_KINDS`, generated from the same enum (a `local KIND_... = '.'` per kind,
prepended to each such script), so no letter is written twice.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What a channel message is, by its first letter (its body follows it)."""

    MESSAGE = "m"  # a room message: offset, newline, JSON (the publish script)
    PRESENCE = "p"  # a join or leave: JSON
    DELETED = "x"  # a message deleted by a moderator: JSON
    DIRECT = "d"  # a direct message: JSON
    KICK = "k"  # a connection lost its name to another: the connection's ref
    REMOVED = "r"  # a name removed from a room by a moderator: JSON
    DISCONNECT = "o"  # a name disconnected by an operator: no body
    PROBE = "q"  # a node's readiness probe: its token

    @property
    def prefix(self) -> bytes:
        """The kind's letter as the first byte of a channel message."""
        return self.value.encode()

    @classmethod
    def of(cls, data: bytes) -> Kind | None:
        """The kind of the channel message `data`, None for a letter we do not know."""
        try:
            return cls(data[:1].decode())
        except (ValueError, UnicodeDecodeError):
            return None


LUA_KINDS = "".join(f"local KIND_{kind.name} = '{kind.value}'\n" for kind in Kind)
