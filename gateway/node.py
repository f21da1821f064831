"""A node: the parts one gateway process is made of, built from its settings."""

from __future__ import annotations

import itertools
import secrets
import time

from aiohttp import web

from gateway.backend_http import BackendHttp
from gateway.broker.base import Broker, NodeStatus
from gateway.budgets import Budgets
from gateway.codecs import JSON_SUBPROTOCOL, Codec
from gateway.codecs.json import JsonCodec
from gateway.codecs.text import TextCodec
from gateway.config import Settings
from gateway.feed import Feed
from gateway.hooks import Hooks
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.moderation import Moderation
from gateway.node_status import node_status
from gateway.presence import Presence
from gateway.ratelimit import KeyedBuckets
from gateway.releases import NameReleases
from gateway.room_activity import RoomActivity
from gateway.room_directory import RoomDirectory
from gateway.wire import Corker


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


class Node:
    """Settings, broker, hub, presence, budgets and metrics of one gateway process."""

    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.started = int(time.time() * 1000)  # epoch ms, shown by the console
        self.metrics = Metrics()
        self.budgets = Budgets(settings, self.metrics)
        self.corker = Corker()  # one write per connection per loop iteration
        self.metrics.probe_rtt.set_function(lambda: _or_nan(broker.probe_rtt))
        self.metrics.watch(broker)
        self.room_directory = RoomDirectory(
            broker, settings.rooms_refresh, settings.max_rooms_listed
        )
        self.room_activity = RoomActivity()  # messages per room, sampled for the console
        self.presence = Presence(broker, settings.grace_period, self.room_directory.note)
        self.hub = Hub(broker, self.metrics, self.presence)
        self.releases = NameReleases()  # names that ending connections here still hold
        self.metrics.rooms.set_function(self.hub.room_count)
        self.metrics.send_queue_bytes.set_function(self.hub.unsent_bytes)
        # REST reads but the API key's, per client address (gateway/http.py).
        self.api_reads = KeyedBuckets(settings.api_read_rate, settings.api_read_burst)
        self.moderation = Moderation(broker, self.room_directory, self.metrics, settings.node_id)
        self.json_codec: Codec = JsonCodec()
        self.text_codec: Codec = TextCodec()
        # One client of the application's backend, shared by the hooks and the events.
        self.backend: BackendHttp | None = (
            BackendHttp(settings.backend_secret, settings.hook_timeout)
            if settings.backend_secret is not None
            else None
        )
        self.hooks = Hooks(settings, self.backend, self.metrics)
        # With --events-url: this node's share of posting the cluster's events.
        self.feed: Feed | None = None
        if self.backend is not None and settings.events_url and broker.events is not None:
            self.feed = Feed.create(
                broker.events,
                settings.events_url,
                self.backend,
                settings.events_batch,
                self.metrics.events,
                settings.presence_timeout,
                broker.live_nodes,
            )
        self._refs = itertools.count(1)
        # A token per process: a node restarted with the same id makes new refs.
        self._ref_prefix = f"{settings.node_id}/{secrets.token_hex(3)}"

    def codec_for(self, subprotocol: str | None) -> Codec:
        """JSON mode when the client offered its subprotocol, text mode otherwise."""
        return self.json_codec if subprotocol == JSON_SUBPROTOCOL else self.text_codec

    def next_ref(self) -> str:
        """A connection ref unique in the cluster: node id and a counter."""
        return f"{self._ref_prefix}/{next(self._refs)}"

    def status(self) -> NodeStatus:
        """This node's status now, as the console shows it (gateway/node_status.py)."""
        connections = len(self.hub.sessions())
        return node_status(self.settings, self.broker, self.metrics, self.started, connections)

    async def start(self) -> None:
        """Connect the broker and start receiving its events (and reporting this
        node's status, on Redis with each heartbeat); start the events feed."""
        self.broker.report(self.status)
        await self.broker.start(self.hub)
        if self.feed is not None:
            await self.feed.start()

    async def stop(self) -> None:
        """Stop the events feed (its leases given up), presence timers, removals under
        way and the broker."""
        if self.feed is not None:
            await self.feed.stop()
        await self.hub.close()
        await self.presence.close()
        await self.broker.close()
        if self.backend is not None:
            await self.backend.close()


NODE = web.AppKey("node", Node)  # the app's node, for every request handler
