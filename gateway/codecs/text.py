"""Text mode (no subprotocol): plain lines for any WebSocket client, like a classic chat.

An encoded event may hold several lines; each goes out as a frame of its own, since
line-oriented clients (websocat) show a frame's newlines as spaces. A message's lines
after its first are indented, whatever line boundary split them, and no line carries a
control character or line separator raw (see gateway.controls).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gateway.access import MAX_BAN_SECONDS
from gateway.codecs.frames import text_frames
from gateway.commands import (
    Command,
    DirectSend,
    HistoryQuery,
    Join,
    Kick,
    ListRooms,
    Quit,
    Send,
    ShowHelp,
    Who,
)
from gateway.controls import indent_continuations, neutralise
from gateway.errors import ErrorCode, ProtocolError
from gateway.events import (
    Ack,
    Deleted,
    Direct,
    ErrorReply,
    Event,
    History,
    Members,
    Message,
    Notice,
    Pong,
    PresenceChange,
    Removed,
    RoomList,
    Subscribed,
    Unsubscribed,
    Welcome,
)
from gateway.names import parse_count

NAME_QUESTION = "Your name:"
DEFAULT_HISTORY_LINES = 20
MAX_HISTORY_LINES = 100

HELP_LINES = [
    "* commands:",
    "*   /who              members of this room",
    "*   /join ROOM        leave this room and enter ROOM",
    "*   /rooms            rooms and how many are in each",
    '*   /msg NAME TEXT    a direct message (quote a name with spaces: /msg "a b" hi)',
    "*   /history [N]      the last N messages here (default 20)",
    "*   /kick NAME [S]    moderators: remove NAME from this room (banned S seconds)",
    "*   /help             this list",
    "*   /quit             leave the chat",
    "*   //text            send a message that starts with /",
]


def _usage(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, f"usage: {text}")


def _join(args: str) -> Command:
    room = args.strip()
    if not room or " " in room:
        raise _usage("/join ROOM")
    return Join(room=room)


def _history(args: str) -> Command:
    args = args.strip()
    if not args:
        return HistoryQuery(room=None, limit=DEFAULT_HISTORY_LINES)
    limit = parse_count(args, 1, MAX_HISTORY_LINES)
    if limit is None:
        raise _usage(f"/history [N], N from 1 to {MAX_HISTORY_LINES}")
    return HistoryQuery(room=None, limit=limit)


def _name_and_rest(args: str, usage: str) -> tuple[str, str]:
    """A name (quoted when it holds spaces) and what follows it."""
    args = args.strip()
    if args.startswith('"'):
        name, quote, rest = args[1:].partition('"')
        if not quote:
            raise _usage(usage.replace("NAME", '"NAME WITH SPACES"'))
    else:
        name, _, rest = args.partition(" ")
    return name, rest.strip()


def _direct(args: str) -> Command:
    name, text = _name_and_rest(args, "/msg NAME TEXT")
    if not name or not text:
        raise _usage("/msg NAME TEXT")
    return DirectSend(to=name, text=text)


def _kick(args: str) -> Command:
    name, seconds = _name_and_rest(args, "/kick NAME [SECONDS]")
    ban = parse_count(seconds, 1, MAX_BAN_SECONDS) if seconds else 0
    if not name or ban is None:
        raise _usage(f"/kick NAME [SECONDS], SECONDS from 1 to {MAX_BAN_SECONDS}")
    return Kick(room=None, name=name, seconds=ban)


def _no_args(command: Command, usage: str) -> Callable[[str], Command]:
    def decode(args: str) -> Command:
        if args.strip():
            raise _usage(usage)
        return command

    return decode


_COMMANDS: dict[str, Callable[[str], Command]] = {
    "who": _no_args(Who(room=None), "/who"),
    "join": _join,
    "rooms": _no_args(ListRooms(), "/rooms"),
    "msg": _direct,
    "kick": _kick,
    "history": _history,
    "help": _no_args(ShowHelp(), "/help"),
    "quit": _no_args(Quit(), "/quit"),
}


def _indent(text: str) -> str:
    """Continuation lines are indented so no message can forge a line of its own: after
    a newline, and after any other line boundary (U+2028, NEL U+0085, ...) that a message
    stored before they were refused may hold."""
    return indent_continuations(text)


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "nobody"


def _history_lines(event: History) -> str:
    if not event.messages:
        return f"* no messages in {event.room} yet"
    count = len(event.messages)
    last = "the last message" if count == 1 else f"the last {count} messages"
    lines = [f"* {last} of {event.room}:"]
    lines += [_message_line(m) for m in event.messages]
    return "\n".join(lines)


def _message_line(message: Message) -> str:
    if message.deleted_by is not None:
        return f"{message.sender}: [deleted by {message.deleted_by}]"
    return f"{message.sender}: {_indent(message.text)}"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _removed(event: Removed) -> str:
    until = f"; banned until {_time(event.until)}" if event.until is not None else ""
    return f"* you were removed from {event.room} by {event.by}{until}; /join another room"


def _room_list(event: RoomList) -> str:
    if not event.rooms:
        return "* no rooms yet"
    listed = ", ".join(f"{room} ({count})" for room, count in event.rooms)
    more = event.total - len(event.rooms)
    return f"* rooms: {listed}" + (f" and {more} more" if more > 0 else "")


class TextCodec:
    """Lines in, lines out. Slash commands as in docs/protocol.md, "Text mode"."""

    name = "text"

    def decode(self, frame: str) -> Command | None:
        line = frame.rstrip("\r\n")
        if not line.strip():
            return None
        if line.startswith("//"):
            return Send(room=None, text=line[1:])
        if not line.startswith("/"):
            return Send(room=None, text=line)
        word, _, args = line[1:].partition(" ")
        decoder = _COMMANDS.get(word.lower())
        if decoder is None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"unknown command /{word}; /help lists the commands"
            )
        return decoder(args)

    def frame(self, event: Event, *, outgoing: bool = False) -> bytes | None:
        text = self.encode(event, outgoing=outgoing)
        if text is None:
            return None
        return text_frames(text.split("\n"))  # a frame per line

    def encode(self, event: Event, *, outgoing: bool = False) -> str | None:
        """The lines showing `event`, joined by newlines (None: nothing to show). Anything
        else that could break or rewrite a line, which only a message stored before such
        characters were refused can hold, is shown as U+FFFD."""
        text = _describe(event, outgoing)
        return None if text is None else neutralise(text)


def _describe(event: Event, outgoing: bool) -> str | None:
    match event:
        case Message():
            return _message_line(event)
        case Deleted():
            return f"* {event.by} deleted a message in {event.room}"
        case Removed():
            return _removed(event)
        case PresenceChange():
            verb = "joined" if event.event == "join" else "left"
            return f"* {event.name} {verb} {event.room}"
        case Direct() if outgoing:
            return f"[dm -> {event.to}] {_indent(event.text)}"
        case Direct():
            return f"[dm] {event.sender}: {_indent(event.text)}"
        case ErrorReply():
            return f"! {event.message}"
        case Welcome():
            return f"* welcome, {event.name}! /help lists the commands"
        case Subscribed():
            return f"* you are in {event.room}; members: {_names(event.members)}"
        case Members():
            return f"* members of {event.room}: {_names(event.members)}"
        case RoomList():
            return _room_list(event)
        case History():
            return _history_lines(event)
        case Notice():
            return "\n".join(event.lines)
        case Pong():
            return "* pong"
        case Ack() if event.offset is not None:
            return "* sent"  # a room message was stored (a dm shows its own line)
        case Ack() | Unsubscribed():
            return None
    return None
