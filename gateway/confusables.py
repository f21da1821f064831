"""Look-alike and invisible characters: UTS #39 skeletons and Default_Ignorable code points.

Two strings that look the same have the same skeleton (Unicode Technical Standard #39,
section 4): decompose (NFD), drop the Default_Ignorable code points, replace each
character by its prototype from the Unicode confusables data, decompose again. The data
is `gateway/unicode/confusables.txt`, copied unchanged from the Unicode Consortium
(terms: `gateway/unicode/LICENSE`); it is read once, when this module is imported, into a
read-only table.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

# Default_Ignorable_Code_Point, from DerivedCoreProperties.txt (Unicode 17.0): characters
# that render as nothing, or not at all, when a font has no glyph for them.
DEFAULT_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x200B, 0x200F),  # zero width space, joiners, direction marks
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, isolates, deprecated formats
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero width no-break space
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol beam and phrase controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors 17 to 256, reserved
)

# Characters that are not Default_Ignorable but still show as blank space.
BLANK_RENDERING = frozenset(
    {
        "\u2800",  # braille pattern blank
        "\U0001d159",  # musical symbol null notehead
        "\U00016fe4",  # Khitan small script filler
        "\u115f",  # the Hangul fillers (also Default_Ignorable; named here for the reader)
        "\u1160",
        "\u3164",
        "\uffa0",
    }
)


DEFAULT_IGNORABLE = frozenset(
    chr(point) for low, high in DEFAULT_IGNORABLE_RANGES for point in range(low, high + 1)
)


def is_default_ignorable(char: str) -> bool:
    """Whether the one character `char` is a Default_Ignorable code point."""
    return char in DEFAULT_IGNORABLE


def _load_prototypes() -> Mapping[str, str]:
    """The confusables table: each source character -> its prototype string."""
    text = resources.files("gateway.unicode").joinpath("confusables.txt").read_text("utf-8")
    table: dict[str, str] = {}
    for line in text.splitlines():
        data = line.split("#", 1)[0].strip().lstrip("\ufeff")
        if not data:
            continue
        source, target, _kind = (field.strip() for field in data.split(";"))
        table[chr(int(source, 16))] = "".join(chr(int(p, 16)) for p in target.split())
    return MappingProxyType(table)


PROTOTYPES: Mapping[str, str] = _load_prototypes()


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of `text`: equal for strings that look alike."""
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(
        PROTOTYPES.get(char, char) for char in decomposed if char not in DEFAULT_IGNORABLE
    )
    return unicodedata.normalize("NFD", mapped)
