"""Characters that must never reach a screen raw: control characters and line boundaries.

A message is shown line by line (a text-mode client, `chat`, a terminal): a character
that breaks a line, or that a terminal runs as a command (ESC, and the C1 controls such
as U+009B, a one-byte CSI), would let a message forge a line of its own or rewrite the
screen. Message text may hold newline and tab, and none of these: one list serves the
check (gateway.names), the text codec (which neutralises what a message stored before
the rule, or by an older node, may hold) and the fuzzer. The `chat` client
(cli/visible.py, which escapes a little more) and the page (static/view.js) keep their
own copy, as they must stand on their own against whatever a server sends.
"""

from __future__ import annotations

import re

# C0 but tab and newline, DEL, and C1 (U+0080 to U+009F, NEL U+0085 and CSI U+009B among them).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Not control characters to Unicode (categories Zl and Zp), but line breaks to anything
# that splits lines as Python's str.splitlines and JavaScript's regular expressions do.
LINE_SEPARATORS = re.compile("[\u2028\u2029]")
# Every line boundary str.splitlines knows; CR LF is one boundary, not two.
LINE_BREAKS = re.compile("\r\n|[\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029]")
# What message text may not hold: the control characters and the separators.
NOT_IN_TEXT = re.compile(f"{CONTROL_CHARACTERS.pattern}|{LINE_SEPARATORS.pattern}")


def neutralise(text: str) -> str:
    """`text` with every character message text may not hold (a control character but
    newline and tab, a line separator) replaced by U+FFFD: shown, never run, and no line
    boundary but the newlines."""
    return NOT_IN_TEXT.sub("\ufffd", text)


def indent_continuations(text: str, indent: str = "  ") -> str:
    """`text` with every line boundary (any that str.splitlines knows) made a newline
    followed by `indent`, so no line of it can pass for a line of its own."""
    return LINE_BREAKS.sub("\n" + indent, text)
