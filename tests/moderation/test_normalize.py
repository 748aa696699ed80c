# ruff: noqa: RUF001  (look-alike and full-width characters are the test cases)
"""The normalizer alone: the skeleton, the light form, the match form, the offset map."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.normalize import fold_mapped, match_form, match_form_mapped, normalize, normalize_mapped


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ＢＡＤ ｗｏｒｄ", "bad word", id="fullwidth"),
        pytest.param("𝐛𝐚𝐝 ⓑⓐⓓ", "bad bad", id="math-and-circled-letters"),
        pytest.param("BaD", "bad", id="casefold"),
        pytest.param("STRASSE Straße", "strasse strasse", id="casefold-sharp-s"),
        pytest.param("b\u200ba\u200cd\u200d", "bad", id="zero-width-space-and-joiners"),
        pytest.param("\ufeffb\u2060a\u00add", "bad", id="bom-word-joiner-soft-hyphen"),
        pytest.param("\u202ebad\u202c \u2066bad\u2069", "bad bad", id="bidi-override-and-isolate"),
        pytest.param("b\u0430d", "bad", id="cyrillic-a"),
        pytest.param("\u0455\u0435\u0445 \u0440\u043e\u0440", "sex pop", id="cyrillic-dze-ie-ha-er-o"),
        pytest.param("\u03bf\u03ba \u03bd\u03b1", "ok va", id="greek-omicron-kappa-nu-alpha"),
        pytest.param("ʙᴀᴅ", "bad", id="small-capitals"),
        pytest.param("b4d h4t3 5h!t", "bad hate shit", id="leet-digits-and-symbols"),
        pytest.param("a$$ @ss", "ass ass", id="leet-dollar-at"),
        pytest.param("2024 3:0 $5", "2024 3:0 $5", id="numbers-stay-numbers"),
        pytest.param("wow! ok!!", "wow! ok!!", id="exclamation-ending-a-word-stays"),
        pytest.param("KILL ki11 ki|| kiII", "kiii kiii kiii kiii", id="l-1-i-pipe-are-one-letter"),
        pytest.param("café cafe\u0301 ÇA", "cafe cafe ca", id="latin-accents-stripped"),
        pytest.param("ё й", "e и", id="cyrillic-diacritics-stripped"),
        pytest.param("が ｶﾞ", "が ガ", id="kana-voicing-kept-and-composed"),
        pytest.param("ㄱㅏ", "가", id="hangul-jamo-composed"),
        pytest.param("  a\u3000\u00a0\tb  ", "a b", id="whitespace-collapsed-and-trimmed"),
        pytest.param("👍🏽\ufe0f", "👍", id="skin-tone-and-variation-selector"),
        pytest.param("傻逼", "傻逼", id="cjk-unchanged"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("b a d", "bad", id="spelled-out"),
        pytest.param("you b a d guy", "you bad guy", id="spelled-out-inside-a-sentence"),
        pytest.param("is a hit", "is a hit", id="single-letter-word-alone-stays"),
        pytest.param("s.h.i.t sh_it sh-it", "shit shit shit", id="punctuation-inside-words"),
        pytest.param("hello, world!", "heiio worid", id="punctuation-at-word-edges"),
        pytest.param("傻 逼 你是傻 逼", "傻逼你是傻逼", id="spaces-between-cjk"),
        pytest.param("🖕 you", "🖕 you", id="emoji-are-letters"),
        pytest.param("...", "", id="only-punctuation"),
    ],
)
def test_match_form(text, expected):
    assert match_form(text) == expected


def test_match_form_keeps_wildcards_as_letters():
    assert match_form("F*CK", wildcard=True).split("\U000f0000") == ["f", "ck"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ＱＱ 12345", "qq 12345", id="width-and-case"),
        pytest.param("q\u200bq", "qq", id="zero-width"),
        pytest.param("h3ll0 b\u0430d", "h3ll0 b\u0430d", id="no-leet-no-lookalikes"),
    ],
)
def test_fold(text, expected):
    assert fold_mapped(text).text == expected


@pytest.mark.parametrize(
    ("text", "first", "last", "span"),
    [
        pytest.param("xb\u200bady", 1, 3, (1, 5), id="zero-width-inside"),
        pytest.param("ｘbad", 1, 3, (1, 4), id="after-fullwidth"),
        pytest.param("cafe\u0301!", 3, 3, (3, 5), id="combining-mark-belongs-to-its-letter"),
        pytest.param("ßx", 0, 1, (0, 1), id="one-char-expanding-to-two"),
    ],
)
def test_normalized_span_maps_back_to_original(text, first, last, span):
    assert normalize_mapped(text).span(first, last) == span


def test_match_form_span_covers_spelled_out_word():
    form = match_form_mapped("a b c d")
    assert form.text == "abcd"
    assert form.span(0, 3) == (0, 7)


# Characters that exercise every rule: look-alikes, leet, marks, format
# characters, compatibility forms, kana and jamo that compose, whitespace.
TRICKY = (
    "abcilo1345@$!|.- _*\u0430\u0435\u043e\u0440\u03bf\u03b1\u03bd\u0131\u0130\u00df\u00e9"
    "\u0301\u0308\u3099\u200b\u200d\u202e\u2066\ufeff\u00ad\ufe0f\U0001f3fd"
    "ＡＢ①ﬁ½ｶﾞがㄱㅏ\u1100\u1161\u0e33傻\u3000\u00a0\t\U0001f595\U000f0000"
)
texts = st.one_of(st.text(max_size=40), st.text(alphabet=TRICKY, max_size=40))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_normalize_is_idempotent_and_leaves_no_format_characters(text):
    once = normalize(text)
    assert normalize(once) == once
    assert not any(unicodedata.category(char) == "Cf" for char in once)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_every_form_maps_each_character_into_the_original(text):
    for form in (fold_mapped(text), normalize_mapped(text), match_form_mapped(text)):
        assert len(form.starts) == len(form.ends) == len(form.text)
        assert all(0 <= s <= e <= len(text) for s, e in zip(form.starts, form.ends, strict=True))
        assert list(form.starts) == sorted(form.starts)
