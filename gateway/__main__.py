"""chat-gateway: flags and environment -> Settings -> a running node.

`chat-gateway token NAME` instead prints a token for NAME (see `token_main`).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from yarl import URL

from gateway.access import parse_patterns
from gateway.access_log import AccessLogger
from gateway.app import create_app
from gateway.auth import mint
from gateway.broker.base import Broker
from gateway.config import Settings
from gateway.errors import ProtocolError
from gateway.log_filter import install as install_log_filter
from gateway.node import NODE
from gateway.redis_url import CLUSTER_SCHEME, cluster_seeds_shown
from gateway.serving import run
from gateway.workers import listen, listen_error, supervise, worker_index

DEFAULT_TOKEN_TTL = 24 * 3600.0
LISTEN_BACKLOG = 1024  # connections the kernel queues for the node once it listens


def describe(settings: Settings, broker: Broker | None = None) -> str:
    """The node's first log line, once it listens: where, its broker (a Redis URL
    without its password), whether auth is on, and, when `broker` is not ready yet, why
    ("not ready: Redis unreachable")."""
    shown = "in-process broker"
    if settings.redis_url and settings.redis_url.startswith(CLUSTER_SCHEME):
        shown = "redis cluster " + cluster_seeds_shown(settings.redis_url)
    elif settings.redis_url:
        shown = "redis " + str(URL(settings.redis_url).with_password(None))
    auth = describe_auth(settings)
    line = f"node {settings.node_id} on http://{settings.host}:{settings.port} ({shown}; {auth})"
    if broker is not None and not broker.is_ready():
        line += f"; not ready: {broker.unready_reason() or 'starting'}"
    return line


def describe_auth(settings: Settings) -> str:
    """Who decides the names, in the start-up line's words."""
    if settings.connect_hook_url is not None and settings.jwt_secret is not None:
        return "auth on: the connect hook names each connection (told a token's claims)"
    if settings.connect_hook_url is not None:
        return "auth on: the connect hook names each connection"
    if settings.jwt_secret is not None:
        return "auth on (JWT)"
    return "auth off: names are first come, first served"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (a dependency, but not on Windows),
    else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one gateway node until SIGINT or SIGTERM (or run the `token` subcommand)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"]:
        return token_main(args[1:])
    settings = Settings.from_sources(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_filter()  # no secret, no forged line: whatever a client sends
    log = logging.getLogger("gateway")
    worker = worker_index()
    if worker is not None:
        settings = replace(settings, node_id=f"{settings.node_id}-w{worker}")
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"chat-gateway: {exc}", file=sys.stderr)
        return 2
    supervisor = worker is None and settings.workers > 1
    try:
        # Bound, not listening yet: the node listens once it has started (see below).
        sock = listen(settings.host, settings.port, reuse_port=settings.workers > 1, backlog=None)
    except OSError as exc:  # a busy port, an unknown host, no permission
        return _cannot_listen(settings, exc)
    if supervisor:
        log.info("%d workers on http://%s:%d", settings.workers, settings.host, settings.port)
        with sock:  # held (not listening) until the workers listen beside it
            return supervise(args, settings.workers)

    try:
        run(
            app,
            settings,
            sock,
            loop=new_event_loop(),
            backlog=LISTEN_BACKLOG,
            on_listening=lambda: log.info("%s", describe(settings, app[NODE].broker)),
            shutdown_timeout=10.0,
            access_log_class=AccessLogger,
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Bound, but another process bound the port too and listened on it first.
        return _cannot_listen(settings, exc)
    return 0


def _cannot_listen(settings: Settings, exc: OSError) -> int:
    print(f"chat-gateway: cannot listen on {settings.host}:{settings.port}: {listen_error(exc)}",
          file=sys.stderr)  # fmt: skip
    return 2


def token_main(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """`chat-gateway token NAME [--ttl SECONDS] [--rooms P,...] [--moderates P,...]`:
    print a token for NAME.

    It is signed with the secret the nodes use (`--jwt-secret` or CHAT_JWT_SECRET).
    """
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="chat-gateway token",
        description="Print an HS256 token whose sub is NAME, for a gateway run with "
        "--jwt-secret. Give it to the client: chat --token, the page's token field, "
        "or ?token= in the /ws URL.",
    )
    parser.add_argument("name", metavar="NAME", help="the name the token proves")
    parser.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL,
        help=f"seconds the token is valid (default: {DEFAULT_TOKEN_TTL:.0f})",
    )
    parser.add_argument(
        "--rooms",
        metavar="PATTERNS",
        help="the only rooms the user may enter, comma-separated: names, or prefixes "
        "ending in '*' ('lobby,team-*'; default: every room)",
    )
    parser.add_argument(
        "--moderates",
        metavar="PATTERNS",
        help="rooms the user moderates, in the same form (default: none)",
    )
    parser.add_argument(
        "--jwt-secret",
        default=environ.get("CHAT_JWT_SECRET") or None,
        help="the nodes' secret [CHAT_JWT_SECRET]",
    )
    args = parser.parse_args(argv)
    if not args.jwt_secret:
        parser.error("no secret: pass --jwt-secret or set CHAT_JWT_SECRET")
    if not 0 < args.ttl < 10 * 365 * 24 * 3600:
        parser.error("--ttl must be more than 0 and less than ten years")
    try:
        Settings(jwt_secret=args.jwt_secret)  # the nodes' own check of the secret
        rooms = parse_patterns(args.rooms) if args.rooms is not None else None
        moderates = parse_patterns(args.moderates) if args.moderates is not None else None
        token = mint(args.jwt_secret, args.name, args.ttl, rooms=rooms, moderates=moderates)
    except (ValueError, ProtocolError) as exc:
        parser.error(str(exc))
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
