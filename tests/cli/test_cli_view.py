"""RoomView, the client's pure core: server frames in, lines to show out (no I/O)."""

from __future__ import annotations

from typing import Any

from cli.events import ChatEvent, Joined, RoomMessage, Status
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
    """A resume without `since` reads history; live messages wait for it.

    Guards against: live messages shown before the older ones of the gap, or shown
    twice when they are also in the history answer.
    """
    view, shown = make_view()
    request = view.connected("carol", resume=True, since=None)
    assert request is not None and request["type"] == "history"
    view.handle({"type": "subscribed", "room": "lobby", "members": [], "offset": "o2"})
    view.handle(message("o3", "three"))  # live, while the history is on its way
    history = [message("o1", "one"), message("o2", "two"), message("o3", "three")]
    view.handle({"type": "history", "room": "lobby", "messages": history, "ref": request["ref"]})
    view.handle(message("o4", "four"))
    assert texts(shown) == ["one", "two", "three", "four"]


def test_an_unrecovered_resume_says_messages_may_be_missing():
    """Guards against: silently skipping a gap the server could not replay."""
    view, shown = make_view()
    view.handle(message("o1", "one"))
    assert view.connected("carol", resume=True, since="o1") is None
    view.handle({"type": "subscribed", "room": "lobby", "members": [], "recovered": False})
    assert any(isinstance(e, Status) and "missed" in e.text for e in shown)


def test_join_switches_room_leaves_the_old_one_and_ignores_it_after():
    """Guards against: staying a member of the old room, or showing its messages."""
    view, shown = make_view()
    frame = view.join_frame("dev", "r1")
    assert frame == {"type": "join", "room": "dev", "ref": "r1"}
    reply = view.handle(
        {"type": "subscribed", "room": "dev", "members": ["carol"], "offset": None, "ref": "r1"}
    )
    assert reply == {"type": "leave", "room": "lobby"}
    assert view.room == "dev"
    assert shown[-1] == Joined("dev", ("carol",))
    view.handle(message("o9", "old room"))
    view.handle(message("d1", "new room", room="dev"))
    assert texts(shown) == ["new room"]
