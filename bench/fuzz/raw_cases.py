"""Every hand-made raw case, with the endings the protocol allows for it."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from bench.fuzz.config import INVALID_TEXT, PROTOCOL_ERROR, TOO_BIG, Outcome
from bench.fuzz.raw_frames import (
    RawResult,
    byte_fragments,
    close_bad_code,
    close_first,
    close_one_byte,
    continuation_first,
    fragmented_ping,
    fragments_over_limit,
    garbage,
    half_close,
    huge_length,
    invalid_utf8,
    invalid_utf8_as_name,
    invalid_utf8_fragments,
    long_ping,
    ping_inside_fragments,
    random_binary,
    reserved_bits,
    reserved_opcode,
    reset_after_upgrade,
    text_inside_fragments,
    unmasked,
)
from bench.fuzz.raw_http import (
    bad_version,
    colonless_header,
    connect_and_leave,
    drop_before_answer,
    garbage_request,
    huge_header,
    long_request_line,
    many_headers,
    modeless_offer,
    nested_body,
    no_key,
    partial_request,
)
from bench.fuzz.run import FuzzRun

BROKEN_FRAMING = {f"close {PROTOCOL_ERROR}"}
# Random bytes may make any broken frame, or a frame still waiting for the rest of itself.
ANY_REFUSAL = {*BROKEN_FRAMING, f"close {INVALID_TEXT}", f"close {TOO_BIG}", "no answer"}
RawCase = Callable[[FuzzRun, random.Random], Awaitable[RawResult]]
RAW_CASES: list[tuple[str, RawCase, set[Outcome]]] = [
    ("invalid UTF-8", invalid_utf8, {f"close {INVALID_TEXT}"}),
    ("invalid UTF-8 across fragments", invalid_utf8_fragments, {f"close {INVALID_TEXT}"}),
    ("invalid UTF-8 as a name", invalid_utf8_as_name, {f"close {INVALID_TEXT}"}),
    ("reserved bits", reserved_bits, BROKEN_FRAMING),
    ("reserved opcode", reserved_opcode, BROKEN_FRAMING),
    ("ping over 125 bytes", long_ping, BROKEN_FRAMING),
    ("fragmented ping", fragmented_ping, BROKEN_FRAMING),
    ("continuation first", continuation_first, BROKEN_FRAMING),
    ("text inside fragments", text_inside_fragments, BROKEN_FRAMING),
    ("huge length", huge_length, {f"close {TOO_BIG}"}),
    ("fragments over the limit", fragments_over_limit, {f"close {TOO_BIG}"}),
    # aiohttp takes 1006 in a close frame (RFC 6455 7.4.1 says it must not be sent): 1000.
    ("close with a bad code", close_bad_code, {*BROKEN_FRAMING, "close 1000"}),
    ("close with one byte", close_one_byte, BROKEN_FRAMING),
    ("unmasked frame", unmasked, BROKEN_FRAMING),
    ("random bytes", garbage, ANY_REFUSAL),
    ("binary frame", random_binary, {"close 1000"}),
    ("ping inside fragments", ping_inside_fragments, {"close 1000"}),
    ("1-byte fragments", byte_fragments, {"close 1000"}),
    ("connect and leave", connect_and_leave, {"dropped by us"}),
    ("partial handshake", partial_request, {"dropped by us"}),
    ("reset before the answer", drop_before_answer, {"dropped by us"}),
    ("version 8", bad_version, {"http 400", "http 426", "http 101"}),  # aiohttp takes 8
    ("no key", no_key, {"http 400"}),
    ("a chat. offer without a mode", modeless_offer, {"http 400"}),
    ("random request", garbage_request, {"http 400", "eof"}),
    ("huge header", huge_header, {"http 431"}),
    ("header without a colon", colonless_header, {"http 400"}),
    ("request line too long", long_request_line, {"http 414"}),
    ("too many headers", many_headers, {"http 431"}),
    ("deeply nested REST body", nested_body, {"http 400"}),
    ("reset after the upgrade", reset_after_upgrade, {"dropped by us"}),
    ("half close", half_close, {"close 1000", "eof"}),
    ("close first", close_first, {"close 1000"}),
]
