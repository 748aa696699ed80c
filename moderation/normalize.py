# ruff: noqa: RUF001, RUF002, RUF003  (look-alike characters are this module's subject)
"""The text forms blocked terms are matched on. Pure: no Django import.

Three forms, each a ``Mapped``: the text plus, for every output character,
the span of the original text it came from, so a match found in a folded
form can be masked in the original.

``fold_mapped``: the light form regex rules run on. NFKC, casefold,
ignorable characters (zero-width, format, bidi controls, variation
selectors) removed, whitespace runs read as one space.

``normalize_mapped`` / ``normalize``: the skeleton. The light form, plus
combining marks stripped from Latin, Greek and Cyrillic letters ("é" reads
"e"; marks that carry meaning in other scripts, like the kana voicing mark,
stay), look-alike letters folded to Latin (Cyrillic "а", Greek "ο", small
caps), "l" read as "i" (so "1", "l", "I" and "|" are one letter), and
leetspeak folded inside words that hold a letter, across punctuation
inside the word ("h3ll0" reads "heiio", "4.s.s" reads "a.s.s", "2024"
stays).
Idempotent: ``normalize(normalize(x)) == normalize(x)``.

``match_form_mapped`` / ``match_form``: what exact and wildcard terms are
matched on. The skeleton, with punctuation and symbols other than emoji
removed ("s.h.i.t" and "sh_it" read "shit"; "is,hit" reads "ishit"),
runs of single-character words joined ("b a d" reads "bad"; "is a hit"
stays), and spaces between characters of scripts written without spaces
(Chinese, Japanese, Thai) dropped ("傻 逼" reads "傻逼"). Emoji and other
symbols count as letters, so they can be terms.

Runs of one repeated letter are kept here; the matcher compares run
lengths, so "bad" catches "baaaad" while "ass" does not catch "was".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Stands for a wildcard's "*" while a term is normalized: a private-use
# character that counts as a letter, so "f*ck" keeps its shape.
WILDCARD_MARK = "\U000f0000"

# Characters that render as nothing or only steer rendering. Every Cf
# (zero-width space and joiners, U+2060 word joiner, U+FEFF, soft hyphen,
# bidi embeddings, overrides and isolates, tag characters) is caught by its
# category; these are the invisible ones in other categories.
_IGNORABLE_EXTRA = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u17b4\u17b5"  # Khmer inherent vowels
    "\u180b\u180c\u180d\u180f"  # Mongolian variation selectors
    "\u2800"  # braille blank
)
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))
_HANGUL_VOWELS_AND_FINALS = (range(0x1160, 0x1200), range(0xD7B0, 0xD800))

# Letters that look like Latin ones, after casefolding. Uppercase-only
# look-alikes are listed by their lowercase ("н" for "Н"), since case is
# folded first. Every value is ASCII, so folding twice changes nothing.
CONFUSABLES = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "һ": "h",
    "і": "i",
    "ј": "j",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "ӏ": "i",
    "ү": "y",
    # Greek
    "α": "a",
    "β": "b",
    "γ": "y",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ω": "w",
    "ϲ": "c",
    "ϳ": "j",
    # Armenian
    "օ": "o",
    "ս": "u",
    "հ": "h",
    # Latin letters NFKD does not take apart
    "ı": "i",
    "đ": "d",
    "ħ": "h",
    "ŧ": "t",
    "ø": "o",
    "ɑ": "a",
    "ɡ": "g",
    "ɩ": "i",
    # Small capitals
    "ᴀ": "a",
    "ʙ": "b",
    "ᴄ": "c",
    "ᴅ": "d",
    "ᴇ": "e",
    "ɢ": "g",
    "ʜ": "h",
    "ɪ": "i",
    "ᴊ": "j",
    "ᴋ": "k",
    "ᴍ": "m",
    "ɴ": "n",
    "ᴏ": "o",
    "ᴘ": "p",
    "ʀ": "r",
    "ꜱ": "s",
    "ᴛ": "t",
    "ᴜ": "u",
    "ᴠ": "v",
    "ᴡ": "w",
    "ʏ": "y",
    "ᴢ": "z",
}
# "l", "1", "I" and "|" are told apart by font alone: one letter.
CONFUSABLES.update({"l": "i", "ł": "i", "ʟ": "i"})

# Read as letters only inside a word that has a real letter in it, so
# numbers ("2024", "3:0") stay numbers. A "!" ending a word stays punctuation.
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "i"}


@dataclass(frozen=True, slots=True)
class Mapped:
    """``text`` with, for each of its characters, the original span [start, end)."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The original span covering characters ``first``..``last`` (inclusive)."""
        return self.starts[first], self.ends[last]


def normalize(text: str) -> str:
    return normalize_mapped(text).text


@lru_cache(maxsize=4096)
def duplicate_key(text: str) -> str:
    """The form in which two comments are the same comment (merged on
    screens): the skeleton, without surrounding space. "233333", "２３３３３３"
    and "233333 " are one; "2333" and "233333" are not. Cached: a burst is
    the same few texts over and over."""
    return normalize(text).strip()


def match_form(text: str, *, wildcard: bool = False) -> str:
    """The match form of a term; with ``wildcard``, each "*" survives as ``WILDCARD_MARK``."""
    if wildcard:
        text = text.replace("*", WILDCARD_MARK)
    return match_form_mapped(text).text


def fold_mapped(text: str) -> Mapped:
    return _finish(_clusters(text, skeleton=False))


def normalize_mapped(text: str) -> Mapped:
    return _finish(_leet(_clusters(text, skeleton=True)))


def match_form_mapped(text: str) -> Mapped:
    return _finish(_compact(_leet(_clusters(text, skeleton=True))))


# -- Internals: lists of (char, start, end) -------------------------------------

Chars = list[tuple[str, int, int]]


def _clusters(text: str, *, skeleton: bool) -> Chars:
    """Transform ``text`` one cluster (a base and what attaches to it) at a time.

    Composition and mark stripping never cross a cluster, so each output
    character maps to its cluster's span. Whitespace runs become one space,
    and leading and trailing whitespace is dropped.
    """
    out: Chars = []
    n = len(text)
    i = 0
    while i < n:
        j = i + 1
        while j < n and _extends(text[j]):
            j += 1
        piece = _transform(text[i:j], skeleton)
        for char in piece:
            if char == " ":
                if not out:
                    continue
                last, start, _ = out[-1]
                if last == " ":
                    out[-1] = (" ", start, j)
                    continue
            out.append((char, i, j))
        i = j
    if out and out[-1][0] == " ":
        out.pop()
    return out


@lru_cache(maxsize=4096)
def _extends(char: str) -> bool:
    """Whether ``char`` belongs to the cluster before it."""
    if _ignorable(char) or unicodedata.category(char)[0] == "M":
        return True
    first = unicodedata.normalize("NFKD", char)[0]
    # Decomposes to start with a mark (halfwidth kana voicing marks, Thai
    # sara am) or with a Hangul vowel or final that NFKC composes with the
    # syllable before it.
    return unicodedata.category(first)[0] == "M" or any(ord(first) in r for r in _HANGUL_VOWELS_AND_FINALS)


@lru_cache(maxsize=4096)
def _ignorable(char: str) -> bool:
    if char in _IGNORABLE_EXTRA:
        return True
    code = ord(char)
    if code in _SKIN_TONES or any(code in r for r in _VARIATION_SELECTORS):
        return True
    category = unicodedata.category(char)
    # Format (Cf) and surrogates (Cs) always; controls (Cc) unless whitespace.
    return category in ("Cf", "Cs") or (category == "Cc" and not char.isspace())


def _latinish(char: str) -> bool:
    """Scripts whose combining marks are decoration, not spelling."""
    code = ord(char)
    return (
        code < 0x0590  # Latin, IPA, combining marks, Greek, Cyrillic, Armenian
        or 0x1D00 <= code <= 0x1DBF  # phonetic extensions
        or 0x1E00 <= code <= 0x1FFF  # Latin extended additional, Greek extended
        or 0x2C60 <= code <= 0x2C7F  # Latin extended-C
        or 0xA720 <= code <= 0xA7FF  # Latin extended-D
        or 0xAB30 <= code <= 0xAB6F  # Latin extended-E
    )


@lru_cache(maxsize=16384)
def _transform(cluster: str, skeleton: bool) -> str:
    text = "".join(c for c in cluster if not _ignorable(c))
    # One round is nearly always a fixed point; a few compatibility
    # characters need a second (NFKC after casefold), hence the loop.
    for _ in range(4):
        out = unicodedata.normalize("NFKC", text).casefold()
        if skeleton:
            decomposed = unicodedata.normalize("NFKD", out)
            if decomposed and _latinish(decomposed[0]):
                out = unicodedata.normalize("NFKC", "".join(c for c in decomposed if unicodedata.category(c)[0] != "M"))
            out = "".join(CONFUSABLES.get(c, c) for c in out)
        out = "".join(" " if c.isspace() else c for c in out if not _ignorable(c))
        if out == text:
            break
        text = out
    return text


def _is_letter(char: str) -> bool:
    return char.isalpha() or char == WILDCARD_MARK or unicodedata.category(char)[0] == "M"


def _leet(chars: Chars) -> Chars:
    """Fold leetspeak in each word (run of non-space characters) that holds a letter.

    Punctuation inside the word does not split it, so "4.s.s" reads
    "a.s.s". Trailing punctuation and "!" are left alone ("wow!").
    """
    out = list(chars)
    n = len(out)
    i = 0
    while i < n:
        if out[i][0] == " ":
            i += 1
            continue
        j = i
        while j < n and out[j][0] != " ":
            j += 1
        end = j
        while end > i and not _is_letter(out[end - 1][0]) and (out[end - 1][0] == "!" or out[end - 1][0] not in LEET):
            end -= 1
        if any(_is_letter(out[k][0]) for k in range(i, end)):
            for k in range(i, end):
                char, start, stop = out[k]
                if char in LEET:
                    out[k] = (LEET[char], start, stop)
        i = j
    return out


@lru_cache(maxsize=4096)
def _word_char(char: str) -> bool:
    """Letters, digits, marks, emoji and other pictographs, private use."""
    category = unicodedata.category(char)
    return category[0] in "LNM" or category in ("So", "Co")


def _compact(chars: Chars) -> Chars:
    """Drop punctuation inside and around words, then join runs of single-character words."""
    words: list[Chars] = []
    current: Chars = []
    for item in chars:
        if item[0] == " ":
            if current:
                words.append(current)
            current = []
        elif _word_char(item[0]):
            current.append(item)
        # Punctuation: dropped. Between two word characters it joins them
        # ("s.h.i.t"); at a word's edge it separates nothing the space
        # does not already.
    if current:
        words.append(current)

    out: Chars = []
    i = 0
    while i < len(words):
        j = i + 1
        if len(words[i]) == 1:
            while j < len(words) and len(words[j]) == 1:
                j += 1
        if out and not (spaceless(out[-1][0]) and spaceless(words[i][0][0])):
            out.append(_gap(out[-1], words[i][0]))
        if j - i >= 2:
            # "b a d": spelled out to dodge the filter, read as one word.
            for k in range(i, j):
                out.extend(words[k])
        else:
            out.extend(words[i])
            j = i + 1
        i = j
    return out


# Scripts written without spaces between words: a space between two of
# their characters separates nothing, so it is dropped ("傻 逼").
_SPACELESS = (
    range(0x0E00, 0x0F00),  # Thai, Lao
    range(0x1000, 0x10A0),  # Myanmar
    range(0x1780, 0x1800),  # Khmer
    range(0x3040, 0x3100),  # Hiragana, Katakana
    range(0x31F0, 0x3200),  # Katakana phonetic extensions
    range(0x3400, 0x4DC0),  # CJK extension A
    range(0x4E00, 0xA000),  # CJK unified ideographs
    range(0xF900, 0xFB00),  # CJK compatibility ideographs
    range(0x20000, 0x40000),  # CJK extensions B and later
)


def spaceless(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces between words."""
    code = ord(char)
    return any(code in r for r in _SPACELESS)


def _gap(before: tuple[str, int, int], after: tuple[str, int, int]) -> tuple[str, int, int]:
    """A space between two words, spanning what separates them in the original."""
    return (" ", before[2], after[1])


def _finish(chars: Chars) -> Mapped:
    return Mapped(
        text="".join(c for c, _, _ in chars),
        starts=tuple(s for _, s, _ in chars),
        ends=tuple(e for _, _, e in chars),
    )
