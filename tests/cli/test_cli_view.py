"""RoomView, the client's pure core: server frames in, lines to show out (no I/O)."""

from __future__ import annotations

from typing import Any

from cli.events import ChatEvent, HistoryPage, Joined, RoomMessage, Status
from cli.render import plain, render
from cli.view import RoomView


def make_view() -> tuple[RoomView, list[ChatEvent]]:
    shown: list[ChatEvent] = []
    view = RoomView("lobby", "carol", shown.append)
    view.connected("carol", resume=False, since=None)
    view.handle({"type": "subscribed", "room": "lobby", "members": ["carol"], "offset": None})
    return view, shown


def message(offset: str, text: str, room: str = "lobby") -> dict[str, Any]:
    return {"type": "message", "room": room, "from": "dave", "text": text, "offset": offset}


def texts(shown: list[ChatEvent]) -> list[str]:
    return [event.text for event in shown if isinstance(event, RoomMessage)]


def test_a_message_whose_offset_was_shown_is_dropped():
    """Guards against: the same message shown twice when a replay overlaps live ones."""
    view, shown = make_view()
    view.handle(message("o1", "one"))
    view.handle(message("o1", "one"))
    view.handle(message("o2", "two"))
    assert texts(shown) == ["one", "two"]
    assert view.since() == "o2"


def test_backfill_shows_the_gap_then_held_live_messages_once_in_order():
    """A resume without `since` (the room was empty when entered) reads history up to
    the offset of `subscribed`; live messages wait for it.

    Guards against: live messages shown before the older ones of the gap, or shown
    twice when they are also in the history answer.
    """
    view, shown = make_view()
    view.connected("carol", resume=True, since=None)
    [request] = view.handle({"type": "subscribed", "room": "lobby", "members": [], "offset": "o2"})
    assert request["type"] == "history" and request["room"] == "lobby"
    view.handle(message("o3", "three"))  # live, while the history is on its way
    history = [message("o1", "one"), message("o2", "two"), message("o3", "three")]
    view.handle({"type": "history", "room": "lobby", "messages": history, "ref": request["ref"]})
    view.handle(message("o4", "four"))
    assert texts(shown) == ["one", "two", "three", "four"]


def test_an_unrecovered_resume_says_messages_may_be_missing():
    """Guards against: silently skipping a gap the server could not replay."""
    view, shown = make_view()
    view.handle(message("o1", "one"))
    view.connected("carol", resume=True, since="o1")
    view.handle({"type": "subscribed", "room": "lobby", "members": [], "recovered": False})
    assert any(isinstance(e, Status) and "missed" in e.text for e in shown)


def enter(view: RoomView, offset: str | None, **extra: Any) -> list[dict[str, Any]]:
    frame = {"type": "subscribed", "room": "lobby", "members": ["carol"], "offset": offset}
    return view.handle(frame | extra)


def test_entering_a_room_shows_its_recent_history_once_before_live_messages():
    """The first room's recent messages (up to the offset of `subscribed`) come first,
    as one page; live ones that arrived meanwhile follow, each once, in order.

    Guards against: no history on entering, live messages shown above older ones, a
    message shown twice (in the page and live), and history newer than the entry point
    shown out of order.
    """
    shown: list[ChatEvent] = []
    view = RoomView("lobby", "carol", shown.append)
    view.connected("carol", resume=False, since=None)
    [request] = enter(view, "o2")
    assert request["type"] == "history" and request["room"] == "lobby"
    view.handle(message("o3", "three"))
    view.handle(message("o4", "four"))
    history = [message(f"o{n}", word) for n, word in enumerate(("one", "two", "three"), 1)]
    view.handle({"type": "history", "room": "lobby", "messages": history, "ref": request["ref"]})
    view.handle(message("o3", "three"))  # a late duplicate
    [page] = [e for e in shown if isinstance(e, HistoryPage)]
    assert [m.text for m in page.messages] == ["one", "two"]
    assert shown.index(page) == 1  # right after "you are in"
    assert texts(shown) == ["three", "four"]


def test_an_empty_room_asks_for_no_history():
    """Guards against: a history request (and a wait for it) for a room with no message."""
    view, shown = make_view()
    view.handle(message("o1", "one"))
    assert texts(shown) == ["one"]


def test_recent_history_whose_answer_a_drop_lost_is_asked_again_and_shown_once():
    """The connection drops before the history answer: the resume replays after the
    entry offset and the history is asked for again, shown before the replay.

    Guards against: the recent history never shown (its answer died with the first
    connection), the replay shown before it, or the messages held then lost.
    """
    shown: list[ChatEvent] = []
    view = RoomView("lobby", "carol", shown.append)
    view.connected("carol", resume=False, since=None)
    enter(view, "o1")
    view.handle(message("o2", "two"))  # held, then the connection drops
    assert view.since() == "o1"
    view.connected("carol", resume=True, since="o1")
    [again] = enter(view, "o2", recovered=True)
    view.handle(message("o2", "two"))  # the replay
    history = [message("o1", "one"), message("o2", "two")]
    view.handle({"type": "history", "room": "lobby", "messages": history, "ref": again["ref"]})
    [page] = [e for e in shown if isinstance(e, HistoryPage)]
    assert [m.text for m in page.messages] == ["one"]
    assert texts(shown) == ["two"]


def test_join_switches_room_leaves_the_old_one_and_ignores_it_after():
    """Guards against: staying a member of the old room, or showing its messages."""
    view, shown = make_view()
    frame = view.join_frame("dev", "r1")
    assert frame == {"type": "join", "room": "dev", "ref": "r1"}
    reply = view.handle(
        {"type": "subscribed", "room": "dev", "members": ["carol"], "offset": None, "ref": "r1"}
    )
    assert reply == [{"type": "leave", "room": "lobby"}]
    assert view.room == "dev"
    assert shown[-1] == Joined("dev", ("carol",))
    view.handle(message("o9", "old room"))
    view.handle(message("d1", "new room", room="dev"))
    assert texts(shown) == ["new room"]


def test_a_join_asks_for_the_new_rooms_history_and_drops_a_stale_answer():
    """Guards against: no history on /join, or the history of the room left behind
    shown (as a page) after the switch."""
    shown: list[ChatEvent] = []
    view = RoomView("lobby", "carol", shown.append)
    view.connected("carol", resume=False, since=None)
    [stale] = enter(view, "o1")
    view.join_frame("dev", "r1")
    subscribed = {"type": "subscribed", "room": "dev", "members": [], "offset": "d1", "ref": "r1"}
    leave, request = view.handle(subscribed)
    assert leave == {"type": "leave", "room": "lobby"}
    assert request["type"] == "history" and request["room"] == "dev"
    old = [message("o1", "lobby one")]
    view.handle({"type": "history", "room": "lobby", "messages": old, "ref": stale["ref"]})
    new = [message("d1", "dev one", room="dev")]
    view.handle({"type": "history", "room": "dev", "messages": new, "ref": request["ref"]})
    pages = [e for e in shown if isinstance(e, HistoryPage)]
    assert [[m.text for m in p.messages] for p in pages] == [["dev one"]]


def test_a_cut_list_of_rooms_says_how_many_more_there_are():
    """Guards against: a gateway's list of the busiest 100 rooms shown as if it were
    every room (the `total` of the `rooms` answer dropped)."""
    view, shown = make_view()
    view.handle({"type": "rooms", "rooms": [{"room": "dev", "members": 3}], "total": 5})
    view.handle({"type": "rooms", "rooms": [{"room": "dev", "members": 3}], "total": 1})
    lines = [plain(line) for event in shown[-2:] for line in render(event, clock=False)]
    assert lines == ["* rooms: dev (3) and 4 more", "* rooms: dev (3)"]
