"""The rules a Settings must keep: each broken one is an InvalidSetting at start-up."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

from gateway.config import LOG_LEVELS, MIN_HEADER_BYTES, MIN_SECRET_BYTES, InvalidSetting
from gateway.proxies import parse_networks
from gateway.redis_url import CLUSTER_SCHEME, cluster_nodes

if TYPE_CHECKING:
    from gateway.config import Settings

BACKEND_URLS = ("connect_hook_url", "join_hook_url", "publish_hook_url", "events_url")
SECRET_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check(settings: Settings) -> None:
    """Raise InvalidSetting for the first rule `settings` breaks."""
    if not 0 < settings.port < 65536:
        raise InvalidSetting("port", "must be from 1 to 65535")
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, int | float) and not 0 <= value < math.inf:
            raise InvalidSetting(f.name, "must be a finite number, not negative")
    if settings.log_level.upper() not in LOG_LEVELS:
        raise InvalidSetting("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    if settings.max_message_chars < 1:
        raise InvalidSetting("max_message_chars", "must be at least 1")
    if settings.max_rooms_listed < 1:
        raise InvalidSetting("max_rooms_listed", "must be at least 1")
    if settings.max_frame_bytes < 1024:
        raise InvalidSetting("max_frame_bytes", "must be at least 1024")
    if settings.max_header_bytes < MIN_HEADER_BYTES:
        raise InvalidSetting("max_header_bytes", f"must be at least {MIN_HEADER_BYTES}")
    if not 1 <= settings.workers <= 256:
        raise InvalidSetting("workers", "must be from 1 to 256")
    if settings.redis_url and settings.redis_url.startswith(CLUSTER_SCHEME):
        try:
            cluster_nodes(settings.redis_url)
        except ValueError as exc:
            raise InvalidSetting("redis_url", str(exc)) from None
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise InvalidSetting("trusted_proxies", str(exc)) from None
    if "{" in settings.redis_prefix or "}" in settings.redis_prefix:
        raise InvalidSetting("redis_prefix", "may not hold a brace (keys carry hash tags)")
    if settings.redis_ack_replicas != "auto" and not settings.redis_ack_replicas.isdigit():
        raise InvalidSetting("redis_ack_replicas", "must be auto or a number of replicas")
    if settings.workers > 1 and not settings.redis_url:
        raise InvalidSetting(
            "workers", "above 1 needs --redis-url: the workers share the chat through Redis"
        )
    for name in ("jwt_secret", "backend_secret"):
        secret = getattr(settings, name)
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise InvalidSetting(name, f"must be at least {MIN_SECRET_BYTES} bytes ({SECRET_HINT})")
    for name in BACKEND_URLS:
        url = getattr(settings, name)
        if url is None:
            continue
        if not url.startswith(("http://", "https://")):
            raise InvalidSetting(name, f"must be an http:// or https:// URL, not {url!r}")
        if settings.backend_secret is None:
            raise InvalidSetting(
                name,
                f"needs --backend-secret: the application checks each request by it "
                f"({SECRET_HINT})",
            )
    if settings.events_backlog < 1:
        raise InvalidSetting("events_backlog", "must be at least 1")
    if not 1 <= settings.events_batch <= 10_000:
        raise InvalidSetting("events_batch", "must be from 1 to 10000")
    if settings.hook_timeout <= 0:
        raise InvalidSetting("hook_timeout", "must be more than 0 seconds")
