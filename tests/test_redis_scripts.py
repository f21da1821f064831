"""The Redis broker's Lua files and channel message kinds, checked without Redis."""

from __future__ import annotations

import re
from importlib.resources import files

from gateway.broker.redis import scripts
from gateway.broker.redis.kinds import LUA_KINDS, Kind


def test_every_lua_file_is_package_data_and_used() -> None:
    """Guards against a script file left behind (never loaded) or one missing from the
    package: each `.lua` file is read by one of the scripts the broker runs."""
    names = {p.name.removesuffix(".lua") for p in files(scripts).iterdir()
             if p.name.endswith(".lua")}  # fmt: skip
    source = files(scripts).joinpath("__init__.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"(\w+)"', " ".join(re.findall(r"(?:load|read)\(([^)]*)\)", source))))
    unused = names - read
    assert all(scripts.read(name).strip() for name in read)  # every file read is there
    assert names and not unused, unused


def test_each_kind_is_one_distinct_letter_and_every_script_knows_them() -> None:
    """Guards against two kinds sharing a letter (a presence read as a kick) and against
    a script publishing a kind Lua was not given."""
    letters = [kind.value for kind in Kind.__members__.values()]  # aliases too
    assert all(len(letter) == 1 for letter in letters)
    assert len(set(letters)) == len(letters)
    assert all(Kind.of(kind.prefix + b"body") is kind for kind in Kind)
    assert Kind.of(b"?body") is None
    for name in ("PUBLISH", "REAP_ROOM", "CLAIM_NAME", "DIRECT", "KICK"):
        assert getattr(scripts, name).startswith(LUA_KINDS)
