"""Channel messages that go straight to the listener, decoded (kinds.Kind):
presence, deletes, direct messages, removals and disconnects. Room
messages (offsets to keep in order) and kicks (names to forget) are the broker's."""

from __future__ import annotations

import orjson

from gateway.broker.base import BrokerListener
from gateway.broker.redis.keys import Keys
from gateway.broker.redis.kinds import Kind
from gateway.events import Deleted, Direct, PresenceChange


def deliver_event(kind: Kind, body: bytes, channel: str, keys: Keys, to: BrokerListener) -> None:
    """Decode one channel message of `kind` and hand it to `to`; ValueError or
    KeyError for a malformed one, nothing for a kind it does not know."""
    if kind is Kind.DISCONNECT:
        to.on_disconnect(keys.user_of_channel(channel))
        return
    if kind not in (Kind.PRESENCE, Kind.DELETED, Kind.DIRECT, Kind.REMOVED):
        return
    fields = orjson.loads(body)
    if kind is Kind.PRESENCE:
        to.on_room_event(PresenceChange(fields["room"], fields["event"], fields["name"]))
    elif kind is Kind.DELETED:
        to.on_room_event(Deleted(fields["room"], fields["offset"], fields["by"]))
    elif kind is Kind.DIRECT:
        direct = Direct(
            fields["from"], fields["to"], fields["text"], fields["ts"], fields["origin"]
        )
        to.on_direct(direct, keys.user_of_channel(channel))
    else:
        to.on_removed(fields["name"], fields["room"], fields["by"], fields["until"])
