"""What a danmaku's text may contain. Pure: no Django import.

Each check returns the reason text is refused, or None; the schema turns it
into a 400 naming the field.
"""

from __future__ import annotations

import unicodedata

# Explicit embeddings, overrides and isolates: they can flip how the rest of
# a line renders ("Trojan Source"), and a comment never needs them.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Line and paragraph separators would break the single-line overlay.
SEPARATORS = frozenset("\u2028\u2029")
# Characters that render as nothing; a comment made only of these (and
# whitespace) would fly across the screen as a blank.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u200b\u200c\u200d\u2060\ufeff\u00ad\u034f")
# Combining marks (non-spacing or enclosing) one character may carry. Real
# text stacks few; measured on decomposed (NFD) samples: Vietnamese 2, Thai
# 2, Devanagari with Vedic accents 2, Arabic with harakat 2, Biblical Hebrew
# with cantillation 3, polytonic Greek 3, Tibetan mantra syllables 5, and
# the tallest found, the Kalachakra monogram, 8 (tests/danmaku/test_textrules.py).
# "Zalgo" text piles dozens on one letter to draw over the rows above and
# below its own.
MAX_MARKS_PER_CHARACTER = 10
MARK_CATEGORIES = frozenset({"Mn", "Me"})
# Hard ceilings before any room setting applies; a room's own limit is lower.
ABSOLUTE_MAX_CODE_POINTS = 500
# CJK text is 3 bytes per character in UTF-8; this lets a full-length CJK
# comment through while capping what emoji-heavy text costs the wire.
BYTES_PER_CODE_POINT = 3


def text_problem(text: str) -> str | None:
    """Why ``text`` is not acceptable as a comment anywhere, or None."""
    if not any(not char.isspace() and char not in INVISIBLE for char in text):
        return "must not be empty or only whitespace"
    # Marks stacked on the last character that is not one; format
    # characters (joiners) between them do not start a new stack.
    marks = 0
    for char in text:
        if char == "\x00":
            return "must not contain NUL characters"
        if char in BIDI_CONTROLS:
            return f"must not contain bidirectional control characters (U+{ord(char):04X})"
        if char in SEPARATORS:
            return "must be a single line"
        category = unicodedata.category(char)
        if category == "Cs":
            return "must not contain lone surrogates (invalid Unicode)"
        if category == "Cc":
            return f"must not contain control characters (U+{ord(char):04X})"
        code = ord(char)
        if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            return f"must not contain noncharacters (U+{ord(char):04X})"
        if category in MARK_CATEGORIES:
            marks += 1
            if marks > MAX_MARKS_PER_CHARACTER:
                return f"must not stack more than {MAX_MARKS_PER_CHARACTER} combining marks on one character"
        elif category != "Cf":
            marks = 0
    if len(text) > ABSOLUTE_MAX_CODE_POINTS:
        return f"must be at most {ABSOLUTE_MAX_CODE_POINTS} characters"
    return None


def length_problem(text: str, max_code_points: int) -> str | None:
    """Why ``text`` is too long for a room allowing ``max_code_points``."""
    if len(text) > max_code_points:
        return f"must be at most {max_code_points} characters (got {len(text)})"
    max_bytes = max_code_points * BYTES_PER_CODE_POINT
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        return f"must be at most {max_bytes} bytes in UTF-8 (got {size})"
    return None
