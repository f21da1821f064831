"""The seeded generator of fuzz inputs: JSON frames and text-mode lines."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable

from bench.fuzz.config import MAX_CHARS, MAX_FRAME_BYTES, Probe

ARABIC_3, ARABIC_10, WIDE_10 = "\u0663", "\u0661\u0660", "\uff11\uff10"  # decimal digits too
# Names no node may accept: they render as another name, as nothing, or as the start of
# a system, error or direct-message line (invisible, blank, a mark on nothing, a prefix).
HOSTILE_NAMES = ("ali\u034fce", "alice\u3164", "\u3164", "\u2800", "\u0301x", "[dm] admin",
                 "! server", "* x", "\uff3bdm\uff3d x", "bob\ufe0f")  # fmt: skip


def deep(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def huge_int(digits: int) -> str:
    return "9" * digits


def random_text(rng: random.Random, longest: int = 120) -> str:
    """Random printable-ish Unicode (never a lone surrogate: those are not UTF-8)."""
    pools = [
        (0x20, 0x7E), (0xA0, 0x2FF), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF),
        (0x1F300, 0x1F6FF), (0x0, 0x1F), (0x200B, 0x200F), (0xFFF0, 0xFFFF), (0x80, 0x9F),
        (0x2028, 0x2029),
    ]  # fmt: skip
    out = []
    for _ in range(rng.randint(0, longest)):
        low, high = rng.choice(pools)
        out.append(chr(rng.randint(low, high)))
    return "".join(out)


# Characters message text may not hold: C0 (CR, VT, FF, the separators 0x1C-0x1E), ESC,
# DEL, C1 (NEL 0x85, CSI 0x9B) and the Unicode line and paragraph separators.
CONTROL_CODES = [0, 1, 7, 8, 11, 12, 13, 27, 28, 30, 127, 0x80, 0x85, 0x9B, 0x9F, 0x2028, 0x2029]

# Raw JSON text for a field value: wrong types, huge numbers, bad strings, deep nesting.
WRONG_VALUES = [
    "null", "true", "false", "0", "-1", "1.5", "1e400", "-1e400", "NaN", "Infinity",
    "-Infinity", huge_int(5000), "-" + huge_int(4000), "1" + "0" * 400 + ".5", '""', '" "',
    '"\\u0000"', '"\\ud800"', '"a\\udfffb"', json.dumps("x" * 65), json.dumps("y" * 5000),
    "[]", "{}", "[1,2,3]", '{"type":"send"}', deep(900), deep(20000), deep(5000, "object"),
    '"\\u202e\\u200b"', '"lobby\\n"', '"../../etc"',
]  # fmt: skip

# Each client frame type and a valid value (raw JSON) for each of its fields.
FRAME_FIELDS: dict[str, dict[str, str]] = {
    "send": {"room": '"lobby"', "text": '"hello"', "id": '"m1"'},
    "join": {"room": '"fz-x"', "since": "null"},
    "leave": {"room": '"fz-x"'},
    "who": {"room": '"lobby"'},
    "rooms": {},
    "history": {"room": '"lobby"', "before": "null", "limit": "10"},
    "dm": {"to": '"honest-j"', "text": '"psst"'},
    "kick": {"room": '"lobby"', "name": '"honest-j"', "seconds": "60"},
    "delete": {"room": '"lobby"', "offset": '"x-1"'},
    "ping": {},
}


def raw_object(pairs: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs.items()) + "}"


class Inputs:
    """The seeded generator of fuzz frames for both modes."""

    def __init__(self, rng: random.Random, offsets: set[str], huge_offsets: bool) -> None:
        self.rng = rng
        self.offsets = offsets  # offsets the fuzzers have seen: their epochs are real
        self.huge_offsets = huge_offsets

    def room(self) -> str:
        return self.rng.choice(["lobby", f"fz-{self.rng.randint(0, 40)}", "fz-x"])

    # JSON mode ------------------------------------------------------------------

    def json_frame(self) -> Probe:
        makers: list[tuple[Callable[[], Probe], int]] = [
            (self._valid, 12), (self._wrong_type, 30), (self._missing_field, 6),
            (self._unknown_type, 5), (self._bad_ref, 6), (self._not_an_object, 5),
            (self._not_json, 8), (self._deep, 4), (self._huge_number, 6), (self._offset, 6),
            (self._binary, 5), (self._control_text, 3), (self._at_limit, 1), (self._oversize, 1),
        ]  # fmt: skip
        make = self.rng.choices([m for m, _ in makers], [w for _, w in makers])[0]
        return make()

    def _valid(self) -> Probe:
        kind = self.rng.choice(list(FRAME_FIELDS))
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind]}
        if "room" in pairs:
            pairs["room"] = json.dumps(self.room())
        if "text" in pairs:
            pairs["text"] = json.dumps(random_text(self.rng, 200) or "x")
        if kind == "send":
            pairs["id"] = json.dumps(f"fz{self.rng.randint(0, 10**6)}")
        pairs["ref"] = json.dumps(f"v{self.rng.randint(0, 999)}")
        return Probe(raw_object(pairs), f"valid {kind}", None)

    def _wrong_type(self) -> Probe:
        kind = self.rng.choice(list(FRAME_FIELDS))
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind], "ref": '"w"'}
        key = self.rng.choice(list(pairs))
        pairs[key] = self.rng.choice(WRONG_VALUES)
        return Probe(raw_object(pairs), f"wrong {kind}.{key}", None)

    def _missing_field(self) -> Probe:
        kind = self.rng.choice(["send", "join", "leave", "who", "history", "dm", "kick", "delete"])
        pairs = {"type": json.dumps(kind), **FRAME_FIELDS[kind]}
        required = [k for k, v in pairs.items() if k != "type" and v != "null" and k != "id"]
        required = [k for k in required if not (kind == "history" and k == "limit")]
        required = [k for k in required if not (kind == "kick" and k == "seconds")]
        del pairs[self.rng.choice(required)]
        return Probe(raw_object(pairs), f"missing field of {kind}")

    def _unknown_type(self) -> Probe:
        value = self.rng.choice(
            [json.dumps(random_text(self.rng, 20)), '"SEND"', '"send "', "1", "null", "[]",
             '"__proto__"', '"constructor"', huge_int(300)]
        )  # fmt: skip
        pairs = {"room": '"lobby"', "text": '"x"'}
        if self.rng.random() < 0.8:
            pairs["type"] = value
        return Probe(raw_object(pairs), "unknown type")

    def _bad_ref(self) -> Probe:
        value = self.rng.choice(
            [json.dumps("r" * 65), json.dumps("r" * 10000), "1", "1e400", "[]", "{}", "true",
             '"\\ud800"', huge_int(5000), deep(3000)]
        )  # fmt: skip
        return Probe(raw_object({"type": '"ping"', "ref": value}), "bad ref")

    def _not_an_object(self) -> Probe:
        data = self.rng.choice(
            ["[]", "null", "1", '"send"', "true", '[{"type":"ping"}]', huge_int(200), "1e400"]
        )
        return Probe(data, "not an object")

    def _not_json(self) -> Probe:
        choices = [
            random_text(self.rng),
            '{"type":"ping"',
            '{"type":"ping"} trailing',
            "{'type':'ping'}",
            '{"type":"ping",}',
            "\ufeff" + '{"type":"ping"}',
            "",
            " ",
        ]
        data = self.rng.choice(choices)
        if data.strip().startswith(("{", "[")) or data.strip() == "":
            return Probe(data, "not JSON")
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(data), dict):  # random text that happens to be an object
                return Probe(data, "not JSON", None)
        return Probe(data, "not JSON")

    def _deep(self) -> Probe:
        depth = self.rng.choice([1000, 5000, 20000, 32000])
        shape = self.rng.choice(["bare list", "bare object", "in text", "in ref"])
        if shape == "bare list":
            data = deep(depth)
        elif shape == "bare object":
            data = deep(min(depth, 10000), "object")
        elif shape == "in text":
            data = raw_object({"type": '"send"', "room": '"lobby"', "text": deep(depth)})
        else:
            data = raw_object({"type": '"ping"', "ref": deep(depth)})
        return Probe(data, f"nested {depth} deep ({shape})")

    def _huge_number(self) -> Probe:
        number = self.rng.choice(
            ["1e400", "-1e400", huge_int(5000), huge_int(4300), "-" + huge_int(4301),
             "1" + "0" * 310, "0." + "0" * 5000 + "1", "1e-400", "NaN"]
        )  # fmt: skip
        kind = self.rng.choice(["history.limit", "type", "ref", "send.room", "join.since"])
        if kind == "history.limit":
            data = raw_object({"type": '"history"', "room": '"lobby"', "limit": number})
        elif kind == "type":
            data = raw_object({"type": number})
        elif kind == "ref":
            data = raw_object({"type": '"ping"', "ref": number})
        elif kind == "send.room":
            data = raw_object({"type": '"send"', "room": number, "text": '"x"'})
        else:
            data = raw_object({"type": '"join"', "room": '"fz-n"', "since": number})
        return Probe(data, f"huge number in {kind}")

    def offset(self) -> str:
        """A broken offset, often in an epoch the node really uses (seen in its answers)."""
        epochs = sorted({o.rpartition("-")[0] for o in self.offsets} | {"nope"})
        epoch = self.rng.choice(epochs)
        seqs = ["0", "-1", "", "1.5", ARABIC_3, WIDE_10, huge_int(30), "9" * 64, "00001", "x"]
        if self.huge_offsets:
            seqs += [huge_int(4301), huge_int(5000)]
        return f"{epoch}-{self.rng.choice(seqs)}"

    def _offset(self) -> Probe:
        offset = self.offset()
        if self.rng.random() < 0.5:
            frame = {"type": "history", "room": "lobby", "before": offset, "ref": "o"}
        else:
            frame = {"type": "join", "room": f"fz-o{self.rng.randint(0, 9)}", "since": offset}
        return Probe(json.dumps(frame), f"offset {offset[:40]}", None)

    def _binary(self) -> Probe:
        return Probe(self.rng.randbytes(self.rng.randint(0, 300)), "binary")

    def _control_text(self) -> Probe:
        text = "a" + chr(self.rng.choice(CONTROL_CODES)) + "b"
        return Probe(json.dumps({"type": "send", "room": "lobby", "text": text}), "control char")

    def _at_limit(self) -> Probe:
        """A frame of exactly the largest size accepted: refused as a message, not closed."""
        head = '{"type":"send","room":"lobby","text":"'
        return Probe(head + "z" * (MAX_FRAME_BYTES - len(head) - 2) + '"}', "frame at the limit")

    def _oversize(self) -> Probe:
        return Probe("{" + " " * MAX_FRAME_BYTES + "}", "oversize frame")

    # text mode ------------------------------------------------------------------

    def text_line(self) -> Probe:
        makers: list[tuple[Callable[[], Probe], int]] = [
            (self._chat_line, 10), (self._unknown_command, 8), (self._command, 30),
            (self._control_line, 4), (self._long_line, 3), (self._binary, 5),
            (self._blank_line, 2), (self._text_oversize, 1), (self._quit, 1),
        ]  # fmt: skip
        make = self.rng.choices([m for m, _ in makers], [w for _, w in makers])[0]
        return make()

    def _chat_line(self) -> Probe:
        return Probe(random_text(self.rng, 200) or "x", "chat line", None)

    def _unknown_command(self) -> Probe:
        return Probe(f"/zz{random_text(self.rng, 20)}", "unknown command")

    def _command(self) -> Probe:
        number = self.rng.choice(
            ["0", "101", "-1", "1.5", huge_int(50), huge_int(4301), huge_int(5000), ARABIC_10,
             WIDE_10, "1e3", "abc", "", " 5 ", "100", "0" * 5000 + "1"]
        )  # fmt: skip
        line = self.rng.choice(
            [f"/history {number}", f"/join {random_text(self.rng, 70)}", f"/join {self.room()}",
             "/join", "/join a b", f"/msg {random_text(self.rng, 40)}", '/msg "unclosed hi',
             '/msg "" hi', "/msg honest-j hello", "/msg nobody-here hi", "/who extra", "/who",
             "/rooms x", "/rooms", "/help me", "/help", "/HISTORY 3", "//" + random_text(self.rng),
             "/kick", "/kick honest-j", f"/kick honest-j {number}", '/kick "unclosed 5']
        )  # fmt: skip
        return Probe(line, f"command {line[:20]}", None)

    def _control_line(self) -> Probe:
        char = chr(self.rng.choice(CONTROL_CODES))
        return Probe(f"a{char}b", "control char")

    def _long_line(self) -> Probe:
        return Probe("w" * self.rng.randint(MAX_CHARS + 1, 3 * MAX_CHARS), "too long")

    def _blank_line(self) -> Probe:
        return Probe(self.rng.choice(["", " ", "\t", "\r\n", "\n\n"]), "blank", False)

    def _text_oversize(self) -> Probe:
        return Probe("[" * (MAX_FRAME_BYTES + 1), "oversize frame")

    def _quit(self) -> Probe:
        return Probe("/quit", "quit", False)
