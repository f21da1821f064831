"""Events as lines of styled fragments; the pipe mode prints the same text unstyled."""

from __future__ import annotations

import time

from cli.events import (
    ChatEvent,
    DirectMessage,
    ErrorLine,
    HelpText,
    HistoryPage,
    Joined,
    MemberList,
    Presence,
    RoomList,
    RoomMessage,
    Status,
)

Fragments = list[tuple[str, str]]

STYLE = {
    "time": "fg:ansibrightblack",
    "sender": "bold",
    "own": "bold fg:ansigreen",
    "info": "fg:ansibrightblack",
    "pending": "italic fg:ansibrightblack",
    "dm": "fg:ansimagenta",
    "error": "bold fg:ansired",
}

PRESENCE_VERBS = {"join": "joined", "leave": "left"}


def render(event: ChatEvent, *, clock: bool) -> list[Fragments]:
    """The lines showing `event`; `clock` puts the local time before messages."""
    match event:
        case RoomMessage():
            return [_message(event, clock)]
        case DirectMessage(sender, to, text, ts, outgoing):
            head = f"[dm -> {to}] " if outgoing else f"[dm] {sender}: "
            return [[*_clock(ts, clock), ("class:dm", head + text)]]
        case Presence(room, kind, name):
            return [_info(f"{name} {PRESENCE_VERBS.get(kind, kind)} {room}")]
        case Joined(room, members):
            return [_info(f"you are in {room}: {', '.join(members) or 'nobody else'}")]
        case MemberList(room, members):
            return [_info(f"members of {room}: {', '.join(members)}")]
        case RoomList(rooms):
            listed = ", ".join(f"{room} ({count})" for room, count in rooms)
            return [_info(f"rooms: {listed or 'none'}")]
        case HistoryPage(room, messages):
            if not messages:
                return [_info(f"no messages in {room}")]
            header = _info(f"last {len(messages)} messages in {room}:")
            return [header, *(_message(m, clock) for m in messages)]
        case HelpText(lines):
            return [[("class:info", line)] for line in lines]
        case Status(text):
            return [_info(text)]
        case ErrorLine(message):
            return [[("class:error", f"! {message}")]]
    return []


def plain(fragments: Fragments) -> str:
    """One rendered line without its styles."""
    return "".join(text for _, text in fragments)


def _message(msg: RoomMessage, clock: bool) -> Fragments:
    sender_style = "class:own" if msg.own else "class:sender"
    return [*_clock(msg.ts, clock), (sender_style, msg.sender), ("", f": {msg.text}")]


def _clock(ts: int, clock: bool) -> Fragments:
    if not clock:
        return []
    return [("class:time", time.strftime("%H:%M ", time.localtime(ts / 1000)))]


def _info(text: str) -> Fragments:
    return [("class:info", f"* {text}")]
