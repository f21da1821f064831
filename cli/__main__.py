"""`chat`: the terminal client of the chat gateway (also `python -m cli`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from cli.client import ClientConfig
from gateway.errors import ProtocolError
from gateway.names import validate_room

DEFAULT_URL = "ws://127.0.0.1:8080/ws"  # `make run`: one node on this machine


def build_parser() -> argparse.ArgumentParser:
    """The `chat` argument parser."""
    parser = argparse.ArgumentParser(
        prog="chat",
        description=(
            "Chat through the gateway. On a terminal: an input line with the chat above "
            "it (/help lists the commands). Otherwise (pipe mode): each stdin line is "
            "sent, arriving lines are printed plain (`!` lines, refusals, on stderr), and "
            "chat exits once stdin has ended and every message is acknowledged: 0 when "
            "everything went out, 1 when anything was refused."
        ),
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="the gateway's WebSocket URL, ws:// or wss:// (default: %(default)s)",
    )
    parser.add_argument(
        "--name",
        default="",
        help="your name (asked for when not given; with --token the token's name is yours)",
    )
    parser.add_argument(
        "--room", default="lobby", type=_room, help="room to enter first (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CHAT_TOKEN", "").strip() or None,
        metavar="JWT",
        help="auth token, for a gateway run with --jwt-secret (its operator makes one with "
        "`chat-gateway token NAME`); default: the CHAT_TOKEN environment variable, which "
        "keeps the token out of `ps` and your shell history",
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="pipe mode: once stdin has ended, give up (exit 1) after this long without "
        "an answer from the server (default: 10)",
    )
    return parser


def _room(value: str) -> str:
    try:
        return validate_room(value)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run `chat`; returns the exit code (0 after /quit, Ctrl-D or the end of stdin)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url.startswith(("ws://", "wss://")):
        parser.error("--url must start with ws:// or wss://")
    token = (args.token or "").strip() or None
    config = ClientConfig(url=args.url, name=args.name.strip(), room=args.room, token=token)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive and not config.name and token is None:
        parser.error("--name (or a token) is required when stdin or stdout is not a terminal")
    try:
        if interactive:
            from cli.terminal import TerminalUI

            return asyncio.run(TerminalUI(config).run())
        from cli.pipe import run_pipe

        return asyncio.run(run_pipe(config, idle_timeout=args.ack_timeout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
