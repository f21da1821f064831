"""A bounded fuzz run against a live gateway node (issue 6, hardening).

Starts a real `python -m gateway` (tooling/gateway.py), keeps two honest users chatting
on it (one JSON, one text), and meanwhile throws at it, from one seeded generator:
random bytes as binary frames, random and broken text frames, invalid UTF-8 written at
the frame level, JSON nested tens of thousands deep, huge numbers, wrong types for every
field of every frame type, unknown types, bad refs, oversize frames, broken WebSocket
framing, thousands of joins to distinct rooms, thousands of short connections, slow
readers and handshakes dropped half way. Then it closes everything, waits (bounded) for
the node to let go of it all, and prints the figures.

    .venv/bin/python -m bench.fuzz                       # the in-process broker
    .venv/bin/python -m bench.fuzz --redis-url redis://127.0.0.1:6390/0 --seed 7

Exits 1 when the node crashed, /healthz failed, an honest message was lost, a connection
ended in a way the protocol does not have (1011, a drop without a close frame, ...), or
rooms or connections were left behind. tests/test_fuzz.py runs a smaller `run_fuzz`.

The modules, by concern: config (the run's settings, the node's limits from
`gateway.config.Settings`), inputs (the seeded fuzz frames), raw_frames, raw_http and
raw_cases (the hand-made cases, written with tooling/rawsocket.py), connections (one
fuzzing connection), run (one run: watching the node, opening connections), scenarios
(what each fuzzer does, and the phases of a round), honest (the honest users), node (the
process under fuzz), runner (the whole run) and report (the figures and their table).
"""

from __future__ import annotations

from bench.fuzz.config import MAX_CHARS, MAX_FRAME_BYTES, MAX_ROOMS, MIB, FuzzConfig
from bench.fuzz.node import FuzzedNode
from bench.fuzz.report import FuzzReport, table
from bench.fuzz.runner import run_fuzz

__all__ = [
    "MAX_CHARS",
    "MAX_FRAME_BYTES",
    "MAX_ROOMS",
    "MIB",
    "FuzzConfig",
    "FuzzReport",
    "FuzzedNode",
    "run_fuzz",
    "table",
]
