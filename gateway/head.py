"""The bounds of a request head, checked on the bytes as they arrive, before aiohttp
parses them (gateway/admission.py feeds each connection's first head through a
`HeadScan`).

A head is the request line and the header lines up to the first empty line. Empty
lines before the request line are skipped, as HTTP/1.1 servers do (RFC 9112, 2.2),
and are not counted. A line may end in CRLF or in a bare LF: the scan looks for the LF.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REQUEST_LINE = 8192  # bytes of "GET /ws?token=... HTTP/1.1" a client may send
MAX_HEADER_LINE = 8192  # bytes of one header line (aiohttp's own bound is 8190)
MAX_HEADER_LINES = 100  # header lines in one head (a browser sends about 15)

REQUEST_LINE_TOO_LONG = "request_line_too_long"
HEADERS_TOO_LARGE = "headers_too_large"


@dataclass(frozen=True, slots=True)
class HeadBounds:
    """What one request head may take."""

    max_bytes: int
    max_request_line: int = MAX_REQUEST_LINE
    max_header_line: int = MAX_HEADER_LINE
    max_header_lines: int = MAX_HEADER_LINES


class HeadScan:
    """Follows one request head as its bytes arrive; `feed` says which bound it broke.

    Only what is needed is kept: the byte and line counts, the length of the line
    still arriving, and the head's last two bytes (so that an empty line split between
    two reads is found).
    """

    __slots__ = ("_bounds", "_last", "_line", "_line_ended", "_lines", "complete", "size")

    def __init__(self, bounds: HeadBounds) -> None:
        self._bounds = bounds
        self.size = 0  # bytes of the head so far, from the request line's first byte
        self._lines = 0  # line ends (LF) seen in the head
        self._line_ended = False  # the request line is complete
        self._line = 0  # bytes of the line still arriving
        self._last = b""
        self.complete = False  # the empty line that ends the head has arrived

    def feed(self, data: bytes) -> str | None:
        """Count `data`, the next bytes the client sent; the bound it breaks
        (`REQUEST_LINE_TOO_LONG` or `HEADERS_TOO_LARGE`), or None. Bytes after the
        head (a body, the next request) are not the head's: once the head is
        complete, `feed` counts nothing."""
        if self.complete:
            return None
        if not self.size:
            data = data.lstrip(b"\r\n")
            if not data:
                return None
        window = self._last + data
        end = _end_of_head(window)
        head = data if end < 0 else data[: end - len(self._last)]
        breaks = head.count(b"\n")
        bounds = self._bounds
        if self._line + len(head) > min(bounds.max_request_line, bounds.max_header_line):
            # Some line may be too long: measure each (a short head, the usual one, need not).
            lines = head.split(b"\n")
            lengths = [self._line + len(lines[0]), *map(len, lines[1:])]
            if not self._line_ended:
                if lengths[0] > bounds.max_request_line:
                    return REQUEST_LINE_TOO_LONG
                self._line_ended = breaks > 0
                lengths = lengths[1:] if self._line_ended else []
            if lengths and max(lengths) > bounds.max_header_line:
                return HEADERS_TOO_LARGE
        self._line_ended = self._line_ended or breaks > 0
        self._line = len(head) - head.rfind(b"\n") - 1 if breaks else self._line + len(head)
        self.size += len(head)
        self._lines += breaks
        self.complete = end >= 0
        self._last = (self._last + head)[-2:]
        header_lines = self._lines - 1 - (1 if self.complete else 0)
        if self.size > self._bounds.max_bytes or header_lines > self._bounds.max_header_lines:
            return HEADERS_TOO_LARGE
        return None


def _end_of_head(window: bytes) -> int:
    """The index just past the empty line that ends a head in `window`, or -1."""
    crlf, lf = window.find(b"\n\r\n"), window.find(b"\n\n")
    if crlf < 0:
        return lf + 2 if lf >= 0 else -1
    return crlf + 3 if lf < 0 else min(crlf + 3, lf + 2)
