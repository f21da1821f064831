"""The fuzz run's settings and the node's limits it tests against.

The limits are the gateway's own (`gateway.config.Settings` defaults) and the fuzzed
node is started with them spelled out (runner.py), so neither a changed default nor a
CHAT_* variable in the environment can make the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import head
from gateway.codecs import JSON_SUBPROTOCOL
from gateway.config import Settings

JSON_PROTOCOL = JSON_SUBPROTOCOL
_LIMITS = Settings()  # the gateway's defaults; the fuzzed node is given these (limit_flags)
MAX_FRAME_BYTES = _LIMITS.max_frame_bytes  # over it: close 1009
MAX_ROOMS = _LIMITS.max_rooms_per_connection
MAX_CHARS = _LIMITS.max_message_chars
RATE_BURST = _LIMITS.rate_burst  # messages a connection may send at once
HISTORY_BURST = _LIMITS.history_burst  # history entries a connection may ask for at once
# A request head's bounds are the gateway's constants, not settings (gateway/head.py).
MAX_REQUEST_LINE = head.MAX_REQUEST_LINE  # bytes; over it: 414
MAX_HEADER_LINE = head.MAX_HEADER_LINE  # bytes of one header line; over it: 431
MAX_HEADER_LINES = head.MAX_HEADER_LINES  # over it: 431
HONEST_ROOM = "lobby"
STEP = 10.0  # the most one network step (connect, an answer, a close) may take, in seconds
CHURN_TRIES = 5  # handshakes a churn connection tries while refused with 429
FUZZ_API_KEY = "fuzz-operator-key"  # the fuzzed node's, so that REST bodies are read
MIB = 1024 * 1024

# Close codes the protocol (or RFC 6455 for broken framing) gives a misbehaving client.
PROTOCOL_ERROR, INVALID_TEXT, POLICY, TOO_BIG = 1002, 1007, 1008, 1009
Outcome = str  # how one connection ended: "close 1008", "closed by us", "http 400", ...


def limit_flags() -> list[str]:
    """The node's flags for the limits the fuzz tests against, spelled out."""
    return [
        "--max-frame-bytes", str(MAX_FRAME_BYTES),
        "--max-rooms-per-connection", str(MAX_ROOMS),
        "--max-message-chars", str(MAX_CHARS),
        "--rate-burst", str(RATE_BURST),
        "--history-burst", str(HISTORY_BURST),
    ]  # fmt: skip


@dataclass(frozen=True)
class FuzzConfig:
    """How much to throw. Every count is a bound; `time_cap` bounds the whole fuzz phase."""

    seed: int = 1
    redis_url: str | None = None
    fuzzers: int = 6  # protocol fuzzers per mode (JSON and text), running at once
    frames_per_fuzzer: int = 800  # frames each one sends (reconnecting after a close)
    handshakes: int = 300  # connections with random query parameters / text-mode names
    raw_rounds: int = 6  # rounds of every hand-made frame-level and handshake case
    room_floods: int = 30  # JSON connections filling their 50 rooms at the same time
    joins_per_flood: int = 200  # distinct rooms each of them tries to join
    text_room_walks: int = 2  # text connections walking through distinct rooms with /join
    rooms_per_walk: int = 1000
    churn: int = 3000  # connections that each join a new room, then close or drop
    churn_parallel: int = 40
    slow_readers: int = 2  # per mode: connections that ask for a lot and never read
    # Inputs that found bugs not fixed yet (see tests/test_fuzz.py); off, the run skips them.
    huge_offsets: bool = True  # offsets in the node's own epoch with thousands of digits
    non_ascii_sessions: bool = True  # ?session= with non-ASCII characters, for a taken name
    honest_interval: float = 0.15  # seconds between two messages of an honest user
    rounds: int = 3  # the whole fuzz again on the same node: a leak grows with each round
    time_cap: float = 300.0
    settle_cap: float = 20.0  # the most the node may take to let go of everything, each time
    # Then RSS again this much later: aiohttp 3.14 re-arms the heartbeat of a WebSocket the
    # node closed when the peer's close reply comes in, which holds the connection's objects
    # for one heartbeat and a pong wait (30 + 15 s by default). 0: no second look.
    linger: float = 50.0


ENDING = {"oversize frame", "quit"}  # inputs after which the node closes the connection


@dataclass(frozen=True)
class Probe:
    """One fuzz input; `bad` is True when the protocol must refuse it, None if it may not."""

    data: str | bytes
    kind: str
    bad: bool | None = True
