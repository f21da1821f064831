"""Input line parsing (pure): what each line the user types asks for."""

from __future__ import annotations

import pytest

from cli.commands import Direct, Invalid, JoinRoom, Say, ShowHistory, Simple, parse


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say("hello")),
        ("//join is a word", Say("/join is a word")),
        ("/join dev", JoinRoom("dev")),
        ("/msg bob hi there", Direct("bob", "hi there")),
        ("/history", ShowHistory(20)),
        ("/history 5", ShowHistory(5)),
        ("/who", Simple("who")),
        ("/QUIT", Simple("quit")),
        ("   ", None),
    ],
)
def test_lines_parse_to_commands(line, command):
    """Guards against: a command sent as chat text, or `//` not escaping a slash."""
    assert parse(line) == command


@pytest.mark.parametrize(
    "line", ["/frobnicate", "/join", "/join two words", "/msg bob", "/history 0", "/who x"]
)
def test_bad_commands_are_local_errors(line):
    """Guards against: malformed commands sent to the server, or to the room as text."""
    assert isinstance(parse(line), Invalid)
