"""Raw cases at the frame level: broken UTF-8, broken framing, fragments, closes."""

from __future__ import annotations

import contextlib
import itertools
import json
import random

from bench.fuzz.config import JSON_PROTOCOL, MAX_FRAME_BYTES, STEP, Outcome
from bench.fuzz.run import FuzzRun
from tooling.rawsocket import RawWebSocket
from tooling.wsclient import BINARY, CLOSE, CONTINUATION, PING, TEXT, encode_frame

INVALID_UTF8 = [
    b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"ok \xf8\x88\x80\x80\x80",
    b'{"type":"ping","ref":"\xff"}', b"\xf4\x90\x80\x80", b"hello \xe2\x82\xa1\xa1",
]  # fmt: skip
raw_names = itertools.count(1)
RawResult = tuple[Outcome, str]


async def _upgraded(run: FuzzRun, json_mode: bool, *, named: bool = True) -> RawWebSocket | None:
    """A raw connection through the handshake and into its first room."""
    query = f"name=fz-r{next(raw_names)}&room=fz-raw" if named else "room=fz-raw"
    sock = await run.raw(query, json_mode=json_mode)
    if sock is None:
        return None
    if not named:
        entered = await sock.until(lambda t: t == "Your name:", STEP)
    elif json_mode:
        entered = await sock.until(lambda t: '"type":"subscribed"' in t, STEP)
    else:
        entered = await sock.until(lambda t: t.startswith("* you are in "), STEP)
    if not entered:
        sock.close()
        run.report.anomaly(f"raw connection {query}: never entered its room")
        return None
    return sock


async def _send_frames(
    run: FuzzRun, rng: random.Random, frames: list[bytes], detail: str, *,
    named: bool = True, answer: str | None = None, json_mode: bool | None = None,
) -> RawResult:  # fmt: skip
    """Upgrade (JSON or text, at random unless told), write `frames`, and see how the
    node ends the connection.

    With `answer`, the node must instead answer (a text frame containing it) and stay
    open; then we close with 1000 and expect its 1000 back."""
    if json_mode is None:
        json_mode = named and rng.random() < 0.5
    sock = await _upgraded(run, json_mode, named=named)
    if sock is None:
        return "upgrade failed", detail
    try:
        with contextlib.suppress(ConnectionError):  # the node may end it half way: see how
            for frame in frames:
                await sock.write(frame)
        run.report.frames += len(frames)
        if answer is None:
            return await sock.ending(STEP), detail
        if not await sock.until(lambda t: answer in t, STEP):
            return "not answered", f"{detail}; got {sock.texts[-3:]}"
        with contextlib.suppress(ConnectionError):
            await sock.send_frame(CLOSE, (1000).to_bytes(2, "big"))
        return await sock.ending(STEP), detail
    finally:
        sock.close()


async def invalid_utf8(run: FuzzRun, rng: random.Random) -> RawResult:
    payload = rng.choice(INVALID_UTF8)
    return await _send_frames(run, rng, [encode_frame(TEXT, payload)], f"payload {payload!r}")


async def invalid_utf8_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, b"ok \xe2", fin=False), encode_frame(CONTINUATION, b"\x28\xa1")]
    return await _send_frames(run, rng, frames, "a split 3-byte sequence, broken")


async def invalid_utf8_as_name(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, rng.choice(INVALID_UTF8))]
    return await _send_frames(run, rng, frames, "typed at 'Your name:'", named=False)


async def reserved_bits(run: FuzzRun, rng: random.Random) -> RawResult:
    rsv = rng.randint(1, 7)
    return await _send_frames(run, rng, [encode_frame(TEXT, b"hi", rsv=rsv)], f"rsv={rsv}")


async def reserved_opcode(run: FuzzRun, rng: random.Random) -> RawResult:
    opcode = rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    return await _send_frames(run, rng, [encode_frame(opcode, b"x")], f"opcode {opcode}")


async def long_ping(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(PING, b"p" * 126)], "126-byte ping")


async def fragmented_ping(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(PING, b"p", fin=False)], "ping, fin=0")


async def continuation_first(run: FuzzRun, rng: random.Random) -> RawResult:
    frame = encode_frame(CONTINUATION, b"orphan")
    return await _send_frames(run, rng, [frame], "continuation first")


async def text_inside_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    frames = [encode_frame(TEXT, b"one", fin=False), encode_frame(TEXT, b"two")]
    return await _send_frames(run, rng, frames, "a new text frame inside a fragmented one")


async def huge_length(run: FuzzRun, rng: random.Random) -> RawResult:
    length = rng.choice([MAX_FRAME_BYTES + 1, 1 << 31, 1 << 62])
    frame = encode_frame(TEXT, b"", length=length)
    return await _send_frames(run, rng, [frame], f"a header claiming {length} bytes")


async def fragments_over_limit(run: FuzzRun, rng: random.Random) -> RawResult:
    part = b"f" * (MAX_FRAME_BYTES // 4)
    frames = [encode_frame(TEXT if i == 0 else CONTINUATION, part, fin=False) for i in range(4)]
    frames.append(encode_frame(CONTINUATION, b"f" * (MAX_FRAME_BYTES - 4 * len(part) + 16)))
    detail = f"five fragments, {MAX_FRAME_BYTES} + 16 bytes in all"
    return await _send_frames(run, rng, frames, detail)


async def close_bad_code(run: FuzzRun, rng: random.Random) -> RawResult:
    code = rng.choice([0, 999, 1004, 1005, 1006, 1015, 1100, 2999, 5000, 65535])
    frame = encode_frame(CLOSE, code.to_bytes(2, "big"))
    return await _send_frames(run, rng, [frame], f"close code {code}")


async def close_one_byte(run: FuzzRun, rng: random.Random) -> RawResult:
    return await _send_frames(run, rng, [encode_frame(CLOSE, b"\x03")], "a 1-byte close payload")


async def unmasked(run: FuzzRun, rng: random.Random) -> RawResult:
    """RFC 6455 5.1: a server closes on an unmasked client frame, with 1002 (the node's
    frame watch does; aiohttp alone would read it as if masked). It is never run."""
    frame = encode_frame(TEXT, b'{"type":"ping","ref":"bare"}', masked=False)
    return await _send_frames(run, rng, [frame], "an unmasked client frame")


async def garbage(run: FuzzRun, rng: random.Random) -> RawResult:
    data = rng.randbytes(rng.randint(1, 300))
    return await _send_frames(run, rng, [data], f"{len(data)} random bytes, {data[:12]!r}...")


async def random_binary(run: FuzzRun, rng: random.Random) -> RawResult:
    frame = encode_frame(BINARY, rng.randbytes(rng.randint(0, 2000)))
    return await _send_frames(run, rng, [frame], "a binary frame", answer="binary")


def _asking(json_mode: bool, word: str) -> tuple[bytes, str]:
    """A frame the node answers with `word` in it (a pong's ref, or an unknown command)."""
    if json_mode:
        return json.dumps({"type": "ping", "ref": word}).encode(), f'"ref":"{word}"'
    return f"/{word}".encode(), f"/{word}"


async def ping_inside_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    json_mode = rng.random() < 0.5
    body, answer = _asking(json_mode, "fuzzfrag")
    frames = [
        encode_frame(TEXT, body[:4], fin=False),
        encode_frame(PING, b"mid"),
        encode_frame(CONTINUATION, body[4:]),
    ]
    detail = "a ping between two fragments"
    return await _send_frames(run, rng, frames, detail, answer=answer, json_mode=json_mode)


async def byte_fragments(run: FuzzRun, rng: random.Random) -> RawResult:
    json_mode = rng.random() < 0.5
    body, answer = _asking(json_mode, "fuzzbytes")
    frames = [
        encode_frame(TEXT if i == 0 else CONTINUATION, body[i : i + 1], fin=i == len(body) - 1)
        for i in range(len(body))
    ]
    detail = "a frame in 1-byte fragments"
    return await _send_frames(run, rng, frames, detail, answer=answer, json_mode=json_mode)


async def reset_after_upgrade(run: FuzzRun, rng: random.Random) -> RawResult:
    sock = await run.raw_socket()
    json_mode = rng.random() < 0.5
    query = f"name=fz-u{next(raw_names)}&room=fz-raw" if json_mode else "room=fz-raw"
    try:
        status = await sock.upgrade(query, JSON_PROTOCOL if json_mode else None, STEP)
    finally:
        sock.abort()
    return ("dropped by us" if status == 101 else f"http {status}"), "reset right after 101"


async def half_close(run: FuzzRun, rng: random.Random) -> RawResult:
    """Shut our sending side after the handshake: the node sees EOF and must end it."""
    sock = await _upgraded(run, rng.random() < 0.5)
    if sock is None:
        return "upgrade failed", ""
    try:
        sock.shut_write()
        return await sock.ending(STEP), "write side shut after the handshake"
    finally:
        sock.close()


async def close_first(run: FuzzRun, rng: random.Random) -> RawResult:
    frame = encode_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye")
    return await _send_frames(run, rng, [frame], "a close frame first")
