"""`chat --help`, from the installed `chat` script."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from chat_helpers import WAIT

CHAT_SCRIPT = str(Path(sys.executable).parent / "chat")


async def test_help_shows_the_default_url_and_room():
    """Guards against: `--url` documented without the address `chat` connects to when
    none is given (issue 10), so a user cannot tell where it goes."""
    proc = await asyncio.create_subprocess_exec(
        CHAT_SCRIPT,
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )
    async with asyncio.timeout(WAIT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    options = " ".join(out.decode().partition("options:")[2].split())  # unwrapped
    url_help = options[options.index("--url URL") : options.index("--name NAME")]
    assert "(default: ws://127.0.0.1:8080/ws)" in url_help
    assert "(default: lobby)" in options
