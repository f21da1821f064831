"""The client's address behind a proxy (`--trusted-proxies`).

A node behind a load balancer sees the balancer as every client's peer. When the peer
is one of the trusted proxies, the client's address is taken from `X-Forwarded-For`:
the rightmost address there that is not itself a trusted proxy (each proxy appends the
address it got the request from, so everything left of that could be made up by the
client). From any other peer the header is ignored: a client cannot pick its own
address. The per-address connection limit and every log line then see real clients.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """The comma-separated CIDRs (or single addresses) of `--trusted-proxies`;
    ValueError for one that is neither."""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an address or a CIDR") from None
    return tuple(networks)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded: str | None, networks: tuple[Network, ...]) -> str:
    """The client's address: `peer`, or from `forwarded` (an X-Forwarded-For value)
    when `peer` is a trusted proxy."""
    peer = peer or ""
    if not networks or not forwarded or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a hop that is no address: the header cannot be read
        if not _trusted(hop, networks):
            return hop
    return hops[0]  # every hop is a trusted proxy: the first one is the client


TRUSTED = web.AppKey("trusted_proxies", tuple)


@web.middleware
async def real_client(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Hand on the request with `remote` set to the client's address."""
    networks = request.app[TRUSTED]
    if networks:
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), networks)
        if address != request.remote:
            request = request.clone(remote=address)
    return await handler(request)
