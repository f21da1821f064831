"""The bench (`make bench`, bench/run.py): its raw WebSocket client, its correctness check,
and a --quick run against the gateway alone, on the in-process broker and on Redis.

The bench's figures are only worth something if the load generator reads every frame
right whatever the reads look like, and if a run that lost, doubled or reordered a
message can never pass for a good one.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.backend_peer import Recording, make_app
from bench.checker import SequenceChecker, message_text, parse_tag
from bench.loadgen import enough_descriptors
from bench.params import Sizes
from bench.report import markdown, summarize
from gateway.backend_http import signed_headers
from tests.plugins.redis import REDIS_SERVER
from tooling.wsclient import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    FrameParser,
    ProtocolViolation,
    encode_frame,
    mask,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--quick",
    "--peers",
    "gateway",
    "--duration",
    "0.5",
    "--warmup",
    "0.2",
    "--s1-receivers",
    "20",
    "--s2-receivers",
    "10",
    "--s3-connections",
    "40",
    "--s4-rooms",
    "10",
    "--s5-clients",
    "30",
    "--s3-big-connections",
    "60",
    "--s5-big-clients",
    "40",
    "--s5-drain-clients",
    "30",
    "--s5-drain-seconds",
    "0.3",
    "--drain-timeout",
    "5",
]


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A frame as a server sends it: unmasked."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def test_the_parser_reassembles_a_fragmented_message_fed_one_byte_at_a_time() -> None:
    """A read may end anywhere (inside a header, inside a length, inside a payload) and a
    message may come in fragments with a ping between them: each must come out whole, once,
    in order, the ping first as it came first."""
    big = b"y" * 70_000  # a 64-bit length
    stream = (
        server_frame(TEXT, b"hello ", fin=False)
        + server_frame(PING, b"p")
        + server_frame(CONTINUATION, b"x" * 300, fin=False)  # a 16-bit length
        + server_frame(CONTINUATION, b" world")
        + server_frame(BINARY, big)
        + server_frame(TEXT, b"")
    )
    parser = FrameParser()
    got: list[tuple[int, bytes]] = []
    for i in range(len(stream)):
        got += parser.feed(stream[i : i + 1])
    assert got == [
        (PING, b"p"),
        (TEXT, b"hello " + b"x" * 300 + b" world"),
        (BINARY, big),
        (TEXT, b""),
    ]
    # the same stream in one read, and cut in two at every point of its first 40 bytes
    assert FrameParser().feed(stream) == got
    for cut in range(40):
        parser = FrameParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == got


def test_the_parser_unmasks_and_refuses_broken_framing() -> None:
    """A masked frame is unmasked; a continuation with nothing to continue is an error."""
    frame = encode_frame(TEXT, b"masked text", key=b"\x01\x02\x03\x04")
    assert frame[1] & 0x80 and frame[6:] == mask(b"masked text", b"\x01\x02\x03\x04")
    assert FrameParser().feed(frame) == [(TEXT, b"masked text")]
    with pytest.raises(ProtocolViolation):
        FrameParser().feed(server_frame(CONTINUATION, b"orphan"))
    with pytest.raises(ProtocolViolation):
        FrameParser().feed(server_frame(PING, b"", fin=False))


def test_a_tag_survives_a_json_frame() -> None:
    text = message_text(7, 42, 64)
    assert len(text) == 64
    sender, seq, sent_ns = parse_tag(json.dumps({"type": "message", "text": text}).encode()) or ()
    assert (sender, seq) == (7, 42) and sent_ns > 0


def judge(sequence: list[int], sent: int) -> Any:
    checker = SequenceChecker()
    for seq in sequence:
        checker.observe(receiver=1, sender=2, seq=seq)
    return checker.verdict({(1, 2): sent})


def test_the_check_passes_a_clean_run() -> None:
    verdict = judge([0, 1, 2, 3], sent=4)
    assert verdict.valid and verdict.ratio == 1.0 and verdict.received == 4


def test_a_duplicate_makes_the_run_invalid() -> None:
    """A message delivered twice (a resume that replays what was already live) is caught."""
    verdict = judge([0, 1, 1, 2, 3], sent=4)
    assert not verdict.valid and verdict.duplicates == 1 and verdict.lost == 0


def test_a_reordering_makes_the_run_invalid() -> None:
    """A message overtaken by a later one (two sends handled at once) is caught, even
    when the late one does arrive; and a message that never arrives is a loss."""
    verdict = judge([0, 2, 1, 3], sent=4)
    assert not verdict.valid and verdict.reordered == 1 and verdict.lost == 0
    assert verdict.duplicates == 0 and verdict.received == 4
    verdict = judge([0, 1, 3], sent=4)
    assert not verdict.valid and verdict.lost == 1
    verdict = judge([0, 1], sent=4)
    assert not verdict.valid and verdict.lost == 2 and verdict.reordered == 0


def test_a_refused_message_is_not_expected() -> None:
    """`unavailable` means the message was not accepted (docs/protocol.md, "Error
    codes"): its gap is no loss and no reordering; but a refused message that is
    delivered anyway is noticed."""
    checker = SequenceChecker()
    checker.refuse(sender=2, seq=1)
    for seq in (0, 2, 3):
        checker.observe(receiver=1, sender=2, seq=seq)
    verdict = checker.verdict({(1, 2): 4})
    assert verdict.valid and verdict.expected == 3 and verdict.received == 3
    checker.observe(receiver=1, sender=2, seq=1)
    assert checker.verdict({(1, 2): 4}).unexpected == 1


def run_bench(tmp_path: Path, *flags: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *TINY, *flags, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert out.with_suffix(".md").read_text().startswith("# chat-gateway bench")
    return dict(json.loads(out.read_text()))


def check_runs(doc: dict[str, Any], scenarios: set[str]) -> None:
    ran = {r["scenario"]: r["outcome"] for r in doc["runs"] if "skipped" not in r["outcome"]}
    assert set(ran) == scenarios
    for scenario, outcome in ran.items():
        figures = outcome["figures"]
        assert outcome["valid"], (scenario, outcome["problems"])
        assert outcome["verdict"]["lost"] == 0 and outcome["verdict"]["duplicates"] == 0
        assert outcome["verdict"]["reordered"] == 0 and outcome["verdict"]["expected"] > 0
        assert figures["delivery_ratio"] == 1.0
        assert figures["loadgen_cpu_s"] > 0
    for scenario in scenarios & {"s1", "s2", "s4"}:
        f = ran[scenario]["figures"]
        assert f["deliveries_per_s"] > 0 and f["server_cpu_us_per_delivery"] > 0
        assert 0 < f["p50_ms"] <= f["p99_ms"] < 5000
    for scenario in scenarios & {"s3", "s3big"}:
        f = ran[scenario]["figures"]
        assert f["connections_per_s"] > 0 and f["server_cpu_us_per_connection"] > 0
        assert f["rss_kib_per_connection"] is not None
    for scenario in scenarios & {"s5", "s5big", "s5drain"}:
        f = ran[scenario]["figures"]
        assert f["messages_lost"] == 0 and 0 < f["resume_all_s"] < 30
        assert f["server_cpu_us_per_resume"] > 0


def test_a_quick_bench_on_the_in_process_broker(tmp_path: Path) -> None:
    """One node, no Redis, asyncio's own loop in the load generator: S5 (which needs two
    nodes on Redis) says it was skipped."""
    doc = run_bench(tmp_path, "--broker", "memory", "--scenarios", "s1,s5", "--loop", "asyncio")
    check_runs(doc, {"s1"})
    assert doc["run"]["nodes"] == 1
    assert [r["outcome"].get("skipped") for r in doc["runs"] if r["scenario"] == "s5"] != [None]


@pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server")
def test_a_quick_bench_on_redis(tmp_path: Path) -> None:
    """Two nodes on a Redis of the bench's own, every scenario: the reconnect storm, and
    S3 and S5 at scale (S5 killed and drained), each compared with the smaller run."""
    doc = run_bench(tmp_path, "--broker", "redis")
    check_runs(doc, {"s1", "s2", "s3", "s3big", "s4", "s5", "s5big", "s5drain"})
    assert doc["run"]["nodes"] == 2
    notes = {r["scenario"]: r["outcome"]["notes"] for r in doc["runs"]}
    assert "60 connections" in notes["s3big"][0]
    assert "(killed)" in notes["s5big"][0] and "(drained over 0.3s)" in notes["s5drain"][0]
    for scenario in ("s3big", "s5big", "s5drain"):
        assert doc["summary"][scenario]["gateway"]["ratio_to_smaller"]["delivery_ratio"]
    page = (tmp_path / "bench.md").read_text()
    assert "| figure | gateway | gateway / S3 |" in page
    assert "gateway at scale: server CPU µs/connection" in page


def outcome(figures: dict[str, float]) -> dict[str, Any]:
    return {"figures": figures, "valid": True, "problems": [], "notes": []}


def test_a_scenario_at_scale_is_compared_with_the_smaller_run_of_its_repetition() -> None:
    """S3 at scale against S3 in the same repetition: the ratio of each, and whether the
    per-connection costs stayed within 10 % (flat), rose past it, or fell."""
    runs = [
        {"rep": 0, "scenario": "s3", "peer": "gateway", "outcome": outcome(
            {"server_cpu_us_per_connection": 2000.0, "rss_kib_per_connection": 20.0}
        )},
        {"rep": 0, "scenario": "s3big", "peer": "gateway", "outcome": outcome(
            {"server_cpu_us_per_connection": 2100.0, "rss_kib_per_connection": 23.0}
        )},
        {"rep": 1, "scenario": "s3", "peer": "gateway", "outcome": outcome(
            {"server_cpu_us_per_connection": 1000.0, "rss_kib_per_connection": 20.0}
        )},
    ]  # fmt: skip
    summary = summarize(runs, ["gateway"], ["s3", "s3big"])
    scaled = summary["s3big"]["gateway"]
    assert scaled["runs"] == 1 and "ratio_to_smaller" not in summary["s3"]["gateway"]
    assert scaled["ratio_to_smaller"]["server_cpu_us_per_connection"]["median"] == 1.05
    assert scaled["ratio_to_smaller"]["rss_kib_per_connection"]["median"] == 1.15
    doc = {
        "machine": {"cores": 2, "cpu_model": "x", "memory_gib": 1, "load_average_at_start":
                    [0.0], "kernel": "k", "python": "3", "redis": None, "node": None},
        "run": {"peers": ["gateway"], "pinning": "p", "repetitions": 2, "nodes": 2,
                "broker": "Redis", "seconds": 1.0, "gateway_flags": "", "event_loop": "uvloop",
                "sizes": Sizes().describe(), "notes": []},
        "summary": summary,
    }  # fmt: skip
    page = markdown(doc)
    assert "## S3 at scale: 18,000 idle connections to one node" in page
    assert "| server CPU µs/connection | 2,100 | 1.05x |" in page
    assert "server CPU µs/connection 1.05x S3: flat" in page
    assert "RSS KiB/connection 1.15x S3: NOT flat" in page


def test_the_load_generator_refuses_more_sockets_than_it_may_open() -> None:
    """A scenario larger than `ulimit -n` allows fails at once and says why (a split of
    the load generator or a smaller scenario is the way out), instead of a storm of
    EMFILE errors counted as the server's failures."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert enough_descriptors(100) is None
    if hard != resource.RLIM_INFINITY:
        problem = enough_descriptors(hard)
        assert problem is not None and f"needs {hard} sockets" in problem


async def test_the_recording_application_keeps_what_it_took_and_not_what_it_refused(
    aiohttp_client: Any,
) -> None:
    """The fault campaign's application (bench/backend_peer.py with a Recording): the
    checker believes what it kept, so a refused batch must not be kept, and a stalled
    one must be kept (the application stored it; only the gateway never heard)."""
    secret, recording = "s" * 32, Recording()
    client = await aiohttp_client(make_app(secret, recording))

    async def post(*ids: str) -> int:
        body = orjson.dumps({"events": [{"id": i, "type": "x", "ts": 0} for i in ids]})
        answer = await client.post("/events", data=body, headers=signed_headers(secret, body))
        return int(answer.status)

    assert await post("a", "b") == 200
    recording.refuse(30)
    assert await post("c") == 503
    recording.heal()
    recording.stall_for(30, 0.3)
    started = time.monotonic()
    assert await post("d") == 200
    assert time.monotonic() - started >= 0.3
    assert [event["id"] for _, event in recording.events] == ["a", "b", "d"]
    answer = await (await client.get("/received?after=1")).json()
    assert [e["event"]["id"] for e in answer["events"]] == ["b", "d"] and answer["next"] == 3
    assert await (await client.post("/events", data=b"{}")).text() == "bad signature"
