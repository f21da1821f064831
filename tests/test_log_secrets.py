"""No secret in any log, whatever a client sends, and no line a client wrote itself
(gateway/log_filter.py, the 400 of gateway/credentials.py): a real node at DEBUG, real
clients, and everything the node wrote read back."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.auth import mint
from gateway.log_filter import scrub
from tests.conftest import JSON_PROTOCOL, JsonPeer, TextPeer
from tooling.gateway import GatewayProcess
from tooling.rawsocket import http_status

SECRET = "a-jwt-secret-of-at-least-thirty-two-bytes-for-logs"
API_KEY = "an-operator-key-never-to-be-logged"
FORGED_SECRET = "another-secret-of-thirty-two-bytes-or-more-too"
TEXT_PROTOCOL = "chat.v1.text"
PAST_THE_LINE_LIMIT = 9000  # aiohttp refuses a request line or header over 8190 bytes


def pieces(token: str) -> list[str]:
    """What of a JWT must not be logged: all of it, its claims and its signature (its
    header is the same for every token, and public)."""
    _header, claims, signature = token.split(".")
    return [token, claims, signature]


async def refused_handshake(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    """The status a handshake was refused with before the upgrade."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url, **kwargs)
    return info.value.status


def raw_request(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def offer_every_way(node: GatewayProcess, token: str, forged: str) -> str:
    """Present `token`, a session secret and `forged` in every way a client can; returns
    the session secret the node handed out."""
    url = node.url
    async with aiohttp.ClientSession() as http:
        # Accepted: the credentials as subprotocols, then again with the session.
        ws = await http.ws_connect(url, protocols=(JSON_PROTOCOL, f"chat.token.{token}"))
        first = JsonPeer(ws)
        session = (await first.expect("welcome"))["session"]
        resumed = await http.ws_connect(
            url,
            protocols=(JSON_PROTOCOL, f"chat.token.{token}", f"chat.session.{session}"),
        )
        await JsonPeer(resumed).expect("welcome")
        # Accepted: in the query, as other clients may.
        queried = await http.ws_connect(
            url, params={"token": token, "session": session}, protocols=(JSON_PROTOCOL,)
        )
        await JsonPeer(queried).expect("welcome")
        # Refused 400: chat. subprotocols without a mode, credentials beside them.
        for offered in (
            ("chat.v2.json", f"chat.token.{token}"),
            ("chat.v1.JSON", f"chat.session.{session}"),
            (f"chat.token.{token}",),
        ):
            assert await refused_handshake(http, url, protocols=offered) == 400
        assert (
            await refused_handshake(
                http,
                url,
                params={"session": session},
                protocols=("chat.v1.JSON",),
                headers={"Authorization": f"Bearer {token}"},
            )
            == 400
        )
        # Refused 1008: a forged token, after the upgrade.
        bad = await http.ws_connect(url, protocols=(JSON_PROTOCOL, f"chat.token.{forged}"))
        assert await JsonPeer(bad).close_code() == 1008
        # Refused frames (logged at DEBUG) that carry the secrets.
        text = await http.ws_connect(url, protocols=(TEXT_PROTOCOL, f"chat.token.{token}"))
        peer = TextPeer(text)
        await peer.expect_line("* you are in lobby; members: ...")
        for frame in (f"/chat.token.{token}", f"/x?session={session}", f"/token={token}"):
            await peer.say(frame)
            await peer.expect_line("! unknown command /...")
        # REST with a wrong key, and the key in a query.
        base = url.replace("ws://", "http://").removesuffix("/ws")
        async with http.post(
            f"{base}/api/rooms/lobby/messages?api_key={API_KEY}",
            headers={"Authorization": f"Bearer {token}"},
            json={"from": "ops", "text": "hi"},
        ) as response:
            assert response.status == 401
        for open_ws in (ws, resumed, queried, text):
            await open_ws.close()
    # Requests aiohttp cannot parse, their start logged by aiohttp itself.
    pad = "p" * PAST_THE_LINE_LIMIT
    for data in (
        raw_request(f"/ws?session={session}&token={token}&pad={pad}"),
        raw_request("/ws", f"Sec-WebSocket-Protocol: chat.token.{token}, {pad}"),
        raw_request("/ws", f"Authorization: Bearer {token}{pad}"),
        raw_request("/ws", f"X-Pad: {pad}", f"Authorization: Bearer {token}"),
    ):
        assert await http_status("127.0.0.1", node.port, data) in (400, 414, 431)
    return str(session)


async def test_no_secret_a_client_offers_reaches_any_log() -> None:
    """Guards against bearer secrets in the log: aiohttp's WARNING printing a modeless
    subprotocol offer whole (the token in it), its ERROR quoting the start of a request
    line too long to parse (`?session=` in it), and refused frames logged as they came."""
    token = mint(SECRET, "erin", 60)
    forged = mint(FORGED_SECRET, "erin", 60)
    node = GatewayProcess(
        None, "--log-level", "DEBUG", "--jwt-secret", SECRET, "--api-key", API_KEY
    ).start()
    try:
        session = await offer_every_way(node, token, forged)
        node.stop()  # every line written
        log = node.log()
    finally:
        node.close()
    # What happened was logged...
    assert log.count("names chat. subprotocols but no mode") == 4, log
    assert log.count("refused a frame of") >= 3, log
    assert "unauthorized" in log and "no or wrong API key" in log
    # ...and no secret with it.
    for secret in (*pieces(token), pieces(forged)[2], session, SECRET, API_KEY):
        for shown in (secret, secret[:16], secret[-16:]):
            assert shown not in log, (shown, [line for line in log.splitlines() if shown in line])
    assert "chat.token.<redacted>" in log  # the refused frames, written without the token


async def test_a_line_break_in_a_refused_frame_cannot_forge_a_log_line() -> None:
    """Guards against a refused frame's message logged with %s at DEBUG: a newline in
    it started a line of the client's own."""
    node = GatewayProcess(None, "--log-level", "DEBUG").start()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(node.url, params={"name": "mallory"})
            peer = TextPeer(ws)
            await peer.expect_line("* you are in lobby; members: ...")
            # (The command word runs to the first space, so the forgery has none.)
            await peer.say("/x\n2099-01-01T00:00:00,000:INFO:gateway:FORGED\u2028FORGED2")
            await peer.expect_line("! unknown command /...")
            await ws.close()
        node.stop()
        log = node.log()
    finally:
        node.close()
    lines = [line for line in log.splitlines() if "FORGED" in line]
    assert len(lines) == 1, lines  # one record, one line...
    assert "refused a frame of" in lines[0] and "\\n2099-01-01" in lines[0], lines
    assert "\\u2028FORGED2" in lines[0], lines  # ...whatever breaks the line
    assert not [line for line in log.splitlines() if line.startswith("2099")]


@pytest.mark.parametrize(
    ("written", "logged"),
    [
        ("['chat.v2.json', 'CHAT.Token.abc.def']", "['chat.v2.json', 'CHAT.Token.<redacted>']"),
        ("b'GET /ws?name=a&session=s3cr3t HTTP/1.1'", "b'GET /ws?<redacted> HTTP/1.1'"),
        ("Authorization: Basic dXNlcjpwdw==", "Authorization: <redacted>"),
        ("{'authorization': 'Token abc'}", "{'authorization': '<redacted>'}"),
        ("Cookie: sid=abc; theme=dark", "Cookie: <redacted>"),
        ("{'Cookie': 'sid=abc, x=1'}", "{'Cookie': '<redacted>'}"),
        ('"headers": {"cookie": "sid=abc"}', '"headers": {"cookie": "<redacted>"}'),
        ("Set-Cookie: sid=abc; HttpOnly", "Set-Cookie: <redacted>"),
        ("sent bearer abc.def", "sent bearer <redacted>"),
        (
            "api_key=k1 x-auth-token=k2 room=lobby",
            "api_key=<redacted> x-auth-token=<redacted> room=lobby",
        ),
        ('{"session": "s3cr3t"}', '{"session": "<redacted>"}'),
        (
            "redis://:pw@redis:6379/0 rediss://u:pw@h",
            "redis://<redacted>@redis:6379/0 rediss://<redacted>@h",
        ),
        ("a\nb\r\x1b[2J\x85\u2028\u202ez\tend", "a\\nb\\r\\x1b[2J\\x85\\u2028\\u202ez\tend"),
        ("refused /ws from 127.0.0.1: origin 'x' not allowed", None),
    ],
)
def test_what_a_log_line_shows_of_client_text(written: str, logged: str | None) -> None:
    """The filter's rules one by one (the process tests above show it is installed)."""
    assert scrub(written) == (written if logged is None else logged)
