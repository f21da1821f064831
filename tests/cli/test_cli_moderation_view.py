"""Moderation in the client's pure parts (no I/O): the RoomView numbering messages for
a moderator and marking deleted ones, a removal, and the lines typed and shown."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cli.commands import run_line
from cli.events import (
    ChatEvent,
    ErrorLine,
    HistoryPage,
    MessageDeleted,
    Removed,
)
from cli.moderation import MessageNumbers, moderated_rooms, until_text
from cli.render import plain, render
from cli.view import RoomView


def make_view(moderates: list[str] | None = None) -> tuple[RoomView, list[ChatEvent]]:
    shown: list[ChatEvent] = []
    view = RoomView("team-a", "tess", shown.append)
    view.connected("tess", resume=False, since=None, moderates=moderated_rooms(moderates))
    view.handle({"type": "subscribed", "room": "team-a", "members": ["tess"], "offset": None})
    return view, shown


def message(offset: str, text: str, **extra: Any) -> dict[str, Any]:
    frame = {"type": "message", "room": "team-a", "from": "dave", "text": text}
    return frame | {"offset": offset, "ts": 1_700_000_000_000} | extra


def lines(shown: list[ChatEvent]) -> list[str]:
    """The plain lines shown, after the first room's `* you are in ...`."""
    return [plain(line) for event in shown[1:] for line in render(event, clock=False)]


def test_a_moderator_sees_numbers_that_name_the_messages_offsets():
    """Guards against: no way to name a message, numbers that do not map back to the
    offset shown, and a message shown again (in /history) under another number."""
    view, shown = make_view(["team-*"])
    view.handle(message("o1", "one"))
    view.handle(message("o2", "two"))
    history = [message("o1", "one"), message("o2", "two")]
    view.handle({"type": "history", "room": "team-a", "messages": history, "ref": "h"})
    assert lines(shown) == [
        "#1 dave: one",
        "#2 dave: two",
        "* last 2 messages in team-a:",
        "#1 dave: one",
        "#2 dave: two",
    ]
    assert (view.offset_of(1), view.offset_of(2), view.offset_of(3)) == ("o1", "o2", None)


def test_no_numbers_for_a_room_the_user_does_not_moderate():
    """Guards against: numbers cluttering everyone's screen."""
    view, shown = make_view(["team-b"])
    view.handle(message("o1", "one"))
    assert lines(shown) == ["dave: one"]
    assert view.offset_of(1) is None


def test_a_live_deletion_shows_the_message_again_as_deleted_with_its_number():
    """Guards against: a deletion unseen, or its text shown again."""
    view, shown = make_view(["team-a"])
    view.handle(message("o1", "secret"))
    view.handle({"type": "deleted", "room": "team-a", "offset": "o1", "by": "tess"})
    view.handle({"type": "deleted", "room": "team-a", "offset": "o1", "by": "tess"})  # again
    assert isinstance(shown[-1], MessageDeleted)
    assert lines(shown) == ["#1 dave: secret", "#1 dave: [deleted by tess]"]


def test_a_message_deleted_before_it_was_shown_shows_only_as_deleted():
    """A message held behind the room's history, or in a history answer read before
    the delete, is deleted by the time it shows.

    Guards against: the text of a deleted message shown because its `deleted` came
    before the message itself was shown.
    """
    shown: list[ChatEvent] = []
    view = RoomView("team-a", "tess", shown.append)
    view.connected("tess", resume=False, since=None)
    frame = {"type": "subscribed", "room": "team-a", "members": [], "offset": "o1"}
    [fetch] = view.handle(frame)
    view.handle(message("o2", "held"))  # live, held until the history is shown
    view.handle({"type": "deleted", "room": "team-a", "offset": "o2", "by": "tess"})
    view.handle({"type": "deleted", "room": "team-a", "offset": "o1", "by": "tess"})
    old = [message("o1", "read before the delete")]
    view.handle({"type": "history", "room": "team-a", "messages": old, "ref": fetch["ref"]})
    assert lines(shown) == [
        "* last message in team-a:",
        "dave: [deleted by tess]",
        "dave: [deleted by tess]",
    ]


def test_tombstones_in_history_and_in_a_replay_show_as_deleted():
    """Guards against: a tombstone (`deleted`, empty text) shown as an empty message."""
    view, shown = make_view()
    view.handle(message("o1", "", deleted=True, by="tess"))  # in a resume's replay
    tombstone = message("o1", "", deleted=True, by="tess")
    view.handle({"type": "history", "room": "team-a", "messages": [tombstone], "ref": "h"})
    assert isinstance(shown[-1], HistoryPage)
    assert lines(shown) == [
        "dave: [deleted by tess]",
        "* last message in team-a:",
        "dave: [deleted by tess]",
    ]


def test_a_removal_from_the_current_room_leaves_the_client_in_no_room():
    """Guards against: the room's events still shown after the removal, a resume
    (`since`) back into it, and a `leave` of it sent when the user /joins another."""
    view, shown = make_view(["team-a"])
    view.handle(message("o1", "one"))
    until = int(time.time() * 1000) + 600_000
    view.handle({"type": "removed", "room": "team-a", "by": "tess", "until": until})
    assert shown[-1] == Removed("team-a", "tess", until, current=True)
    assert lines(shown)[-2:] == [
        f"* you were removed from team-a by tess until {until_text(until)}",
        "* you are in no room now: /join ROOM to enter another",
    ]
    view.handle(message("o2", "after the removal"))
    view.handle({"type": "presence", "room": "team-a", "event": "join", "name": "eve"})
    assert (view.present, view.since(), view.offset_of(1)) == (False, None, None)
    assert len(shown) == 3  # nothing more shown
    frames = view.handle(
        {"type": "subscribed", "room": "dev", "members": [], "offset": None, "ref": "j"}
    )
    assert frames == []  # not the answer to a /join yet
    view.join_frame("dev", "j")
    frames = view.handle(
        {"type": "subscribed", "room": "dev", "members": [], "offset": None, "ref": "j"}
    )
    assert frames == [] and view.present and view.room == "dev"


def test_a_removal_from_another_room_only_says_so():
    view, shown = make_view()
    view.handle({"type": "removed", "room": "old", "by": "tess"})
    assert view.present
    assert lines(shown)[-1] == "* you were removed from old by tess"


def test_a_ban_refusal_shows_when_it_ends_in_local_time():
    """Guards against: `banned` shown without its end."""
    view, shown = make_view()
    until = int(time.time() * 1000) + 3_600_000
    view.handle({"type": "error", "code": "banned", "message": "you are banned", "until": until})
    assert shown[-1] == ErrorLine("you are banned", "banned", until)
    assert lines(shown)[-1] == f"! you are banned (ends {until_text(until)} local time)"


def test_until_shows_the_date_when_it_is_not_today():
    now = time.mktime((2030, 5, 1, 12, 0, 0, 0, 0, -1))
    assert until_text(int((now + 3600) * 1000), now) == "13:00"
    assert until_text(int((now + 86400 * 2) * 1000), now) == "2030-05-03 12:00"


def test_only_the_newest_numbers_are_kept():
    numbers = MessageNumbers(limit=2)
    assert [numbers.number(o) for o in ("a", "b", "a", "c")] == [1, 2, 1, 3]
    assert (numbers.offset(1), numbers.offset(2), numbers.offset(3)) == (None, "b", "c")


class FakeClient:
    """Records the actions `run_line` asks for instead of sending anything."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def __getattr__(self, action: str):
        return lambda *args: self.calls.append((action, *args))


KICK_USAGE = ErrorLine("usage: /kick NAME [SECONDS], SECONDS from 1 to 315360000")
DELETE_USAGE = ErrorLine("usage: /delete N, the number shown before the message (#N)")


@pytest.mark.parametrize(
    ("line", "call"),
    [
        ("/kick bob", ("kick", "bob", 0)),
        ("/kick bob 600", ("kick", "bob", 600)),
        ('/kick "ann lee" 60', ("kick", "ann lee", 60)),
        ("/delete 3", ("delete", 3)),
        ("/DELETE #12", ("delete", 12)),
        ("/kick", ("notify", KICK_USAGE)),
        ("/kick bob soon", ("notify", KICK_USAGE)),
        ("/delete", ("notify", DELETE_USAGE)),
        ("/delete 0", ("notify", DELETE_USAGE)),
        ("//delete 3", ("say", "/delete 3")),
    ],
)
def test_moderator_lines_run_as_actions(line, call):
    """Guards against: /delete sent as chat text, or a malformed one sent at all."""
    client = FakeClient()
    assert run_line(client, line) is False  # type: ignore[arg-type]
    assert client.calls == [call]
