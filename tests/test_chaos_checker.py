"""The fault campaign's checkers (bench/chaos/checker.py, event_checker.py) on histories
written by hand: each kind of violation is found, and what the protocol allows is not one."""

from __future__ import annotations

from bench.chaos.checker import check
from bench.chaos.event_checker import check_events
from bench.chaos.history import Delivered, Fault, History, Record

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


# --- the events the application received (bench/chaos/event_checker.py) -------------


def event(t: float, event_id: str, **fields: object) -> Delivered:
    return Delivered(t, {"id": event_id, "ts": 0, **fields})


def said(t: float, event_id: str, sender: str, msg_id: str, offset: str) -> Delivered:
    """The `message` event of `sender`'s message `msg_id` in its room."""
    return event(t, event_id, type="message", room=ROOMS[sender], **{"from": sender},
                 text=msg_id, offset=offset)  # fmt: skip


def joined(t: float, event_id: str, name: str, how: str = "join") -> Delivered:
    return event(t, event_id, type="presence", room=ROOMS[name], event=how, name=name)


def with_events(made: History, *deliveries: Delivered) -> History:
    made.deliveries = list(deliveries)
    return made


# Alice sends two messages, Bob one, all acked and got by both.
CHAT = (
    subscribed(0.1, "alice", "e-1"), subscribed(0.2, "bob", "e-1"),
    acked(1.0, "alice", "e-2", "1"), message(1.0, "alice", "e-2", "alice", "1"),
    message(1.0, "bob", "e-2", "alice", "1"),
    acked(2.0, "bob", "e-3", "1"), message(2.0, "alice", "e-3", "bob", "1"),
    message(2.0, "bob", "e-3", "bob", "1"),
    acked(3.0, "alice", "e-4", "2"), message(3.0, "alice", "e-4", "alice", "2"),
    message(3.0, "bob", "e-4", "alice", "2"),
)  # fmt: skip
JOINS = (joined(0.5, "j1", "alice"), joined(0.5, "j2", "bob"))


def test_every_acked_message_told_in_order_is_clean_and_repeats_are_allowed() -> None:
    made = with_events(history(*CHAT), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(2.5, "m2", "bob", "1", "e-3"),
        said(2.6, "m1", "alice", "1", "e-2"),  # the batch again: its 2xx was lost
        said(3.5, "m3", "alice", "2", "e-4"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert verdict.ok, verdict.violations
    assert verdict.line() == (
        "events: 5 delivered, 1 repeated, 0 lost, 0 duplicated, 0 reordered, 0 unknown, 0 presence"
    )


def test_an_acked_message_whose_event_never_came_is_lost() -> None:
    made = with_events(history(*CHAT), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(3.5, "m3", "alice", "2", "e-4"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert (verdict.lost, verdict.ok) == (1, False)
    assert "bob#1 in lobby at e-3" in verdict.violations[0].detail


def test_an_event_with_another_offset_or_text_than_the_message_is_lost_and_unknown() -> None:
    made = with_events(history(*CHAT), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(2.5, "m2", "bob", "1", "e-5"),
        said(3.5, "m3", "alice", "two", "e-4"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert (verdict.lost, verdict.unknown) == (2, 2)
    details = " ".join(v.detail for v in verdict.violations)
    assert "acked at e-3: stored twice" in details and "never acked, no client got it" in details


def test_a_later_offsets_event_first_is_reordered_but_an_unacked_one_does_not_count() -> None:
    made = with_events(history(*CHAT), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(2.5, "m3", "alice", "2", "e-4"),
        said(2.6, "m2", "bob", "1", "e-3"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert (verdict.reordered, verdict.lost) == (1, 0)
    assert "bob#1 in lobby at e-3" in verdict.violations[0].detail
    # a write lost in a failover before its ack: its offset came back with bob's message,
    # and a client got it live, so it existed; it orders nothing
    made = with_events(history(*CHAT, message(1.8, "alice", "e-3", "alice", "9")), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(1.9, "lost", "alice", "9", "e-3"),
        said(2.5, "m2", "bob", "1", "e-3"), said(3.5, "m3", "alice", "2", "e-4"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert verdict.ok, verdict.violations


def test_two_events_for_one_message_are_duplicated() -> None:
    made = with_events(history(*CHAT), *JOINS,
        said(1.5, "m1", "alice", "1", "e-2"), said(1.6, "m1b", "alice", "1", "e-2"),
        said(2.5, "m2", "bob", "1", "e-3"), said(3.5, "m3", "alice", "2", "e-4"),
    )  # fmt: skip
    verdict = check_events(made, ROOMS, {"alice", "bob"})
    assert (verdict.duplicated, verdict.repeated) == (1, 0)


def test_a_missing_join_or_a_leave_last_for_a_member_is_a_presence_violation() -> None:
    told = (said(1.5, "m1", "alice", "1", "e-2"), said(2.5, "m2", "bob", "1", "e-3"),
            said(3.5, "m3", "alice", "2", "e-4"))  # fmt: skip
    verdict = check_events(with_events(history(*CHAT), JOINS[0], *told), ROOMS, {"alice", "bob"})
    assert verdict.presence == 1 and "bob joined lobby" in verdict.violations[0].detail
    left = joined(4.0, "l1", "bob", "leave")
    verdict = check_events(with_events(history(*CHAT), *JOINS, *told, left), ROOMS, {"alice"})
    assert verdict.ok, verdict.violations  # bob is not connected at the end: he may be gone
    verdict = check_events(
        with_events(history(*CHAT), *JOINS, *told, left), ROOMS, {"alice", "bob"}
    )
    assert verdict.presence == 1 and "last presence event" in verdict.violations[0].detail


def test_the_events_verdict_joins_the_final_line() -> None:
    made = with_events(history(*CHAT), *JOINS, said(1.5, "m1", "alice", "1", "e-2"))
    verdict = check(made, ROOMS, [])
    verdict.events = check_events(made, ROOMS, {"alice", "bob"})
    assert not verdict.ok
    assert verdict.line() == (
        "chaos: 1 faults, 3 acked, 0 lost, 0 duplicated, 0 reordered, presence converged; "
        "events: 3 delivered, 0 repeated, 2 lost, 0 duplicated, 0 reordered, 0 unknown, "
        "0 presence"
    )
