# ruff: noqa: RUF001  (look-alike, full-width and invisible characters are the test cases)
"""Acceptance: blocked terms survive evasion, and whole words are not found inside innocent ones.

Matching policy (see moderation/matcher.py): exact terms in scripts written
with spaces (Latin, Vietnamese, Cyrillic...) match whole words; terms in
scripts written without spaces (Chinese, Japanese, Thai) match anywhere,
since there is no word boundary to check.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderation.matcher import Rule, TermMatcher

ENGLISH = ["ass", "shit", "fuck", "bitch", "cunt", "dick", "idiot", "loser", "kill", "whore", "slut", "moron"]
SPACELESS = ["傻逼", "操你妈", "死ね", "ควย"]
TERMS = ENGLISH + SPACELESS

# Built once: the automaton is the same for every example.
MATCHER = TermMatcher([Rule(term) for term in TERMS])

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space
    "\u00ad",  # soft hyphen
    "\u180e",  # Mongolian vowel separator
]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]
# Punctuation put between letters. Not the leet characters (@ $ ! |),
# which read as letters.
PUNCTUATION = list(".,-_*'\"~^/\\#%&+=:;?()[]·。、…")
LEET = {"a": "4@", "e": "3", "i": "1!|", "l": "1|", "o": "0", "s": "5$", "t": "7"}
LOOKALIKES = {"a": "аα", "c": "с", "e": "е", "i": "і", "o": "оο", "p": "р", "x": "х", "y": "у", "k": "к"}


def fullwidth(char: str) -> str:
    return chr(ord(char) - 0x21 + 0xFF01) if "!" <= char <= "~" else char


@st.composite
def evasions(draw) -> tuple[str, str]:
    """(term, a comment holding the term disguised)."""
    term = draw(st.sampled_from(TERMS))
    # At least one character stays a real letter: a word made only of
    # digits and symbols reads as a number ("455" is not "ass").
    keep = draw(st.integers(0, len(term) - 1))
    pieces = []
    for i, char in enumerate(term):
        rendered = []
        for _ in range(draw(st.integers(1, 3)) if draw(st.booleans()) else 1):
            way = draw(st.sampled_from(["plain", "upper", "fullwidth", "leet", "lookalike"]))
            out = char
            if way == "leet" and char in LEET and i != keep:
                # "!" ending a word is read as punctuation ("wow!").
                choices = LEET[char].replace("!", "") if i == len(term) - 1 else LEET[char]
                out = draw(st.sampled_from(choices))
            elif way == "lookalike" and char in LOOKALIKES:
                out = draw(st.sampled_from(LOOKALIKES[char]))
            elif way == "upper":
                out = char.upper()
            elif way == "fullwidth":
                out = fullwidth(draw(st.sampled_from([char, char.upper()])))
            rendered.append(out)
        pieces.append("".join(rendered))
    separators = st.lists(st.sampled_from(INVISIBLE + BIDI + PUNCTUATION), max_size=3).map("".join)
    disguised = pieces[0] + "".join(draw(separators) + piece for piece in pieces[1:])
    prefix = draw(st.sampled_from(["", "you ", "what a ", "你是", "lol, ", "\u202e"]))
    suffix = draw(st.sampled_from(["", "!", " lol", "吗", "?!", ".", "\u202c"]))
    return term, prefix + disguised + suffix


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evasions())
def test_every_evasion_of_every_term_is_caught(case):
    term, text = case
    assert term in MATCHER.match_fast(text).terms, f"{text!r} ({text.encode('unicode_escape')!r}) missed {term!r}"


@pytest.mark.parametrize(
    ("term", "text"),
    [
        # English
        pytest.param("ass", "I am in class today, the grass is green", id="en-class-grass"),
        pytest.param("ass", "The assassin passed by, a massive embarrassment", id="en-assassin"),
        pytest.param("cunt", "Scunthorpe United won at home", id="en-scunthorpe"),
        pytest.param("shit", "Shiitake and shitake mushrooms", id="en-shitake"),
        pytest.param("dick", "Dickens wrote about Moby-Dick's author? no, Melville", id="en-dickens"),
        pytest.param("kill", "She has great skills and killer... no, skillful moves", id="en-skills"),
        pytest.param("slut", "A sluttish... I mean, a slutty? No: a sluice gate", id="en-sluice"),
        pytest.param("cum", "A cucumber, a document, cumulative totals", id="en-cucumber"),
        pytest.param("tit", "The title of the petition, constitution", id="en-title"),
        pytest.param("hell", "Hello there, shellfish and Michelle", id="en-hello"),
        pytest.param("moron", "The Mormon oxymoron", id="en-oxymoron"),
        # Chinese: a Latin term inside a Latin word in a Chinese sentence;
        # a Chinese term whose characters appear in the sentence, each in
        # another word ("傻笑" grin, "逼近" approach), but never together.
        pytest.param("ass", "我今天有class，要上课", id="zh-class"),
        pytest.param("cunt", "你好Scunthorpe的朋友", id="zh-scunthorpe"),
        pytest.param("傻逼", "他傻笑着逼近我", id="zh-characters-in-other-words"),
        pytest.param("操你妈", "操场上你妈妈在等你", id="zh-characters-apart"),
        # Thai: "ควาย" (buffalo) holds the letters of "ควย" with a vowel between.
        pytest.param("ควย", "ฉันเห็นควายในนา", id="th-buffalo"),
        pytest.param("ass", "ไปเรียน class กัน", id="th-class"),
        pytest.param("ass", "ไปเรียนclassกัน", id="th-class-no-spaces"),
        # Vietnamese: English terms inside Vietnamese syllables, after accents fold.
        pytest.param("hit", "Tôi thích ăn thịt bò", id="vi-thit"),
        pytest.param("hoe", "Dạo này tôi vẫn khoẻ, còn bạn?", id="vi-khoe"),
        pytest.param("hang", "Tháng này trời đẹp", id="vi-thang"),
        pytest.param("ass", "Lớp học class tiếng Anh", id="vi-class"),
    ],
)
def test_a_blocked_word_inside_another_word_is_not_found(term, text):
    assert TermMatcher([Rule(term)]).match_fast(text).terms == ()


@pytest.mark.parametrize(
    ("term", "text"),
    [
        # No word boundaries to check in Chinese or Thai: a term matches
        # inside any longer word. Pick multi-character terms, and prefer a
        # room-scoped or shadow trial for short ones.
        pytest.param("鸡巴", "小鸡巴不得快点长大", id="zh-across-words"),
        pytest.param("หี", "เปิดหีบสมบัติ", id="th-inside-a-word"),
        # Accents are folded away for Latin scripts, so a Vietnamese syllable
        # spelled like a term is that term ("cụm", cluster, reads "cum").
        pytest.param("cum", "một cụm hoa", id="vi-same-letters"),
    ],
)
def test_known_limits_of_the_policy(term, text):
    assert TermMatcher([Rule(term)]).match_fast(text).terms == (term,)
