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
    MessageDeleted,
    Presence,
    Removed,
    RoomList,
    RoomMessage,
    Status,
)
from cli.moderation import until_text, with_until

Fragments = list[tuple[str, str]]

STYLE = {
    "time": "fg:ansibrightblack",
    "sender": "bold",
    "own": "bold fg:ansigreen",
    "info": "fg:ansibrightblack",
    "pending": "italic fg:ansibrightblack",
    "dm": "fg:ansimagenta",
    "error": "bold fg:ansired",
    "number": "fg:ansicyan",
    "deleted": "italic fg:ansibrightblack",
}

PRESENCE_VERBS = {"join": "joined", "leave": "left"}


def render(event: ChatEvent, *, clock: bool) -> list[Fragments]:
    """The lines showing `event`; `clock` puts the local time before messages."""
    match event:
        case RoomMessage():
            return [_message(event, clock)]
        case MessageDeleted(message):
            return [_message(message, clock)]
        case Removed(room, by, until, current):
            ban = f" until {until_text(until)}" if until is not None else ""
            lines = [_info(f"you were removed from {room}{f' by {by}' if by else ''}{ban}")]
            if current:
                lines.append(_info("you are in no room now: /join ROOM to enter another"))
            return lines
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
            count = len(messages)
            last = "last message" if count == 1 else f"last {count} messages"
            header = _info(f"{last} in {room}:")
            return [header, *(_message(m, clock) for m in messages)]
        case HelpText(lines):
            return [[("class:info", line)] for line in lines]
        case Status(text):
            return [_info(text)]
        case ErrorLine(message, _, until):
            return [[("class:error", f"! {with_until(message, until)}")]]
    return []


def plain(fragments: Fragments) -> str:
    """One rendered line without its styles."""
    return "".join(text for _, text in fragments)


def _message(msg: RoomMessage, clock: bool) -> Fragments:
    sender_style = "class:own" if msg.own else "class:sender"
    number: Fragments = [] if msg.number is None else [("class:number", f"#{msg.number} ")]
    if msg.deleted:
        text = ("class:deleted", f"[deleted by {msg.by}]" if msg.by else "[deleted]")
    else:
        text = ("", msg.text)
    return [*_clock(msg.ts, clock), *number, (sender_style, msg.sender), ("", ": "), text]


def _clock(ts: int, clock: bool) -> Fragments:
    if not clock:
        return []
    return [("class:time", time.strftime("%H:%M ", time.localtime(ts / 1000)))]


def _info(text: str) -> Fragments:
    return [("class:info", f"* {text}")]
