"""chat-gateway: flags and environment -> Settings -> a running node."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run one gateway node until SIGINT or SIGTERM."""
    settings = Settings.from_sources(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("gateway")
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"chat-gateway: {exc}", file=sys.stderr)
        return 2
    broker = "redis " + settings.redis_url if settings.redis_url else "in-process broker"
    log.info("node %s on http://%s:%d (%s)", settings.node_id, settings.host, settings.port, broker)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
