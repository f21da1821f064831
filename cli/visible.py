"""Text from the server made safe to write to a terminal: shown, never run.

Whatever arrives (a message an older node stored before such characters were refused, a
hostile server) may hold characters a terminal acts on: ESC and the other C0 controls,
DEL, the C1 controls (U+009B is a one-byte CSI, U+0085 a line break), the line and
paragraph separators, bidi embeddings, overrides and isolates (they reorder what
follows), lone surrogates (not writable as UTF-8). Each is written as a visible escape
(`\\x9b`, `\\u2028`), a tab as spaces. The only line breaks are the ones the renderer
makes itself, from a message's newlines (`message_lines`).
"""

from __future__ import annotations

import re

from prompt_toolkit.utils import get_cwidth

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
TAB = "    "


def visible(text: str) -> str:
    """`text` with every character a terminal could act on written as an escape."""
    return UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\t":
        return TAB
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def message_lines(text: str) -> list[str]:
    """A message's lines: split at its newlines, the only line break message text may
    hold (any other boundary a server sends is shown escaped by `visible`)."""
    return text.split("\n")


def width(text: str) -> int:
    """The columns `text` takes on a terminal (wide characters count two)."""
    return get_cwidth(text)
