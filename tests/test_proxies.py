"""The client's address behind a proxy (`--trusted-proxies`, gateway/proxies.py):
X-Forwarded-For counts only from a trusted peer, for the per-address limit, the
handlers' log lines and the access log; from anyone else it is ignored. A request
aiohttp cannot parse or route is logged with its peer's address, without an error."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.access_log import AccessLogger
from gateway.config import InvalidSetting, Settings
from gateway.proxies import client_address, parse_networks
from tests.conftest import JSON_PROTOCOL, JsonPeer
from tests.plugins.deploy import nginx_or_skip
from tooling.cluster import Cluster
from tooling.gateway import GatewayProcess
from tooling.ports import free_port
from tooling.rawsocket import http_status

Gateway = Callable[..., Awaitable[TestClient]]
LOCAL = parse_networks("127.0.0.1, 10.0.0.0/8")
# The proxy's logic does not depend on the broker: the in-process one is enough.
memory_only = pytest.mark.parametrize("broker_kind", ["memory"], indirect=True)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client made up 6.6.6.6
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # two trusted proxies
        ("127.0.0.1", "10.0.0.9, 10.1.2.3", "10.0.0.9"),  # only proxies: the first
        ("127.0.0.1", "203.0.113.7, not-an-address", "127.0.0.1"),  # unreadable: the peer
        ("127.0.0.1", "203.0.113.7:4711", "127.0.0.1"),  # a port: unreadable too
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),  # an IPv4-mapped peer
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # an untrusted peer: ignored
        ("::1", "203.0.113.7", "::1"),
        (None, "203.0.113.7", ""),  # no peer address (a closed transport)
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(
    peer: str | None, forwarded: str | None, client: str
) -> None:
    assert client_address(peer, forwarded, LOCAL) == client


def test_nobody_trusted_means_the_peer() -> None:
    assert client_address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"


def test_a_bad_trusted_proxy_is_refused_at_start() -> None:
    with pytest.raises(InvalidSetting, match="trusted-proxies"):
        Settings(trusted_proxies="10.0.0.0/8, nginx")


class Clients:
    """JSON connections, each with an X-Forwarded-For of its own, held open until the
    test ends (a connection nobody refers to any more is closed, and frees its slot)."""

    def __init__(self, client: TestClient | aiohttp.ClientSession, url: str = "/ws") -> None:
        self.client = client
        self.url = url
        self.open: list[JsonPeer] = []

    async def connect(self, name: str, forwarded: str | Sequence[str] = ()) -> int:
        """Connect as `name` with `forwarded` (one header per item of a list): 101 once
        in the room, else the HTTP status that refused it before the upgrade."""
        values = [forwarded] if isinstance(forwarded, str) else forwarded
        try:
            ws = await self.client.ws_connect(
                self.url,
                params={"name": name},
                protocols=(JSON_PROTOCOL,),
                headers=[("X-Forwarded-For", value) for value in values],
            )
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        peer = JsonPeer(ws)
        self.open.append(peer)
        await peer.expect("subscribed", room="lobby")
        return 101


@memory_only
async def test_behind_a_trusted_proxy_the_limit_counts_each_client(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a per-address limit that counts the balancer (everyone refused at
    its 101st user) or that a client can dodge with a header of its own."""
    node = Clients(await gateway(max_connections_per_ip=2, trusted_proxies="127.0.0.1"))
    assert await node.connect("a1", "203.0.113.7") == 101
    assert await node.connect("a2", "203.0.113.7") == 101
    with caplog.at_level(logging.WARNING, logger="gateway.guard"):
        assert await node.connect("a3", "203.0.113.7") == 429
    assert "refused /ws from 203.0.113.7" in caplog.text  # the handlers see the client
    assert await node.connect("b1", "198.51.100.4") == 101  # another client
    # Prepending a made-up address does not make a new client, in one header or two.
    assert await node.connect("a4", "198.51.100.99, 203.0.113.7") == 429
    assert await node.connect("a5", ["198.51.100.99", "203.0.113.7"]) == 429


@memory_only
async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(gateway: Gateway) -> None:
    """Guards against a client that picks its own address (and so its own limit)."""
    node = Clients(await gateway(max_connections_per_ip=2, trusted_proxies="10.0.0.0/8"))
    assert await node.connect("s1", "203.0.113.1") == 101
    assert await node.connect("s2", "203.0.113.2") == 101
    assert await node.connect("s3", "203.0.113.3") == 429  # all three are 127.0.0.1


def from_address(address: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from `address` (any of 127.0.0.0/8 is this
    machine's loopback), as another client machine's would."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def test_make_cluster_counts_each_client_behind_nginx_and_no_header_of_theirs() -> None:
    """Guards against the shipped balancer setup (deploy/nginx.conf, and make cluster's
    --trusted-proxies 127.0.0.1) counting nginx instead of its clients, and against an
    nginx that passes a client's own X-Forwarded-For on: a client on 127.0.0.1, an
    address the nodes trust, could then name any address (and so dodge the limit)."""
    nginx_or_skip()
    local = Cluster(
        free_port(), nodes=1, quiet=True, gateway_args=["--max-connections-per-ip", "2"]
    )
    url = f"{local.http_url}/ws"
    try:
        await asyncio.to_thread(local.start)
        async with from_address("127.0.0.2") as two, from_address("127.0.0.3") as three:
            client, other = Clients(two, url), Clients(three, url)
            assert await client.connect("t1") == 101
            assert await client.connect("t2") == 101
            assert await client.connect("t3") == 429
            assert await other.connect("h1") == 101  # another client
            async with from_address("127.0.0.1") as near:  # nginx's own address
                local_user = Clients(near, url)
                assert await local_user.connect("n1", "198.51.100.1") == 101
                assert await local_user.connect("n2", "198.51.100.2") == 101
                assert await local_user.connect("n3", "198.51.100.3") == 429
    finally:
        await asyncio.to_thread(local.stop)


def access_lines(node: GatewayProcess) -> list[str]:
    """The node's access log lines (gateway/access_log.py), once it has stopped."""
    node.stop()  # every line written
    return [line for line in node.log().splitlines() if " aiohttp.access: " in line]


def test_the_access_log_names_the_client_behind_a_trusted_proxy() -> None:
    """Guards against logs that show only the balancer's address, or a client's lie."""
    for trusted, shown, hidden in (("127.0.0.1", "203.0.113.7", None),
                                   ("", "127.0.0.1", "203.0.113.7")):  # fmt: skip
        node = GatewayProcess(None, "--log-level", "INFO", "--trusted-proxies", trusted).start()
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{node.port}/healthz?mine",
                headers={"X-Forwarded-For": "203.0.113.7"},
            )
            with urllib.request.urlopen(request, timeout=5):
                pass
            lines = [line for line in access_lines(node) if '"GET /healthz"' in line]
            ours = lines[-1]  # the ones before are the start-up's own polls
            assert f": {shown} " in ours, lines
            assert hidden is None or hidden not in ours
        finally:
            node.close()


def test_the_access_log_is_skipped_when_its_lines_would_not_be_written() -> None:
    """Guards against aiohttp timing each request and building its line for nothing:
    at WARNING and above the logger tells aiohttp it is off; at INFO it is on."""
    logger = logging.getLogger("tests.access_log")
    try:
        logger.setLevel(logging.WARNING)
        assert not AccessLogger(logger, "").enabled
        logger.setLevel(logging.INFO)
        assert AccessLogger(logger, "").enabled
    finally:
        logger.setLevel(logging.NOTSET)


# Requests aiohttp cannot parse: answered 400 (or 431) before any routing or middleware.
MALFORMED = {
    "garbage": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not HTTP\r\n\r\n",
    "bad header": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"X-Forwarded-For: 203.0.113.7\r\nno colon here\r\n\r\n",
    "long header": b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.7\r\n"
    b"X-Big: " + b"h" * 8500 + b"\r\n\r\n",
    "bad version": b"GET /healthz HTTP/9.x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n",
}


async def test_a_malformed_request_behind_a_trusted_proxy_is_logged_without_an_error() -> None:
    """Guards against an access logger that asks `request.app` (or anything else only a
    routed request has): aiohttp's request for broken HTTP has no route, asking raised
    AssertionError, and every malformed request logged an unhandled exception (the
    fuzz run found it). aiohttp's own traceback for the broken HTTP is the client's
    doing (bench/fuzz/node.py tells them apart, as the fuzz test does)."""
    node = GatewayProcess(None, "--log-level", "INFO", "--trusted-proxies", "127.0.0.1")
    try:
        node.start()
        statuses = {
            name: await http_status("127.0.0.1", node.port, data)
            for name, data in MALFORMED.items()
        }
        assert set(statuses.values()) <= {400, 431}, statuses
        lines = access_lines(node)
        assert node.failures() == [], node.failures()[0]
        assert "Unhandled exception" not in node.log(), node.log()
        # The node's gate answers a head too large (431) before aiohttp parses it: no
        # access line, but its own line, with the peer.
        assert statuses["long header"] == 431, statuses
        assert "refused a connection from 127.0.0.1: headers_too_large" in node.log()
        refused = [line for line in lines if '" 400 ' in line]
        assert len(refused) == len(MALFORMED) - 1, lines
        # Nothing was parsed, so nothing was believed: each is logged with its peer.
        assert all(": 127.0.0.1 " in line for line in refused), refused
    finally:
        node.close()
