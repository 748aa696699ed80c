"""What a comment's text may contain, alone."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from danmaku.textrules import (
    ABSOLUTE_MAX_CODE_POINTS,
    BIDI_CONTROLS,
    BYTES_PER_CODE_POINT,
    INVISIBLE,
    MAX_MARKS_PER_CHARACTER,
    SEPARATORS,
    length_problem,
    text_problem,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # ZWJ sequence, 7 code points


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param(" ", "must not be empty", id="space"),
        pytest.param(" \t\n\r ", "must not be empty", id="ascii-whitespace"),
        pytest.param("\u3000\u00a0\u2003", "must not be empty", id="unicode-whitespace"),
        pytest.param("a\x00b", "must not contain NUL", id="nul"),
        pytest.param("\x00", "must not contain NUL", id="only-nul"),
        pytest.param("a\x01b", "control characters (U+0001)", id="soh"),
        pytest.param("a\x1bb", "control characters (U+001B)", id="escape"),
        pytest.param("a\x7fb", "control characters (U+007F)", id="delete"),
        pytest.param("a\nb", "control characters (U+000A)", id="newline"),
        pytest.param("a\tb", "control characters (U+0009)", id="tab"),
        pytest.param("a\rb", "control characters (U+000D)", id="carriage-return"),
        pytest.param("a\x85b", "control characters (U+0085)", id="c1-next-line"),
        pytest.param("a\x9fb", "control characters (U+009F)", id="c1-last"),
        pytest.param("\ud800", "lone surrogates", id="lone-high-surrogate"),
        pytest.param("a\udfffb", "lone surrogates", id="lone-low-surrogate"),
        pytest.param("a\u2028b", "single line", id="line-separator"),
        pytest.param("a\u2029b", "single line", id="paragraph-separator"),
        pytest.param("\ufdd0", "noncharacters (U+FDD0)", id="nonchar-fdd0"),
        pytest.param("x\ufdefx", "noncharacters (U+FDEF)", id="nonchar-fdef"),
        pytest.param("x\ufffe", "noncharacters (U+FFFE)", id="nonchar-fffe"),
        pytest.param("x\uffff", "noncharacters (U+FFFF)", id="nonchar-ffff"),
        pytest.param("x\U0001fffe", "noncharacters (U+1FFFE)", id="nonchar-plane1"),
        pytest.param("x\U0010ffff", "noncharacters (U+10FFFF)", id="nonchar-last"),
        pytest.param(
            "a" * (ABSOLUTE_MAX_CODE_POINTS + 1), f"at most {ABSOLUTE_MAX_CODE_POINTS} characters", id="too-long"
        ),
    ],
)
def test_text_problem_refuses(text, reason):
    problem = text_problem(text)

    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize(
    "char",
    ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"],
)
def test_text_problem_refuses_bidi_embeddings_overrides_and_isolates(char):
    problem = text_problem(f"abc{char}def")

    assert problem == f"must not contain bidirectional control characters (U+{ord(char):04X})"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("hello", id="ascii"),
        pytest.param("  padded  ", id="surrounding-spaces"),
        pytest.param("\u4f60\u597d\uff0c\u4e16\u754c", id="cjk-with-fullwidth-comma"),
        pytest.param("\u3053\u3093\u306b\u3061\u306f", id="hiragana"),
        pytest.param("\U0001f602\U0001f525", id="emoji"),
        pytest.param(FAMILY, id="zwj-emoji"),
        pytest.param("\U0001f44d\U0001f3fd", id="skin-tone"),
        pytest.param("\U0001f1ef\U0001f1f5", id="flag"),
        pytest.param("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", id="tag-flag"),
        pytest.param("1\ufe0f\u20e3", id="keycap"),
        pytest.param("e\u0301", id="combining-accent"),
        pytest.param("\u0645\u0631\u062d\u0628\u0627 abc", id="arabic-mixed-with-latin"),
        pytest.param("\ufdcf\ufdf0\ufffd", id="neighbours-of-noncharacters"),
        pytest.param("a" * ABSOLUTE_MAX_CODE_POINTS, id="exactly-the-ceiling"),
    ],
)
def test_text_problem_accepts(text):
    assert text_problem(text) is None


@pytest.mark.parametrize(
    ("text", "max_code_points", "reason"),
    [
        pytest.param("a" * 100, 100, None, id="ascii-at-limit"),
        pytest.param("a" * 101, 100, "must be at most 100 characters (got 101)", id="ascii-over"),
        pytest.param("\u4e2d" * 100, 100, None, id="cjk-at-limit-is-exactly-the-byte-budget"),
        pytest.param("\u4e2d" * 101, 100, "must be at most 100 characters (got 101)", id="cjk-over"),
        pytest.param("\U0001f602" * 75, 100, None, id="emoji-at-byte-budget"),
        pytest.param("\U0001f602" * 76, 100, "must be at most 300 bytes in UTF-8 (got 304)", id="emoji-over-bytes"),
        pytest.param("\U0001f602" * 100, 100, "must be at most 300 bytes in UTF-8 (got 400)", id="emoji-within-chars"),
        pytest.param("\U0001f602" * 101, 100, "must be at most 100 characters (got 101)", id="chars-checked-first"),
        pytest.param(FAMILY, 7, "must be at most 21 bytes in UTF-8 (got 25)", id="zwj-emoji"),
        pytest.param(FAMILY, 9, None, id="zwj-emoji-fits"),
        pytest.param("", 0, None, id="empty-zero"),
        pytest.param("a", 0, "must be at most 0 characters (got 1)", id="zero-allows-nothing"),
    ],
)
def test_length_problem(text, max_code_points, reason):
    assert length_problem(text, max_code_points) == reason


def test_byte_budget_lets_a_full_length_cjk_comment_through():
    assert len("\u4e2d".encode()) == BYTES_PER_CODE_POINT
    assert length_problem("\u4e2d" * ABSOLUTE_MAX_CODE_POINTS, ABSOLUTE_MAX_CODE_POINTS) is None


# Characters the rules care about, mixed with ordinary ones so both paths run.
SPECIAL = [
    *sorted(BIDI_CONTROLS | SEPARATORS),
    "\x00",
    "\x01",
    "\x7f",
    "\x85",
    "\n",
    "\t",
    " ",
    "\u3000",
    "\ud800",
    "\udc00",
    "\ufdd0",
    "\ufffe",
    "\U0010ffff",
    "\u200b",
    "\u200d",
    "a",
    "\u4e2d",
    "\U0001f602",
]
any_text = st.one_of(
    st.text(),
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "So"])),
    st.text(st.sampled_from(SPECIAL)),
)


def is_noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or code % 0x10000 in (0xFFFE, 0xFFFF)


@settings(max_examples=400)
@given(any_text)
def test_text_problem_never_raises_and_passes_only_clean_text(text):
    problem = text_problem(text)

    if problem is not None:
        assert isinstance(problem, str)
        assert problem
        return
    assert text.strip()
    assert len(text) <= ABSOLUTE_MAX_CODE_POINTS
    for char in text:
        assert unicodedata.category(char) not in ("Cc", "Cs"), repr(char)
        assert char not in BIDI_CONTROLS, repr(char)
        assert char not in SEPARATORS, repr(char)
        assert not is_noncharacter(char), repr(char)
    # Anything accepted can be stored and sent as UTF-8.
    text.encode("utf-8")


@settings(max_examples=200)
@given(text=st.text(), max_code_points=st.integers(0, 40))
def test_length_problem_is_none_exactly_when_both_budgets_hold(text, max_code_points):
    fits = len(text) <= max_code_points and len(text.encode()) <= BYTES_PER_CODE_POINT * max_code_points

    assert (length_problem(text, max_code_points) is None) == fits


@pytest.mark.parametrize(
    "text",
    ["\u200b", "\u3164\u3164", " \u2800 ", "\ufeff\u200d", "\u115f\u1160"],
    ids=["zero-width-space", "hangul-filler", "braille-blank", "bom-and-zwj", "jamo-fillers"],
)
def test_text_that_renders_as_nothing_is_refused(text):
    assert text_problem(text) == "must not be empty or only whitespace"


def test_zero_width_joiner_inside_visible_text_is_accepted():
    assert text_problem("\U0001f469\u200d\U0001f4bb coding") is None


# -- Combining marks stacked on one character ("Zalgo") ---------------------------

STACK_REASON = f"must not stack more than {MAX_MARKS_PER_CHARACTER} combining marks on one character"
KALACHAKRA = "\u0f67\u0f90\u0fb5\u0fa8\u0fb3\u0fba\u0fbc\u0fbb\u0f83"  # ཧྐྵྨླྺྼྻྃ
# Real writing and the tallest stack each puts on one character, decomposed
# (NFD: what a client that sends decomposed text stacks), measured with
# longest_stack below. MAX_MARKS_PER_CHARACTER must clear all of them.
REAL_SCRIPTS = [
    ("vietnamese", "Tiếng Việt có dấu: người ở đâu, mỗi ngày một niềm vui, khuỷu tay, thuở ấy", 2),
    ("thai", "ภาษาไทยเป็นภาษาที่สวยงาม น้ำใจ ผู้ใหญ่ ก๋วยเตี๋ยว ปั๊มน้ำมัน", 2),
    ("hindi", "हिन्दी में लिखा वाक्य: क्षत्रिय, श्रृंगार, द्वन्द्व, ज़िन्दगी, राष्ट्र", 2),
    ("sanskrit-vedic-accents", "अ॒ग्निमी॑ळे पु॒रोहि॑तं य॒ज्ञस्य॑ दे॒वमृ॒त्विज॑म्", 2),
    ("tibetan", "བཀྲ་ཤིས་བདེ་ལེགས། ཨོཾ་མ་ཎི་པདྨེ་ཧཱུྃ། བསྒྲུབས།", 3),
    ("tibetan-mantra", "ཨོཾ་བྷྲཱུྃ་ཧྨྱཱུྃ་ཧྲཱིཿ", 5),
    ("tibetan-kalachakra-monogram", KALACHAKRA, 8),
    ("arabic-harakat", "بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ", 2),
    ("quranic", "ذَٰلِكَ ٱلۡكِتَٰبُ لَا رَيۡبَۛ فِيهِۛ هُدٗى لِّلۡمُتَّقِينَ", 2),
    ("biblical-hebrew", "בְּרֵאשִׁ֖ית בָּרָ֣א אֱלֹהִ֑ים אֵ֥ת הַשָּׁמַ֖יִם", 3),
    ("polytonic-greek", "ᾯ ᾧ ἄνθρωπος ᾄσομαι", 3),
    ("yoruba", "Ọ̀rọ̀ Yorùbá ẹ̀ṣọ́", 2),
    ("burmese", "မြန်မာဘာသာ ကျွန်ုပ် ချွေး", 2),
    ("emoji-keycap-and-zwj", "1\ufe0f\u20e3 \U0001f3f3\ufe0f\u200d\U0001f308", 2),
]


def longest_stack(text: str) -> int:
    """The most non-spacing/enclosing marks on one character, joiners skipped."""
    longest = run = 0
    for char in text:
        category = unicodedata.category(char)
        if category in ("Mn", "Me"):
            run += 1
            longest = max(longest, run)
        elif category != "Cf":
            run = 0
    return longest


@pytest.mark.parametrize("form", ["NFC", "NFD"])
@pytest.mark.parametrize(("text", "tallest"), [case[1:] for case in REAL_SCRIPTS], ids=[c[0] for c in REAL_SCRIPTS])
def test_real_scripts_stacked_marks_are_accepted(text, tallest, form):
    text = unicodedata.normalize(form, text)

    assert longest_stack(unicodedata.normalize("NFD", text)) == tallest
    assert tallest < MAX_MARKS_PER_CHARACTER
    assert text_problem(text) is None


ZALGO = "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ZALGO, id="zalgo-generator-output"),
        pytest.param("he" + "\u0301" * 40 + "llo", id="forty-acutes"),
        pytest.param("a" + "\u0301" * (MAX_MARKS_PER_CHARACTER + 1), id="one-over"),
        pytest.param("\u0301" * (MAX_MARKS_PER_CHARACTER + 1) + "a", id="leading-marks-with-no-base"),
        pytest.param("a" + "\u0301\u200d" * (MAX_MARKS_PER_CHARACTER + 1), id="joiners-do-not-split-a-stack"),
        pytest.param("a" + "\u20dd" * (MAX_MARKS_PER_CHARACTER + 1), id="enclosing-marks"),
        pytest.param(KALACHAKRA + "\u0f90" * 3, id="tibetan-stack-over"),
    ],
)
def test_text_with_a_tower_of_marks_is_refused(text):
    assert text_problem(text) == STACK_REASON


def test_marks_at_the_limit_on_every_character_are_accepted():
    text = ("a" + "\u0301" * MAX_MARKS_PER_CHARACTER) * 5

    assert text_problem(text) is None


def test_spacing_marks_do_not_stack():
    # Mc marks (Devanagari vowel signs, ...) take room beside their letter.
    assert text_problem("\u0915" + "\u093e" * (MAX_MARKS_PER_CHARACTER + 5)) is None


# What a mark may sit on: anything visible and allowed, not a mark or joiner.
stack_bases = st.characters(categories=["L", "N", "P", "S"]).filter(lambda c: c not in INVISIBLE)
stack_marks = st.characters(categories=["Mn", "Me"]).filter(lambda c: c not in INVISIBLE)
# Format characters a sender may slip between marks (joiners, word joiner).
stack_joiners = st.sampled_from(["\u200c", "\u200d", "\u2060"])


@st.composite
def clusters(draw, max_marks: int) -> str:
    """A base, up to ``max_marks`` marks on it, joiners anywhere among them."""
    marks = draw(st.lists(stack_marks, max_size=max_marks))
    joined = "".join(mark + draw(st.sampled_from(["", "", draw(stack_joiners)])) for mark in marks)
    return draw(stack_bases) + joined


@st.composite
def tower(draw) -> str:
    marks = draw(st.lists(stack_marks, min_size=MAX_MARKS_PER_CHARACTER + 1, max_size=MAX_MARKS_PER_CHARACTER + 40))
    return "".join(mark + draw(st.sampled_from(["", draw(stack_joiners)])) for mark in marks)


@settings(max_examples=500)
@given(st.lists(clusters(MAX_MARKS_PER_CHARACTER), min_size=1, max_size=20))
def test_any_stack_within_the_limit_is_accepted(parts):
    assert text_problem("".join(parts)) is None


@settings(max_examples=500)
@given(
    st.lists(clusters(MAX_MARKS_PER_CHARACTER), min_size=1, max_size=10),
    st.data(),
    tower(),
)
def test_one_tower_anywhere_is_refused(parts, data, extra):
    # Piled onto one character's own marks, or onto a bare character.
    where = data.draw(st.integers(0, len(parts) - 1))
    parts[where] += extra

    assert text_problem("".join(parts)) == STACK_REASON


@settings(max_examples=400)
@given(any_text)
def test_accepted_text_never_stacks_more_than_the_limit(text):
    if text_problem(text) is None:
        assert longest_stack(text) <= MAX_MARKS_PER_CHARACTER
