"""Names and rooms: what is valid, and how names compare."""

from __future__ import annotations

import re
import unicodedata

from gateway.confusables import BLANK_RENDERING, is_default_ignorable, skeleton
from gateway.controls import CONTROL_CHARACTERS, LINE_SEPARATORS
from gateway.errors import ErrorCode, ProtocolError

MAX_NAME_CHARS = 32
# What text-mode lines start with: `* ` system, `! ` error, `[dm] ` direct message. A name
# may not start with one, nor with a look-alike of one: a compatibility form (NFKC:
# fullwidth U+FF3B, small U+FE57) or a confusable (skeleton: low asterisk U+204E, the
# click letter U+01C3). (Each prefix is its own skeleton: the check relies on that.)
LINE_PREFIXES = ("*", "!", "[")
# UTS #39 (5.4): more nonspacing marks in a row than this hide what is under them.
MAX_MARKS_IN_A_ROW = 4
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
LONE_SURROGATES = re.compile("[\ud800-\udfff]")
# Embeddings, overrides and isolates reorder the text around them: "\u202eabc" shows as
# "cba". Names refuse them as non-printable; message text refuses them too. The marks
# (U+200E, U+200F, U+061C) only set one character's direction and stay allowed.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
FORBIDDEN_IN_TEXT = re.compile(
    "|".join(
        p.pattern for p in (CONTROL_CHARACTERS, LINE_SEPARATORS, LONE_SURROGATES, BIDI_CONTROLS)
    )
)


def name_key(name: str) -> str:
    """The form names are compared in: NFC-normalised and case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def name_skeleton(name: str) -> str:
    """What names are told apart by when one may not look like another (two names
    online may not share one): see key_skeleton."""
    return key_skeleton(name_key(name))


def key_skeleton(key: str) -> str:
    """The skeleton of name key `key`: its UTS #39 skeleton, case-folded again (the
    prototype of `0` is `O`: `b0b` then looks like `bob`, as it does on screen)."""
    return skeleton(key).casefold()


def validate_name(raw: str) -> str:
    """The display name for `raw`, trimmed; raises invalid_name with the reason."""
    name = unicodedata.normalize("NFC", raw.strip())
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ProtocolError(ErrorCode.INVALID_NAME, f"a name is 1 to {MAX_NAME_CHARS} characters")
    problem = _invisible(name) or _unanchored_marks(name) or _line_prefix(name)
    if problem is not None:
        raise ProtocolError(ErrorCode.INVALID_NAME, f"a name may not {problem}")
    return name


def _invisible(name: str) -> str | None:
    """Why `name` holds something that does not show, or None."""
    for char in name:
        if not char.isprintable() or is_default_ignorable(char) or char in BLANK_RENDERING:
            # not printable: control, format, separator, surrogate, private use, unassigned
            return f"contain invisible, blank, control or formatting characters (U+{ord(char):04X})"
    return None


def _unanchored_marks(name: str) -> str | None:
    """Why `name` holds combining marks that sit on nothing (or pile up), or None."""
    previous, run = " ", 0  # the start of a name counts as a space: no base
    for char in unicodedata.normalize("NFD", name):
        if unicodedata.category(char).startswith("M"):
            if previous == " " and run == 0:
                return f"start with, or put after a space, a combining mark (U+{ord(char):04X})"
            run += 1
            if run > MAX_MARKS_IN_A_ROW or char == previous:
                return (
                    f"stack combining marks (more than {MAX_MARKS_IN_A_ROW}, or one twice, "
                    "on one character)"
                )
        else:
            run = 0
        previous = char
    return None


def _line_prefix(name: str) -> str | None:
    """Why `name` could pass for the start of a text-mode line, or None."""
    compatible = unicodedata.normalize("NFKC", name)
    if compatible.startswith(LINE_PREFIXES) or skeleton(compatible).startswith(LINE_PREFIXES):
        return "start with '*', '!' or '[', nor with a character that looks like one"
    return None


def validate_room(room: str) -> str:
    """`room` itself when it is a valid room name; raises invalid_room otherwise."""
    if not ROOM_PATTERN.fullmatch(room):
        raise ProtocolError(
            ErrorCode.INVALID_ROOM,
            "a room name is 1 to 64 letters, digits, '_' or '-'",
        )
    return room


def validate_text(text: str, max_chars: int) -> str:
    """Message text: not blank, not over the limit, none of the characters it may not hold
    (control characters but newline and tab, C1 ones included, the line and paragraph
    separators, lone surrogates, bidi controls)."""
    if not text.strip():
        raise ProtocolError(ErrorCode.BAD_FRAME, "a message needs some text")
    if len(text) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LONG, f"a message is at most {max_chars} characters")
    found = FORBIDDEN_IN_TEXT.search(text)  # one scan on the hot path; the kind only if found
    if found is not None:
        char = found.group()
        if CONTROL_CHARACTERS.match(char):
            problem = (
                "control characters (U+0000 to U+001F, U+007F to U+009F): "
                "newline and tab are the only ones allowed"
            )
        elif LINE_SEPARATORS.match(char):
            problem = "line or paragraph separators (U+2028, U+2029): use a newline"
        elif LONE_SURROGATES.match(char):
            problem = "lone surrogates"
        else:
            problem = (
                "bidi embedding, override or isolate characters (U+202A to U+202E, "
                "U+2066 to U+2069): they reverse what others see"
            )
        raise ProtocolError(ErrorCode.BAD_FRAME, f"a message may not contain {problem}")
    return text


def parse_count(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number from `low` to `high`; None otherwise. Long strings of
    digits are refused before int() sees them (past 4300 digits it raises)."""
    if not text.isdecimal() or not text.isascii() or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if low <= number <= high else None
