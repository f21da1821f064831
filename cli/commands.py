"""Input lines: `/command` parsing and running, shared by the terminal and pipe modes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cli.client import ChatClient
from cli.events import ErrorLine, HelpText

ROOM_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
HISTORY_DEFAULT, HISTORY_MAX = 20, 100

HELP = (
    "commands:",
    "  TEXT              send TEXT to the current room (//text sends /text)",
    "  /join ROOM        leave the current room and enter ROOM",
    "  /who              members of the current room",
    "  /rooms            rooms with their member counts",
    "  /msg NAME TEXT    a direct message to NAME",
    "  /history [N]      the last N messages of the room (default 20, at most 100)",
    "  /help             this list",
    "  /quit             leave (Ctrl-D too)",
)


@dataclass(frozen=True, slots=True)
class Say:
    """A message to the current room."""

    text: str


@dataclass(frozen=True, slots=True)
class Direct:
    """/msg NAME TEXT."""

    to: str
    text: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """/join ROOM."""

    room: str


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without arguments: who, rooms, help or quit."""

    name: str


@dataclass(frozen=True, slots=True)
class ShowHistory:
    """/history [N]."""

    limit: int


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that is not a valid command; `message` says why."""

    message: str


Command = Say | Direct | JoinRoom | Simple | ShowHistory | Invalid
SIMPLE = frozenset({"who", "rooms", "help", "quit"})


def parse(line: str) -> Command | None:
    """What an input line asks for; None for a blank line."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    word, _, rest = line[1:].partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in SIMPLE:
        return Simple(word) if not rest else Invalid(f"/{word} takes no arguments")
    if word == "join":
        if not ROOM_PATTERN.fullmatch(rest):
            return Invalid("usage: /join ROOM (letters, digits, _ and -, at most 64)")
        return JoinRoom(rest)
    if word == "msg":
        to, _, text = rest.partition(" ")
        return Direct(to, text.strip()) if to and text.strip() else Invalid("usage: /msg NAME TEXT")
    if word == "history":
        return _history(rest)
    return Invalid(f"unknown command /{word}; /help lists them")


def _history(arg: str) -> Command:
    if not arg:
        return ShowHistory(HISTORY_DEFAULT)
    if arg.isdigit() and 1 <= int(arg) <= HISTORY_MAX:
        return ShowHistory(int(arg))
    return Invalid(f"usage: /history [N], N from 1 to {HISTORY_MAX}")


def execute(client: ChatClient, command: Command) -> bool:
    """Run one command on `client`; True when it asks to quit."""
    match command:
        case Say(text):
            client.say(text)
        case Direct(to, text):
            client.direct(to, text)
        case JoinRoom(room):
            client.join(room)
        case ShowHistory(limit):
            client.history(limit)
        case Invalid(message):
            client.notify(ErrorLine(message))
        case Simple("who"):
            client.who()
        case Simple("rooms"):
            client.rooms()
        case Simple("help"):
            client.notify(HelpText(HELP))
        case Simple("quit"):
            return True
    return False
