"""The client's address behind a proxy (`--trusted-proxies`, PROTOCOL.md section 10's
issue): X-Forwarded-For counts only from a trusted peer, for the per-address limit and
the logs; from anyone else it is ignored."""

from __future__ import annotations

import urllib.request
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import InvalidSetting, Settings
from gateway.proxies import client_address, parse_networks
from tests.conftest import JSON_PROTOCOL, JsonPeer
from tests.processes import GatewayProcess

Gateway = Callable[..., Awaitable[TestClient]]
LOCAL = parse_networks("127.0.0.1, 10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client made up 6.6.6.6
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # two trusted proxies
        ("127.0.0.1", "10.0.0.9, 10.1.2.3", "10.0.0.9"),  # only proxies: the first
        ("127.0.0.1", "203.0.113.7, not-an-address", "127.0.0.1"),  # unreadable: the peer
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # an untrusted peer: ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("::1", "203.0.113.7", "::1"),
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(
    peer: str, forwarded: str | None, client: str
) -> None:
    assert client_address(peer, forwarded, LOCAL) == client


def test_a_bad_trusted_proxy_is_refused_at_start() -> None:
    with pytest.raises(InvalidSetting, match="trusted-proxies"):
        Settings(trusted_proxies="10.0.0.0/8, nginx")


async def connect(client: TestClient, name: str, forwarded: str) -> int | JsonPeer:
    """A JSON connection as a proxy would make it for `forwarded`; the HTTP status when
    refused before the upgrade."""
    try:
        ws = await client.ws_connect(
            "/ws",
            params={"name": name},
            protocols=(JSON_PROTOCOL,),
            headers={"X-Forwarded-For": forwarded},
        )
    except Exception as refused:  # aiohttp's handshake error carries the status
        return int(getattr(refused, "status", 0))
    peer = JsonPeer(ws)
    await peer.expect("subscribed", room="lobby")
    return peer


async def test_behind_a_trusted_proxy_the_limit_counts_each_client(gateway: Gateway) -> None:
    """Guards against a per-address limit that counts the balancer (everyone refused at
    its 101st user) or that a client can dodge with a header of its own."""
    node = await gateway(max_connections_per_ip=2, trusted_proxies="127.0.0.1")
    assert isinstance(await connect(node, "a1", "203.0.113.7"), JsonPeer)
    assert isinstance(await connect(node, "a2", "203.0.113.7"), JsonPeer)
    assert await connect(node, "a3", "203.0.113.7") == 429
    assert isinstance(await connect(node, "b1", "198.51.100.4"), JsonPeer)  # another client
    # Prepending a made-up address does not make a new client.
    assert await connect(node, "a4", "198.51.100.99, 203.0.113.7") == 429


async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(gateway: Gateway) -> None:
    """Guards against a client that picks its own address (and so its own limit)."""
    node = await gateway(max_connections_per_ip=2)  # nobody trusted
    assert isinstance(await connect(node, "s1", "203.0.113.1"), JsonPeer)
    assert isinstance(await connect(node, "s2", "203.0.113.2"), JsonPeer)
    assert await connect(node, "s3", "203.0.113.3") == 429  # all three are 127.0.0.1


def test_the_access_log_names_the_client_behind_a_trusted_proxy() -> None:
    """Guards against logs that show only the balancer's address, or a client's lie."""
    for trusted, shown, hidden in (("127.0.0.1", "203.0.113.7", None),
                                   ("", "127.0.0.1", "203.0.113.7")):  # fmt: skip
        node = GatewayProcess(None, "--log-level", "INFO", "--trusted-proxies", trusted).start()
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{node.port}/healthz",
                headers={"X-Forwarded-For": "203.0.113.7"},
            )
            with urllib.request.urlopen(request, timeout=5):
                pass
            node.stop()  # every line written
            lines = [line for line in node.log().splitlines() if '"GET /healthz"' in line]
            ours = lines[-1]  # the ones before are the start-up's own polls
            assert f" {shown} " in ours, lines
            assert hidden is None or hidden not in ours
        finally:
            node.close()
