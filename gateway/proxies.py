"""The client's address behind a proxy (`--trusted-proxies`).

A node behind a load balancer sees the balancer as every client's peer. When the peer
is one of the trusted proxies, the client's address is taken from `X-Forwarded-For`:
the rightmost address there that is not itself a trusted proxy (each proxy appends the
address it got the request from, so everything left of that could be made up by the
client). From any other peer the header is ignored: a client cannot pick its own
address. The per-address connection limit and every log line then see real clients.

The middleware `real_client` resolves the address once per routed request: it hands
the request on with `remote` set to the client's address (so the guard and the handlers
need nothing of their own) and records it in the request's storage under
`CLIENT_ADDRESS`, where the access logger reads it. A request without one (no proxy is
trusted, or aiohttp could not parse or route it, so no middleware saw it) is logged
with its peer's address. The access logger must never ask `request.app`: aiohttp
asserts on it for a request that was not routed.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

TRUSTED = web.AppKey("trusted_proxies", tuple[Network, ...])

if TYPE_CHECKING or hasattr(web, "RequestKey"):
    CLIENT_ADDRESS = web.RequestKey("client_address", str)
else:  # aiohttp before 3.14 has no RequestKey, and takes a str key without a warning
    CLIENT_ADDRESS = "client_address"


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


def _address(text: str) -> Address | None:
    """`text` as an address (an IPv4-mapped IPv6 one as IPv4); None if it is none."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address, networks: tuple[Network, ...]) -> bool:
    return any(ip in network for network in networks)


def is_trusted(peer: str, networks: tuple[Network, ...]) -> bool:
    """Whether the peer address `peer` is one of the trusted proxies."""
    if not networks:
        return False  # the usual case, on every accept: no address to parse
    ip = _address(peer)
    return ip is not None and _trusted(ip, networks)


def client_address(peer: str | None, forwarded: str | None, networks: tuple[Network, ...]) -> str:
    """The client's address: `peer`, or from `forwarded` (an X-Forwarded-For value,
    several headers joined with commas) when `peer` is a trusted proxy."""
    peer = peer or ""
    peer_ip = _address(peer)
    if not networks or not forwarded or peer_ip is None or not _trusted(peer_ip, networks):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:
            return peer  # a hop that is no address: the header cannot be read
        if not _trusted(ip, networks):
            return hop
    return hops[0]  # every hop is a trusted proxy: the first one is the client


@web.middleware
async def real_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Behind trusted proxies, record the client's address in `request[CLIENT_ADDRESS]`
    and hand on the request with `remote` set to it."""
    networks = request.app[TRUSTED]
    if not networks:
        return await handler(request)  # the peer is the client
    forwarded = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    address = client_address(request.remote, forwarded, networks)
    request[CLIENT_ADDRESS] = address  # on the request aiohttp hands the access logger
    if address != request.remote:
        request = request.clone(remote=address)  # the clone copies the storage
    return await handler(request)
