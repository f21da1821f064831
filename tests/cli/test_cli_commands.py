"""Input lines (pure): what each line the user types makes the client do."""

from __future__ import annotations

import pytest

from cli.commands import HELP, run_line
from cli.events import ErrorLine, HelpText


class FakeClient:
    """Records the actions `run_line` asks for instead of sending anything."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def __getattr__(self, action: str):
        return lambda *args: self.calls.append((action, *args))


def run(line: str) -> tuple[bool, list[tuple[object, ...]]]:
    client = FakeClient()
    quit_asked = run_line(client, line)  # type: ignore[arg-type]
    return quit_asked, client.calls


@pytest.mark.parametrize(
    ("line", "calls"),
    [
        ("hello", [("say", "hello")]),
        ("//join is a word", [("say", "/join is a word")]),
        ("/join dev", [("join", "dev")]),
        ("/msg bob hi there", [("direct", "bob", "hi there")]),
        ('/msg "ann lee" hi', [("direct", "ann lee", "hi")]),
        ("/history", [("history", 20)]),
        ("/history 5", [("history", 5)]),
        ("/who", [("who",)]),
        ("/rooms", [("rooms",)]),
        ("/help", [("notify", HelpText(HELP))]),
        ("   ", []),
    ],
)
def test_lines_run_as_actions(line, calls):
    """Guards against: a command sent as chat text, or `//` not escaping a slash."""
    assert run(line) == (False, calls)


@pytest.mark.parametrize("line", ["/quit", "/QUIT"])
def test_quit_asks_to_leave(line):
    """Guards against: /quit sent to the server instead of ending the client."""
    assert run(line) == (True, [])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/frobnicate", "unknown command /frobnicate; /help lists the commands"),
        ("/join", "usage: /join ROOM"),
        ("/join two words", "usage: /join ROOM"),
        ("/join bad!room", "a room name is 1 to 64 letters, digits, '_' or '-'"),
        ("/msg bob", "usage: /msg NAME TEXT"),
        ('/msg "ann lee hi', 'usage: /msg "NAME WITH SPACES" TEXT'),
        ("/history 0", "usage: /history [N], N from 1 to 100"),
        ("/history ²", "usage: /history [N], N from 1 to 100"),
        ("/who x", "usage: /who"),
    ],
)
def test_bad_commands_are_local_errors(line, message):
    """Guards against: malformed commands sent to the server, or to the room as text."""
    assert run(line) == (False, [("notify", ErrorLine(message))])
