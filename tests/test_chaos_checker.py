"""The fault campaign's checker (bench/chaos/checker.py) on histories written by hand:
each kind of violation is found, and what the protocol allows is not one."""

from __future__ import annotations

from bench.chaos.checker import check
from bench.chaos.history import Fault, History, Record

ROOMS = {"alice": "lobby", "bob": "lobby", "carol": "dev"}


def history(*records: tuple[float, str, str, dict[str, object]]) -> History:
    """A history of (t, client, kind, fields) records, and one fault at t=5."""
    made = History(faults=[Fault(5.0, "kill", "gateway1", 7.0)])
    made.records = [Record(t, client, kind, **fields) for t, client, kind, fields in records]  # type: ignore[arg-type]
    return made


def subscribed(t: float, client: str, offset: str | None, recovered: bool = False) -> tuple:
    return (t, client, "subscribed", {"room": ROOMS[client], "offset": offset,
                                      "recovered": recovered})  # fmt: skip


def message(t: float, client: str, offset: str, sender: str, msg_id: str) -> tuple:
    fields = {"room": ROOMS[client], "offset": offset, "sender": sender, "msg_id": msg_id}
    return (t, client, "message", fields)


def acked(t: float, client: str, offset: str, msg_id: str) -> tuple:
    return (t, client, "acked", {"room": ROOMS[client], "offset": offset, "msg_id": msg_id})


def test_every_message_delivered_once_in_order_is_clean() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
        acked(1.0, "alice", "e-2", "1"), message(1.0, "alice", "e-2", "alice", "1"),
        message(1.1, "bob", "e-2", "alice", "1"),
        subscribed(6.0, "bob", "e-2", recovered=True),  # a resume: nothing was missed
        acked(6.5, "bob", "e-3", "1"), message(6.5, "bob", "e-3", "bob", "1"),
        message(6.6, "alice", "e-3", "bob", "1"),
    ), ROOMS, [])  # fmt: skip
    assert verdict.ok, verdict.violations
    assert verdict.line() == (
        "chaos: 1 faults, 2 acked, 0 lost, 0 duplicated, 0 reordered, presence converged"
    )


def test_an_acked_message_a_member_never_got_is_lost_with_its_faults() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
        acked(6.0, "alice", "e-2", "1"), message(6.0, "alice", "e-2", "alice", "1"),
        subscribed(8.0, "bob", "e-1", recovered=False),
    ), ROOMS, [])  # fmt: skip
    assert (verdict.lost, verdict.ok) == (1, False)
    [violation] = verdict.violations
    assert violation.kind == "lost" and violation.client == "bob"
    assert "alice#1" in violation.detail and "recovered: false: t=8.0s" in violation.detail


def test_messages_before_a_clients_first_subscribe_or_in_another_room_are_not_owed() -> None:
    verdict = check(history(
        acked(0.5, "alice", "e-2", "1"), message(0.5, "alice", "e-2", "alice", "1"),
        subscribed(0.1, "alice", "e-1"), subscribed(1.0, "bob", "e-2"),
        subscribed(0.1, "carol", "d-7"),
    ), ROOMS, [])  # fmt: skip
    assert verdict.ok, verdict.violations


def test_a_message_in_a_new_epoch_is_owed_when_acked_after_the_first_subscribe() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
        acked(6.0, "alice", "f-1", "1"), message(6.0, "alice", "f-1", "alice", "1"),
    ), ROOMS, [])  # fmt: skip
    assert verdict.lost == 1


def test_a_message_got_twice_is_duplicated() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"),
        acked(1.0, "alice", "e-2", "1"), message(1.0, "alice", "e-2", "alice", "1"),
        message(6.0, "alice", "e-2", "alice", "1"),
    ), ROOMS, [])  # fmt: skip
    assert (verdict.duplicated, verdict.reordered) == (1, 0)


def test_a_retry_stored_under_a_second_offset_is_duplicated() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
        acked(1.0, "alice", "e-2", "1"), message(1.0, "alice", "e-2", "alice", "1"),
        message(1.0, "bob", "e-3", "alice", "1"),
    ), ROOMS, [])  # fmt: skip
    assert verdict.duplicated == 1
    assert "stored twice" in verdict.violations[0].detail


def test_a_message_older_than_one_already_got_is_reordered() -> None:
    verdict = check(history(
        subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
        acked(1.0, "alice", "e-2", "1"), acked(1.1, "alice", "e-3", "2"),
        message(1.2, "bob", "e-3", "alice", "2"), message(1.3, "bob", "e-2", "alice", "1"),
        message(1.2, "alice", "e-2", "alice", "1"), message(1.3, "alice", "e-3", "alice", "2"),
    ), ROOMS, [])  # fmt: skip
    assert (verdict.reordered, verdict.lost, verdict.duplicated) == (1, 0, 0)
    assert verdict.violations[0].client == "bob"


def test_presence_left_diverged_fails_the_verdict() -> None:
    verdict = check(history(), ROOMS, ["gateway2 lobby: members ['bob'], connected []"])
    assert not verdict.ok
    assert verdict.line().endswith("presence diverged")
