"""What the in-process broker keeps for the operator's console: its one node's status
and the recent moderation actions (a capped deque, lost with the process)."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from gateway.broker.base import AUDIT_KEPT, AuditEntry, NodeStatus


class LocalConsole:
    """The one node's status source and the newest AUDIT_KEPT audit entries."""

    def __init__(self) -> None:
        self.status: Callable[[], NodeStatus] | None = None
        self._audit: deque[AuditEntry] = deque(maxlen=AUDIT_KEPT)

    def nodes(self) -> list[NodeStatus]:
        """The node's status now (none before it reported one)."""
        return [] if self.status is None else [self.status()]

    def note(self, entry: AuditEntry) -> None:
        """Keep `entry` as the newest action."""
        self._audit.appendleft(entry)

    def audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` actions, newest first."""
        return list(itertools.islice(self._audit, limit))
