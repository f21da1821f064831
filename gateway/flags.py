"""The `chat-gateway` command line: one flag and one CHAT_* variable per setting."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, fields

from gateway.config import SECRETS, InvalidSetting, Settings


def settings_from_sources(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags over CHAT_* environment variables over defaults; a bad
    value exits with the parser's message, naming the flag or variable that set it."""
    environ = env if env is not None else os.environ
    parser = build_parser(environ)
    namespace = parser.parse_args(argv)
    values = {k: v for k, v in vars(namespace).items() if v is not None}
    try:
        return Settings(**values)
    except InvalidSetting as exc:
        flags = vars(build_parser({}).parse_args(argv))  # what the command line set
        env_name = _env_name(exc.name)
        if flags.get(exc.name) is None and env_name in environ:
            shown = "" if exc.name in SECRETS else f"={environ[env_name]!r}"  # never echo one
            parser.error(f"{env_name}{shown} {exc.problem}")
        parser.error(str(exc))


def _env_name(name: str) -> str:
    return f"CHAT_{name.upper()}"


def _field_type(f: Field[object]) -> type[int] | type[float] | type[str]:
    text = str(f.type)
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The `chat-gateway` argument parser; defaults come from `env` (CHAT_*)."""
    parser = argparse.ArgumentParser(
        prog="chat-gateway",
        description=(
            "A horizontally scalable WebSocket chat gateway. Every flag can also be set "
            "as an environment variable, shown in brackets; a flag wins over its variable."
        ),
        epilog="chat-gateway token NAME [--ttl SECONDS] prints a token for NAME instead "
        "(see chat-gateway token --help).",
    )
    for f in fields(Settings):
        kind = _field_type(f)
        env_name = _env_name(f.name)
        raw = env.get(env_name)
        default: int | float | str | None = None
        if raw == "" and f.name in SECRETS:
            parser.error(f"{env_name} is set but empty: unset it, or give the secret")
        if raw is not None and raw != "":
            try:
                default = kind(raw)
            except ValueError:
                parser.error(f"{env_name}={raw!r} is not a valid {kind.__name__}")
        shown = f.default if f.default not in (MISSING, None) else None
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            default=default,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [{env_name}]"
            + (f" (default: {shown})" if shown is not None else ""),
        )
    return parser
