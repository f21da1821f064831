"""Names being given up by connections that are ending on this node.

A client that closes and at once connects again with the same name (a page reloaded,
`chat` restarted) would race its old connection's end: the Close is answered before
the old connection has left its rooms and released its name, so the new claim could
find the name still held and be refused `name_taken`. A connection marks its name here
as soon as it is known to be ending (the client's Close, or the TCP connection lost),
and a claim of that name on this node first waits, briefly, for those releases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.names import key_skeleton, name_skeleton

RELEASE_WAIT = 2.5  # seconds a claim waits at most (a release is bounded by Redis's timeout)


class NameReleases:
    """The names whose release by an ending connection here is still under way, by
    skeleton: a look-alike of a name is free only once the name is released."""

    def __init__(self) -> None:
        self._pending: dict[str, list[asyncio.Future[None]]] = {}

    def begin(self, name_key: str) -> Callable[[], None]:
        """A connection named `name_key` is ending; call the returned function once its
        name is released (or its release failed: the claim then finds out for itself)."""
        key = key_skeleton(name_key)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)

        def released() -> None:
            waiting = self._pending.get(key, [])
            if future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._pending[key]
            if not future.done():
                future.set_result(None)

        return released

    def under_way(self, name: str) -> bool:
        """Whether a connection here is still releasing `name` or a look-alike of it."""
        return name_skeleton(name) in self._pending

    async def settled(self, name: str) -> None:
        """Return once no connection here is still releasing `name` or a look-alike of
        it (at most RELEASE_WAIT: a claim then goes ahead and may find it taken)."""
        if not self._pending:
            return
        waiting = self._pending.get(name_skeleton(name))
        if waiting:
            await asyncio.wait(list(waiting), timeout=RELEASE_WAIT)
