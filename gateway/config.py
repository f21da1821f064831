"""Settings: one frozen dataclass, filled from defaults, then env, then flags."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SECRETS = frozenset(
    {"jwt_secret", "api_key", "backend_secret"}
)  # an empty one is a mistake, never "off"
MIN_HEADER_BYTES = 1024  # a browser's head with a token in the URL needs more than this
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HMAC-SHA256 key at least as long as the hash


class InvalidSetting(ValueError):
    """A setting out of its range: `name` is the field, `problem` what is wrong with it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"--{name.replace('_', '-')} {problem}")
        self.name = name
        self.problem = problem


def _default_node_id() -> str:
    return f"node-{secrets.token_hex(3)}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a node can be told. Each field is a flag and a CHAT_* variable."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8080, metadata={"help": "port to listen on"})
    redis_url: str | None = field(
        default=None,
        metadata={
            "help": "Redis URL (redis://host:port/db, or redis+cluster://host:port,... for "
            "a Redis Cluster); unset: the in-process broker"
        },
    )
    node_id: str = field(
        default_factory=_default_node_id,
        metadata={"help": "this node's name, shown in welcome (default: random)"},
    )
    redis_prefix: str = field(
        default="chat:", metadata={"help": "prefix of every Redis key and channel"}
    )
    presence_timeout: float = field(
        default=15.0,
        metadata={"help": "seconds before a dead node's members are removed (Redis only)"},
    )
    probe_interval: float = field(
        default=2.0,
        metadata={"help": "seconds between readiness probes through the node's own channel"},
    )
    room_ttl: float = field(
        default=7 * 24 * 3600.0,
        metadata={"help": "seconds an idle room's history is kept in Redis"},
    )
    max_message_chars: int = field(
        default=4000, metadata={"help": "longest message text, in characters"}
    )
    max_frame_bytes: int = field(
        default=64 * 1024, metadata={"help": "largest frame accepted; over it: close 1009"}
    )
    rate_per_second: float = field(
        default=10.0,
        metadata={
            "help": "sends and DMs per second per user (all of its connections on this "
            "node together); 0 turns it off"
        },
    )
    rate_burst: int = field(default=20, metadata={"help": "burst of the per-user rate"})
    rate_strikes: int = field(
        default=20,
        metadata={"help": "rate-limited messages in a row before the connection is closed 1008"},
    )
    history_rate: float = field(
        default=200.0,
        metadata={
            "help": "history messages per second per connection (a history request costs "
            "the limit it asks for); over it: rate_limited; 0 turns it off"
        },
    )
    history_burst: int = field(
        default=1000, metadata={"help": "burst of the per-connection history rate, in messages"}
    )
    api_read_rate: float = field(
        default=5.0,
        metadata={
            "help": "REST reads (GET /api/rooms...) per second per client address, but for "
            "the API key's; over it: 429; 0 turns it off"
        },
    )
    api_read_burst: int = field(
        default=20, metadata={"help": "burst of the per-address REST read rate"}
    )
    rooms_refresh: float = field(
        default=2.0,
        metadata={
            "help": "seconds a node answers rooms from the list it last read from the "
            "broker (its own users' joins and leaves apply at once); 0: read it every time"
        },
    )
    max_rooms_listed: int = field(
        default=100,
        metadata={"help": "rooms one rooms answer lists (the busiest); total counts them all"},
    )
    dm_recipient_rate: float = field(
        default=5.0,
        metadata={
            "help": "direct messages per second one name may receive, from everyone "
            "together, on every node; over it the senders get rate_limited; 0 turns it off"
        },
    )
    dm_recipient_burst: int = field(
        default=20, metadata={"help": "burst of the per-recipient DM rate"}
    )
    join_rate: float = field(
        default=1.0,
        metadata={
            "help": "announced room joins per second per connection (over it: rate_limited); "
            "0 turns it off"
        },
    )
    join_burst: int = field(default=60, metadata={"help": "burst of the per-connection join rate"})
    join_rate_per_ip: float = field(
        default=10.0,
        metadata={
            "help": "announced room joins per second per client address, all its "
            "connections together (over it: rate_limited); 0 turns it off"
        },
    )
    join_burst_per_ip: int = field(
        default=300, metadata={"help": "burst of the per-address join rate"}
    )
    max_rooms_per_connection: int = field(
        default=50, metadata={"help": "rooms one JSON connection may be in"}
    )
    redis_ack_replicas: str = field(
        default="auto",
        metadata={
            "help": "replicas a message must reach before its ack (WAIT): a number, or auto "
            "(1 when the primary has a replica, else 0)"
        },
    )
    redis_ack_timeout: float = field(
        default=0.5,
        metadata={"help": "seconds a message waits for its replicas; short of them: unavailable"},
    )
    history_size: int = field(default=1000, metadata={"help": "newest messages kept per room"})
    replay_limit: int = field(
        default=100,
        metadata={"help": "messages sent on a resume that cannot be recovered"},
    )
    grace_period: float = field(
        default=3.0,
        metadata={"help": "seconds a name stays present after its last connection left"},
    )
    send_queue_limit: int = field(
        default=1024 * 1024,
        metadata={
            "help": "unsent bytes per connection (a reader too slow); over it: cut off, 1008"
        },
    )
    drain_seconds: float = field(
        default=10.0,
        metadata={
            "help": "seconds a node stopping on SIGTERM spreads its 1001 closes over "
            "(it refuses new connections meanwhile)"
        },
    )
    idempotency_ttl: float = field(
        default=600.0, metadata={"help": "seconds a message id is remembered"}
    )
    heartbeat: float = field(
        default=30.0, metadata={"help": "seconds between WebSocket pings; 0 turns them off"}
    )
    api_key: str | None = field(
        default=None,
        metadata={"help": "key for POST /api/rooms/{room}/messages; unset: endpoint off"},
    )
    jwt_secret: str | None = field(
        default=None,
        metadata={
            "help": "HS256 secret (at least 32 bytes): every connection then needs a JWT "
            "whose sub is its name; unset: no auth"
        },
    )
    jwt_leeway: float = field(
        default=30.0,
        metadata={"help": "seconds of clock skew allowed on a token's exp, nbf and iat"},
    )
    backend_secret: str | None = field(
        default=None,
        metadata={
            "help": "the secret every hook and event request is signed with (HMAC-SHA256, "
            "at least 32 bytes); needed by every hook and events URL"
        },
    )
    connect_hook_url: str | None = field(
        default=None,
        metadata={
            "help": "URL the application decides each connection at (its name and claims; "
            "cookies included); unset: off"
        },
    )
    join_hook_url: str | None = field(
        default=None,
        metadata={"help": "URL the application decides each room entry at; unset: off"},
    )
    publish_hook_url: str | None = field(
        default=None,
        metadata={
            "help": "URL the application decides (or rewrites) each message sent at; unset: off"
        },
    )
    hook_timeout: float = field(
        default=2.0,
        metadata={"help": "seconds a hook may take; then the action is refused as unavailable"},
    )
    events_url: str | None = field(
        default=None,
        metadata={
            "help": "URL the cluster POSTs its events to, in signed batches, at least once "
            "each; unset: off"
        },
    )
    events_backlog: int = field(
        default=100_000,
        metadata={
            "help": "events kept per stream (a room's, or a name's direct messages) while the "
            "application does not confirm them; beyond it the oldest are dropped"
        },
    )
    events_batch: int = field(
        default=500, metadata={"help": "events in one POST to --events-url, at most"}
    )
    allowed_origins: str = field(
        default="",
        metadata={
            "help": "comma-separated Origins browsers may open /ws from (403 otherwise); "
            "empty: no check"
        },
    )
    max_connections: int = field(
        default=10000,
        metadata={
            "help": "open WebSocket connections on this node; over it: 503 (unfinished HTTP "
            "requests count too); 0: unlimited"
        },
    )
    max_connections_per_ip: int = field(
        default=100,
        metadata={
            "help": "open WebSocket connections per client address, and HTTP connections "
            "from a peer that is no trusted proxy; over it: 429; 0: unlimited"
        },
    )
    trusted_proxies: str = field(
        default="",
        metadata={"help": "comma-separated proxy addresses or CIDRs; their X-Forwarded-For counts"},
    )
    header_timeout: float = field(
        default=10.0,
        metadata={
            "help": "seconds a connection has to send a complete request head; then 408 and "
            "closed (also the idle time a keep-alive connection is kept); 0: off"
        },
    )
    max_header_bytes: int = field(
        default=32 * 1024,
        metadata={"help": "bytes a request head (request line and headers) may take; over it: 431"},
    )
    name_timeout: float = field(
        default=30.0,
        metadata={"help": "seconds a text-mode connection has to give a name; then 1008; 0: off"},
    )
    workers: int = field(
        default=1,
        metadata={
            "help": "processes serving this port (SO_REUSEPORT), each a node of its own; "
            "above 1 needs --redis-url"
        },
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING, ERROR"})

    @classmethod
    def from_sources(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from flags over CHAT_* environment variables over defaults."""
        from gateway.flags import settings_from_sources  # it reads this class's fields

        return settings_from_sources(argv, env)

    def __post_init__(self) -> None:
        from gateway.setting_rules import check  # it reads this class's fields

        check(self)

    @property
    def ack_replicas(self) -> int:
        """`--redis-ack-replicas` as a number; -1 for auto."""
        return -1 if self.redis_ack_replicas == "auto" else int(self.redis_ack_replicas)

    @property
    def auth(self) -> bool:
        """True when each connection's name is proven, by a token (`--jwt-secret`) or by
        the application's connect hook: a name is then shared by its connections."""
        return self.jwt_secret is not None or self.connect_hook_url is not None
