"""Events as lines of styled fragments; the pipe mode prints the same text unstyled.

A message's lines after its first are indented under its text, so none can pass for a
line of its own (`hi\n* admin joined lobby` is one message, not a message and a join),
and every fragment is passed through `cli.visible`: no control character reaches the
terminal or the pipe.
"""

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
from cli.visible import message_lines, visible, width

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
    """The lines showing `event`; `clock` puts the local time before messages. Nothing
    in them is a control character (see cli.visible)."""
    return [[(style, visible(text)) for style, text in line] for line in _lines(event, clock)]


def _lines(event: ChatEvent, clock: bool) -> list[Fragments]:
    match event:
        case RoomMessage():
            return _message(event, clock)
        case MessageDeleted(message):
            return _message(message, clock)
        case Removed(room, by, until, current):
            ban = f" until {until_text(until)}" if until is not None else ""
            lines = [_info(f"you were removed from {room}{f' by {by}' if by else ''}{ban}")]
            if current:
                lines.append(_info("you are in no room now: /join ROOM to enter another"))
            return lines
        case DirectMessage(sender, to, text, ts, outgoing):
            head = f"[dm -> {to}] " if outgoing else f"[dm] {sender}: "
            return _with_continuations([*_clock(ts, clock), ("class:dm", head)], "class:dm", text)
        case Presence(room, kind, name):
            return [_info(f"{name} {PRESENCE_VERBS.get(kind, kind)} {room}")]
        case Joined(room, members):
            return [_info(f"you are in {room}: {', '.join(members) or 'nobody else'}")]
        case MemberList(room, members):
            return [_info(f"members of {room}: {', '.join(members)}")]
        case RoomList(rooms, total):
            listed = ", ".join(f"{room} ({count})" for room, count in rooms)
            more = f" and {total - len(rooms)} more" if total > len(rooms) else ""
            return [_info(f"rooms: {listed or 'none'}{more}")]
        case HistoryPage(room, messages):
            if not messages:
                return [_info(f"no messages in {room}")]
            count = len(messages)
            last = "last message" if count == 1 else f"last {count} messages"
            header = _info(f"{last} in {room}:")
            return [header, *(line for m in messages for line in _message(m, clock))]
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


def _message(msg: RoomMessage, clock: bool) -> list[Fragments]:
    sender_style = "class:own" if msg.own else "class:sender"
    number: Fragments = [] if msg.number is None else [("class:number", f"#{msg.number} ")]
    head = [*_clock(msg.ts, clock), *number, (sender_style, msg.sender), ("", ": ")]
    if msg.deleted:
        return [[*head, ("class:deleted", f"[deleted by {msg.by}]" if msg.by else "[deleted]")]]
    return _with_continuations(head, "", msg.text)


def _with_continuations(head: Fragments, style: str, text: str) -> list[Fragments]:
    """`head` and the first line of `text`, then each further line of it indented to
    where the text began."""
    first, *more = message_lines(text)
    indent = " " * width(visible(plain(head)))
    return [[*head, (style, first)], *([(style, indent + line)] for line in more)]


def _clock(ts: int, clock: bool) -> Fragments:
    if not clock:
        return []
    return [("class:time", time.strftime("%H:%M ", time.localtime(ts / 1000)))]


def _info(text: str) -> Fragments:
    return [("class:info", f"* {text}")]
