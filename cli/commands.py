"""Input lines, shared by the terminal and pipe modes: parsed by the server's text-mode
parser (`TextCodec`), so both speak one command language, then run on the client.

`/delete N` alone is parsed here: it names a message by the number the client shows
before it, which only the client knows.
"""

from __future__ import annotations

from cli.client import ChatClient
from cli.events import ErrorLine, HelpText
from gateway.codecs.text import DEFAULT_HISTORY_LINES, MAX_HISTORY_LINES, TextCodec
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
from gateway.errors import ErrorCode, ProtocolError
from gateway.names import parse_count, validate_room

MAX_NUMBER = 999_999_999

HELP = (
    "commands:",
    "  TEXT                  send TEXT to the current room (//text sends /text)",
    "  /join ROOM            leave the current room and enter ROOM",
    "  /who                  members of the current room",
    "  /rooms                rooms with their member counts",
    '  /msg NAME TEXT        a direct message to NAME (/msg "A NAME" TEXT if it has spaces)',
    f"  /history [N]          the last N messages of the room "
    f"(default {DEFAULT_HISTORY_LINES}, at most {MAX_HISTORY_LINES})",
    "  /help                 this list",
    "  /quit                 leave (Ctrl-D too)",
    "moderator commands: they need a moderator token (chat-gateway token NAME",
    "--moderates ROOMS); in a room you moderate each message shows its number, #N:",
    "  /kick NAME [SECONDS]  remove NAME from the room; with SECONDS, also ban NAME",
    "                        from coming back for that long",
    "  /delete N             delete message #N for everyone",
)

_CODEC = TextCodec()


def _usage(text: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_FRAME, f"usage: {text}")


def _delete(client: ChatClient, line: str) -> bool:
    """Run `line` if it is `/delete N`; False when it is another line."""
    word, _, args = line.partition(" ")
    if word.lower() != "/delete":
        return False
    number = parse_count(args.strip().removeprefix("#"), 1, MAX_NUMBER)
    if number is None:
        raise _usage("/delete N, the number shown before the message (#N)")
    client.delete(number)
    return True


def run_line(client: ChatClient, line: str) -> bool:
    """Parse and run one input line on `client`; True when it asks to quit.

    A bad command is shown as a local error line (the server's usage message) and
    nothing is sent; a blank line does nothing.
    """
    try:
        if _delete(client, line.rstrip("\r\n")):
            return False
        command = _CODEC.decode(line)
        if isinstance(command, Join):
            validate_room(command.room)  # refused here, before the view awaits its answer
    except ProtocolError as exc:
        client.notify(ErrorLine(exc.message))
        return False
    return command is not None and _execute(client, command)


def _execute(client: ChatClient, command: Command) -> bool:
    match command:
        case Send(text=text):
            client.say(text)
        case DirectSend(to=to, text=text):
            client.direct(to, text)
        case Join(room=room):
            client.join(room)
        case Kick(name=name, seconds=seconds):
            client.kick(name, seconds)
        case HistoryQuery(limit=limit):
            client.history(limit or DEFAULT_HISTORY_LINES)
        case Who():
            client.who()
        case ListRooms():
            client.rooms()
        case ShowHelp():
            client.notify(HelpText(HELP))
        case Quit():
            return True
    return False
