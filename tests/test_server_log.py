"""Log lines a stranger can cause: sampled, and aiohttp's parse errors in one line."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError

from gateway.server_log import RequestErrorLog, SampledLog


def test_a_kind_is_written_once_per_interval_and_says_how_many_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guards against a flood of refusals flooding the log, or hiding how big it was."""
    now = [100.0]
    sampled = SampledLog(logging.getLogger("test.sampled"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.sampled"):
        for _ in range(5):
            sampled.log(logging.WARNING, "a", "refused %s", "x")
        sampled.log(logging.WARNING, "b", "other %s", "y")  # another kind has its own
        now[0] += 10.0
        sampled.log(logging.WARNING, "a", "refused %s", "z")
    assert [r.getMessage() for r in caplog.records] == [
        "refused x",
        "other y",
        "refused z (and 4 more like it in the last 10s)",
    ]


def test_only_parse_errors_leave_aiohttps_log(caplog: pytest.LogCaptureFixture) -> None:
    """Guards against a traceback for each malformed request, and against hiding the
    traceback of a real error in a handler."""
    seen: list[tuple[int, str, HttpProcessingError]] = []
    adapter = RequestErrorLog(logging.getLogger("test.server"), lambda *a: seen.append(a))
    bad = BadHttpMessage("Invalid header token: b'Host x' ?session=s3cr3t")
    with caplog.at_level(logging.DEBUG, logger="test.server"):
        adapter.exception("Error handling request from %s", "192.0.2.1", exc_info=bad)
        adapter.debug("Error handling request from %s", "192.0.2.1", exc_info=bad)
        adapter.exception("Error handling request from %s", "192.0.2.1", exc_info=ValueError())
    assert [(level, peer) for level, peer, _ in seen] == [
        (logging.ERROR, "192.0.2.1"),
        (logging.DEBUG, "192.0.2.1"),
    ]
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
    assert "s3cr3t" not in caplog.text
