"""The Redis key layout: each step stays in one hash slot (what Redis Cluster demands)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gateway.broker.redis.keys import Keys
from gateway.config import InvalidSetting, Settings

KEYS = Keys("chat:")


def slots(*names: str) -> set[int]:
    return {key_slot(name.encode()) for name in names}


@pytest.mark.parametrize("room", ["lobby", "dev", "a", "team-1", "team_2"])
def test_every_key_and_the_channel_of_a_room_share_one_slot(room: str) -> None:
    """Guards against a room key outside its tag: the publish or presence script would
    be refused with CROSSSLOT on a cluster."""
    names = [KEYS.meta(room), KEYS.log(room), KEYS.message_id(room, "alice", "m-1")]
    names += [*KEYS.presence_keys(room), KEYS.room_channel(room)]
    names += [KEYS.deleted(room), KEYS.ban(room, "alice"), KEYS.ban(room, "{x}")]
    assert len(slots(*names)) == 1


def test_a_names_keys_and_a_nodes_keys_each_share_one_slot() -> None:
    """Guards against DIRECT publishing outside its name's slot, and a node's heartbeat
    and indexes spread over slots."""
    assert len(slots(KEYS.name("alice"), KEYS.user_channel("alice"))) == 1
    node = KEYS.node("gateway1")
    suffixes = (":alive", ":reaped", ":rooms", ":names")
    assert len(slots(*(node + s for s in suffixes), KEYS.node_channel("gateway1"))) == 1


@pytest.mark.parametrize("key", ["alice", "\u0430lice", "}x", "a}b", "{x}", "%7d}", "李小龍"])
def test_a_user_channel_names_its_key_and_shares_its_names_slot(key: str) -> None:
    """Guards against a name whose hash tag Redis reads differently from ours (a name
    starting with '}' made the tag empty: the whole key hashed, so the claim and DM
    scripts crossed slots on a cluster), and a channel that does not give its key back."""
    channel = KEYS.user_channel(key)
    assert KEYS.user_of_channel(channel) == key
    assert len(slots(KEYS.name(key), channel)) == 1


def test_look_alike_names_share_one_name_hash() -> None:
    """Guards against look-alikes kept apart in Redis: their claims must meet in one
    hash (one atomic script step), while each keeps a channel of its own."""
    assert KEYS.name("alice") == KEYS.name("\u0430lice") == KEYS.name("a1ice")
    assert KEYS.name("alice") != KEYS.name("alise")
    assert KEYS.user_channel("alice") != KEYS.user_channel("\u0430lice")


def test_rooms_spread_over_the_slots() -> None:
    """Guards against similar names crowding few slots (every room on one shard)."""
    rooms = [f"room{i}" for i in range(300)]
    thirds = {key_slot(KEYS.meta(room).encode()) * 3 // 16384 for room in rooms}
    assert thirds == {0, 1, 2}
    assert len(slots(*(KEYS.meta(room) for room in rooms))) > 280


def test_a_prefix_with_a_brace_is_refused() -> None:
    """Guards against a prefix whose brace would become every key's tag (one slot)."""
    with pytest.raises(ValueError, match="brace"):
        Keys("chat{x}:")
    with pytest.raises(InvalidSetting, match="--redis-prefix may not hold a brace"):
        Settings(redis_prefix="chat{x}:")
