"""HeadScan: the bounds of a request head, counted on bytes as they arrive (pure)."""

from __future__ import annotations

from gateway.head import HEADERS_TOO_LARGE, REQUEST_LINE_TOO_LONG, HeadBounds, HeadScan

BOUNDS = HeadBounds(max_bytes=1024, max_request_line=100, max_header_line=200, max_header_lines=5)


def feed_all(*chunks: bytes, bounds: HeadBounds = BOUNDS) -> tuple[HeadScan, str | None]:
    scan = HeadScan(bounds)
    for chunk in chunks:
        refused = scan.feed(chunk)
        if refused is not None:
            return scan, refused
    return scan, None


def test_a_head_split_anywhere_is_complete_at_its_empty_line() -> None:
    """Guards against missing the end of a head whose empty line is split between reads."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for cut in range(1, len(head)):
        scan, refused = feed_all(head[:cut], head[cut:])
        assert refused is None and scan.complete and scan.size == len(head), cut


def test_a_body_after_the_head_is_not_counted() -> None:
    """Guards against refusing a POST whose body arrives in the same read as its head."""
    scan, refused = feed_all(b"POST /api HTTP/1.1\r\nHost: x\r\n\r\n" + b"{\n}\n" * 1000)
    assert refused is None and scan.complete
    assert scan.size < 100


def test_empty_lines_before_the_request_line_do_not_end_the_head() -> None:
    """Guards against a client that sends CRLFs first and then an unbounded head."""
    scan, refused = feed_all(b"\r\n\r\n", b"\n", b"GET / HTTP/1.1\r\n", b"X-A: " + b"a" * 150)
    assert refused is None and not scan.complete
    _, refused = feed_all(b"\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: aaaaaaaaaa\r\n" * 100)
    assert refused == HEADERS_TOO_LARGE


def test_each_bound_is_named() -> None:
    """Guards against a bound that is not enforced, or enforced under the wrong name."""
    assert feed_all(b"GET /" + b"u" * 100)[1] == REQUEST_LINE_TOO_LONG
    assert feed_all(b"GET /" + b"u" * 60, b"u" * 60 + b" HTTP/1.1\r\n")[1] == REQUEST_LINE_TOO_LONG
    assert feed_all(b"GET / HTTP/1.1\r\nX: " + b"v" * 250)[1] == HEADERS_TOO_LARGE
    assert feed_all(b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * 6)[1] == HEADERS_TOO_LARGE
    five = b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * 5 + b"\r\n"
    scan, refused = feed_all(five)
    assert refused is None and scan.complete
    lines = [b"X-%d: %s\r\n" % (i, b"v" * 150) for i in range(4)]
    big = HeadBounds(max_bytes=500, max_request_line=100, max_header_line=200)
    assert feed_all(b"GET / HTTP/1.1\r\n", *lines, bounds=big)[1] == HEADERS_TOO_LARGE
