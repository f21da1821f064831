"""Every Lua script of the Redis broker, one `.lua` file each in this directory.

Each script is one atomic step; its header comment names its KEYS and ARGV and what it
returns. Every script starts with the channel message kinds as Lua locals (`KIND_MESSAGE`,
`KIND_PRESENCE`, ...), generated from `kinds.Kind`, so no letter is written twice. A
script that may store an event for the application is run through
`event_log.EventScript`, which wraps it plain or with `EVENTS_PRELUDE` (event_scripts).
The files are package data (pyproject.toml), found the same in an editable install and
in a wheel.
"""

from __future__ import annotations

from importlib.resources import files

from gateway.broker.redis.kinds import LUA_KINDS


def read(name: str) -> str:
    """The text of `name`.lua, as it is."""
    return files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def load(*names: str) -> str:
    """The script made of the named files in order, after the kinds' locals."""
    return LUA_KINDS + "".join(read(name) for name in names)


def function(local: str, name: str) -> str:
    """`name`.lua as a Lua function `local`, of its own KEYS and ARGV."""
    return f"local function {local}(KEYS, ARGV)\n{read(name)}end\n"


def combined(claim: str) -> str:
    """CLAIM_ENTER with the claim script `claim` (claim_name or claim_shared)."""
    parts = (function("claim", claim), function("enter", "presence_add"), read("claim_enter"))
    return LUA_KINDS + "".join(parts)


# Rooms and messages
PUBLISH = load("publish")
SEQ_FLOOR = load("seq_floor")
DELETE = load("delete")
# Presence
PRESENCE_ADD = load("presence_add")
PRESENCE_REMOVE = load("presence_remove")
REAP_ROOM = load("reap_room")
KICK = load("kick")
# Names and direct messages (drop_shared.lua: a function the two after it share)
CLAIM_NAME = load("claim_name")
CLAIM_SHARED = load("claim_shared")
RELEASE_NAME = load("drop_shared", "release_name")
REAP_NAME = load("drop_shared", "reap_name")
DIRECT = load("direct")
# A new connection's claim and first entry in one step (one Redis only)
CLAIM_ENTER = combined("claim_name")
CLAIM_SHARED_ENTER = combined("claim_shared")
# Events for the application
EVENTS_PRELUDE = read("events_prelude")  # goes before `local function main()`'s body
ANNOUNCE = load("announce")
LEASE = load("lease")
RELEASE_LEASE = load("release_lease")
CONFIRM = load("confirm")
UNHINT = load("unhint")
