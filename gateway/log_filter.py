"""No secret and no forged line in any log record, whoever wrote it.

Clients put text into log records in many ways: a path, a header, a subprotocol list
(aiohttp's own warning prints it whole), a frame's error message, the start of a request
line aiohttp could not parse. Some of it is a bearer secret (a token, a session secret,
an API key), and some of it may hold a line break that would start a line of its own.

`Scrubber` is a logging filter that rewrites each record before a handler formats it:

- bearer secrets are replaced by `<redacted>`: the values of `chat.token.` and
  `chat.session.` subprotocols, query strings after a path (`/ws?session=...`: the
  access log never writes one either), `name=value` pairs whose name speaks of a secret
  (`token=`, `session=`, `api_key=`, `password=`, ...), `Authorization`, `Cookie`
  and `Bearer` values (the connect hook forwards a request's cookies: sessions), and
  the user and password of a URL (`redis://:secret@host`);
- control characters (C0 and C1, DEL, the Unicode line and paragraph separators) and the
  bidi embeddings, overrides and isolates are escaped (`\\n`, `\\x1b`, `\\u2028`), so
  one record is one line.

A traceback keeps its lines (it is many lines by nature) but is redacted the same way.
`install` puts the filter on every handler of the root logger, ours and aiohttp's
loggers, and on those loggers themselves; the node calls it once at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "<redacted>"

# The root logger's handlers get every record that propagates (ours, "gateway.*", and
# aiohttp's); a filter on a logger itself sees only the records logged to that logger,
# before any handler of its own.
LOGGERS = (
    "",
    "gateway",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "aiohttp.internal",
)

# A secret's value runs to the next separator: space, quote, comma, ampersand, ...
_VALUE = r"[^\s'\"`,;&<>()\[\]{}\\]+"
_SECRET_WORD = r"(?:token|session|secret|passw(?:or)?d|api[_-]?key|apikey|auth\w*|credential\w*)"
_SECRETS = (
    # Subprotocol credentials, in any case: chat.token.<JWT>, chat.session.<SECRET>.
    (re.compile(r"(chat\.(?:token|session)\.)" + _VALUE, re.IGNORECASE), r"\1" + REDACTED),
    # A URL's user and password: redis://:secret@host, https://user:pw@host.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@'\"]*@", re.IGNORECASE), r"\1" + REDACTED + "@"),
    # A query string after a path: /ws?session=...&token=... (all of it).
    (re.compile(r"(/[^\s?'\"]*)\?[^\s'\"]+"), r"\1?" + REDACTED),
    # An Authorization header's whole value, whatever its scheme.
    (
        re.compile(r"(\bauthorization\b['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n,}]+", re.IGNORECASE),
        r"\1" + REDACTED,
    ),
    # A Cookie (or Set-Cookie) header's whole value: every cookie may be a session.
    (
        re.compile(r"(\bcookie\b['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n}]+", re.IGNORECASE),
        r"\1" + REDACTED,
    ),
    # A Bearer (or Basic) credential anywhere.
    (re.compile(r"\b((?:bearer|basic)\s+)" + _VALUE, re.IGNORECASE), r"\1" + REDACTED),
    # name=value pairs that name a secret: token=, session=, api_key=, x-auth-token=, ...
    (
        re.compile(r"([\w.-]*" + _SECRET_WORD + r"[\w.-]*\s*=\s*)" + _VALUE, re.IGNORECASE),
        r"\1" + REDACTED,
    ),
    # The same as a quoted key: {'token': '...'}, "session": "...".
    (
        re.compile(
            r"(['\"][\w.-]*" + _SECRET_WORD + r"[\w.-]*['\"]\s*:\s*['\"])[^'\"]*", re.IGNORECASE
        ),
        r"\1" + REDACTED,
    ),
)
# Characters that could start a line, move the cursor or reorder what a viewer shows.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def redact(text: str) -> str:
    """`text` with every bearer secret it holds replaced by `<redacted>`."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _escape_one(found: re.Match[str]) -> str:
    char = found.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` on one line: control and line-breaking characters written as escapes."""
    return _UNSAFE.sub(_escape_one, text)


def scrub(text: str) -> str:
    """`text` redacted and on one line: what a log line may show of client data."""
    return escape_controls(redact(text))


class Scrubber(logging.Filter):
    """Redacts secrets and escapes control characters in every record it sees; drops
    none. The record is changed in place (its message is formatted here, once), so
    every handler after this one sees the clean record too."""

    def __init__(self) -> None:
        super().__init__()
        self._tracebacks = logging.Formatter()  # formats exc_info as the standard ones do

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: show them, scrubbed, not a crash
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _UNSAFE_BUT_NEWLINE.sub(_escape_one, redact(record.exc_text))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(names: Iterable[str] = LOGGERS) -> Scrubber:
    """Put one `Scrubber` on the loggers `names` and on each of their handlers (once:
    calling this again adds none); returns the filter."""
    loggers = [logging.getLogger(name) for name in names]
    scrubber = next(
        (f for lg in loggers for f in lg.filters if isinstance(f, Scrubber)), Scrubber()
    )
    for logger in loggers:
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, Scrubber) for f in target.filters):
                target.addFilter(scrubber)
    return scrubber
