"""Names in the in-process broker: who owns a name, and the direct messages sent to it.

A name is held by its skeleton (`name_skeleton`), so a look-alike of a name online is
refused; its owners are one connection (exclusive: a matching session secret takes it
over, kicking the old one) or, shared by an authenticated user's connections, many.
A direct message is stored (with events on) and delivered to the connections of its
recipient and its sender, within the recipient's budget, as on Redis (`redis/names.py`).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from gateway.broker import event_bodies as told
from gateway.broker.base import BrokerListener, NameTaken, RecipientBusy
from gateway.broker.memory_events import dm_stream
from gateway.config import Settings
from gateway.events import Direct
from gateway.names import name_key, name_skeleton
from gateway.ratelimit import KeyedBuckets


@dataclass
class NameOwners:
    """The connections that own one name, and its session secret."""

    key: str  # the name key: another key of the same skeleton is a look-alike
    display: str
    connections: set[str]
    session: str
    shared: bool


def _direct_to(event: Direct, key: str) -> Callable[[BrokerListener], None]:
    return lambda listener: listener.on_direct(event, key)


def _kick(connection: str) -> Callable[[BrokerListener], None]:
    return lambda listener: listener.on_kick(connection)


def _matches(given: str | None, session: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    return given is not None and hmac.compare_digest(given.encode(), session.encode())


class LocalNames:
    """The names online, and the budgets of direct messages of their recipients."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float],
        deliver: Callable[[Callable[[BrokerListener], None]], None],
        tell: Callable[..., None],
    ) -> None:
        self._deliver = deliver  # queues a call on the node's listener
        self._tell = tell  # stores an event, with events on
        self._names: dict[str, NameOwners] = {}  # name skeleton -> owning connections
        self._dm_budgets = KeyedBuckets(  # name key -> direct messages it may still receive
            settings.dm_recipient_rate, settings.dm_recipient_burst, clock
        )

    def owners(self, name: str) -> NameOwners | None:
        """Who owns `name` (None when it is offline, or a look-alike of it is online)."""
        owners = self._names.get(name_skeleton(name))
        return owners if owners is not None and owners.key == name_key(name) else None

    def claim(self, name: str, connection: str, session: str | None, *, shared: bool) -> str:
        """Make `connection` an owner of `name` (Broker.claim_name): its session secret."""
        key, shape = name_key(name), name_skeleton(name)
        owners = self._names.get(shape)
        if owners is None:
            owners = NameOwners(key, name, {connection}, secrets.token_urlsafe(18), shared)
            self._names[shape] = owners
            return owners.session
        if owners.key != key:
            raise NameTaken(name, owners.display)  # a look-alike is online
        if shared and owners.shared:
            owners.connections.add(connection)
            return owners.session
        if shared or owners.shared or not _matches(session, owners.session):
            raise NameTaken(name)
        displaced, owners.connections = owners.connections, {connection}
        for old in displaced:
            self._deliver(_kick(old))
        return owners.session

    def release(self, name: str, connection: str) -> None:
        """Free `name` from `connection`; the name is free once no connection owns it."""
        shape = name_skeleton(name)
        owners = self._names.get(shape)
        if owners is not None and owners.key == name_key(name):
            owners.connections.discard(connection)
            if not owners.connections:
                del self._names[shape]

    def send_direct(self, event: Direct) -> bool:
        """Deliver a direct message (Broker.send_direct); False when its recipient is
        offline, RecipientBusy when it is over its budget."""
        to_key, sender_key = name_key(event.to), name_key(event.sender)
        owners = self._names.get(name_skeleton(event.to))
        if owners is None or owners.key != to_key:  # offline, or a look-alike is online
            return False
        budget = self._dm_budgets.bucket(to_key)
        if not budget.take():
            raise RecipientBusy(event.to, budget.wait())
        self._tell(dm_stream(to_key), told.dm_event, event)
        for key in {to_key, sender_key}:
            self._deliver(_direct_to(event, key))
        return True
