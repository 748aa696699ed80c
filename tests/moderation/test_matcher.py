# ruff: noqa: RUF001  (look-alike and full-width characters are the test cases)
"""The term matcher alone: kinds, actions, masking, words in markup, the regex budget, speed."""

from __future__ import annotations

import random
import re
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.matcher import REGEX_BUDGET_SECONDS, Rule, TermMatcher, mask, rule_problem
from moderation.normalize import WILDCARD_MARK, match_form, match_form_mapped


def terms_found(matcher: TermMatcher, text: str, *, full: bool = False) -> set[str]:
    result = matcher.match_full(text) if full else matcher.match_fast(text)
    return {m.rule.term for m in result.matches}


@pytest.mark.parametrize(
    ("term", "text", "found"),
    [
        pytest.param("bad", "so bad", True, id="plain"),
        pytest.param("bad", "SO BAD!", True, id="case"),
        pytest.param("bad", "so baaaad", True, id="stretched"),
        pytest.param("bad", "b a d", True, id="spelled-out"),
        pytest.param("bad", "b\u200ba\u200dd", True, id="zero-width"),
        pytest.param("bad", "b\u0430d", True, id="cyrillic-lookalike"),
        pytest.param("bad", "b4d", True, id="leet"),
        pytest.param("bad", "ｂａｄ", True, id="fullwidth"),
        pytest.param("bad", "badge", False, id="latin-inside-a-longer-word"),
        pytest.param("ass", "class assassin", False, id="latin-whole-words-only"),
        pytest.param("ass", "a.s.s!", True, id="punctuation-inside-is-not-an-edge"),
        pytest.param("ass", "you 4.s.s", True, id="leet-across-punctuation"),
        pytest.param("bad", "a b a d guy", True, id="spelled-out-after-a-single-letter-word"),
        pytest.param("ass", "你是ass吗", True, id="latin-next-to-cjk"),
        pytest.param("傻逼", "你是傻逼吗", True, id="cjk-as-substring"),
        pytest.param("bad", "bd", False, id="missing-letter"),
        pytest.param("ass", "was", False, id="doubled-letter-is-not-optional"),
        pytest.param("ass", "a55", True, id="doubled-letter-leet"),
        pytest.param("ass", "aaassss", True, id="doubled-letter-stretched"),
        pytest.param("kill", "KI11", True, id="one-is-l"),
        pytest.param("go die", "go  DIE", True, id="phrase"),
        pytest.param("go die", "godie", False, id="phrase-needs-its-space"),
        pytest.param("傻逼", "你是傻 逼", True, id="cjk-spaced"),
        pytest.param("🖕", "🖕🏿 you", True, id="emoji"),
    ],
)
def test_exact_term(term, text, found):
    assert terms_found(TermMatcher([Rule(term)]), text) == ({term} if found else set())


@pytest.mark.parametrize(
    ("term", "text", "masked"),
    [
        # Markup or wrapping punctuation on both sides: the bare word.
        pytest.param("bad", "<b>bad</b>", "<b>***</b>", id="html"),
        pytest.param("bad", "so<b>bad</b>!", "so<b>***</b>!", id="html-inside-text"),
        pytest.param("bad", "<em>bad</em>", "<em>***</em>", id="html-longer-tag"),
        pytest.param("bad", "[b]bad[/b]", "[b]***[/b]", id="bbcode"),
        pytest.param("bad", "x(bad)x", "x(***)x", id="parentheses"),
        pytest.param("bad", "ok[bad]ok", "ok[***]ok", id="brackets"),
        pytest.param("bad", "lol**bad**lol", "lol*******lol", id="bold"),
        pytest.param("bad", "||bad||", "||***||", id="spoiler-bars-read-as-letters"),
        pytest.param("bad", "$bad$", "$***$", id="dollars-read-as-letters"),
        pytest.param("bad", "<b>b4d</b>", "<b>***</b>", id="leet-inside-markup"),
        pytest.param("bad", "<b>baaad</b>", "<b>*****</b>", id="stretched-inside-markup"),
        pytest.param("go die", "<i>go die</i>", "<i>** ***</i>", id="phrase"),
        pytest.param("ass", "<i>a.s.s</i>", "<i>*****</i>", id="spelled-out-inside-markup"),
        # Already words before: unchanged.
        pytest.param("bad", "(bad)", "(***)", id="alone-in-parentheses"),
        pytest.param("bad", "**bad**", "*******", id="alone-in-bold"),
        pytest.param("bad", "[bad]", "[***]", id="alone-in-brackets"),
        # Joiners do not wrap; a symbol read as a letter wraps only on both sides.
        pytest.param("dick", "Moby-Dick's", "Moby-Dick's", id="hyphen-and-apostrophe-join"),
        pytest.param("hit", "s.h.i.t.", "s.h.i.t.", id="dots-join"),
        pytest.param("hit", "$hit", "$hit", id="dollar-is-a-letter-on-one-side"),
        pytest.param("hit", "(s)(h)(i)(t)", "(s)(h)(i)(t)", id="wrapping-inside-the-word"),
        pytest.param("hit", "s*h*i*t", "s*h*i*t", id="stars-between-letters"),
        pytest.param("ass", "<b>class</b>", "<b>class</b>", id="inside-a-longer-word"),
        pytest.param("bad", "4bad4", "4bad4", id="digits-are-not-markup"),
    ],
)
def test_a_word_in_markup_or_punctuation_is_the_bare_word(term, text, masked):
    matches = TermMatcher([Rule(term, "exact", "mask")]).match_fast(text).matches
    assert mask(text, matches) == masked


@pytest.mark.parametrize(
    ("term", "text", "found"),
    [
        pytest.param("f*ck", "fuck", True, id="one-letter"),
        pytest.param("f*ck", "fck", True, id="nothing"),
        pytest.param("f*ck", "FxxXck off", True, id="several"),
        pytest.param("f*ck", "fuuuuck", True, id="stretched"),
        pytest.param("f*ck", "f ck", False, id="not-across-a-space"),
        pytest.param("f*ck", "from the deck", False, id="not-across-words"),
        pytest.param("*hole", "a55hole", True, id="leading"),
        pytest.param("idiot*", "IDI0TS", True, id="trailing"),
    ],
)
def test_wildcard_term(term, text, found):
    assert terms_found(TermMatcher([Rule(term, "wildcard")]), text) == ({term} if found else set())


@pytest.mark.parametrize(
    ("term", "text"),
    [
        # Every fragment is in the text, so the pattern runs; no match, so
        # a backtracking engine would try every way to split the text.
        pytest.param("a*a*a*a*a*a*z", "z" + "a" * 499, id="seconds-at-25-in-re"),
        pytest.param("*s*h*i*t*", "t" + "shi" * 166, id="96-ms-at-99-in-re"),
        pytest.param("a*b*a*b*a*b*c", "c" + "ab" * 249, id="alternating"),
    ],
)
def test_wildcards_match_in_linear_time(term, text):
    matcher = TermMatcher([Rule(term, "wildcard")])
    matcher.match_fast(text[:20])  # warm the normalizer's caches
    started = time.thread_time()
    matcher.match_fast(text)
    # Python's re took seconds on 25 characters and grows polynomially;
    # this takes well under a millisecond. This thread's CPU time: a busy
    # machine, or threads other tests left running, do not count.
    assert time.thread_time() - started < 0.2


def old_wildcard_spans(term: str, text: str) -> list[tuple[int, int]]:
    """What the wildcard matcher found with Python's re before RE2: the reference."""

    def fragment(part: str) -> str:
        runs = [(m.group()[0], len(m.group())) for m in re.finditer(r"(.)\1*", part, re.DOTALL)]
        return "".join(re.escape(c) + ("+" if n == 1 else f"{{{n},}}") for c, n in runs)

    pattern = re.compile("[^ ]*".join(fragment(f) for f in match_form(term, wildcard=True).split(WILDCARD_MARK)))
    form = match_form_mapped(text)
    return [form.span(m.start(), m.end() - 1) for m in pattern.finditer(form.text) if m.end() > m.start()]


WILDCARD_LETTERS = "abfkcu"


@settings(max_examples=1_000, deadline=None, derandomize=True, database=None)
@given(
    term=st.lists(st.sampled_from([*WILDCARD_LETTERS, "*", "aa", " "]), min_size=3, max_size=8)
    .map("".join)
    .filter(lambda t: rule_problem(t, "wildcard") is None),
    # Short: the reference backtracks.
    text=st.text(alphabet=[*WILDCARD_LETTERS, " ", ".", "4", "A"], max_size=16),
)
def test_wildcard_spans_are_the_ones_python_re_found(term, text):
    found = TermMatcher([Rule(term, "wildcard")]).match_fast(text).matches
    assert [(m.start, m.end) for m in found] == old_wildcard_spans(term, text)


def test_regex_rules_run_only_in_full():
    matcher = TermMatcher([Rule(r"qq\s*\d{5,}", "regex", "hold"), Rule("bad")])
    assert terms_found(matcher, "add my ＱＱ 123456 bad") == {"bad"}
    assert terms_found(matcher, "add my ＱＱ 123456 bad", full=True) == {"bad", r"qq\s*\d{5,}"}


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param(["mask"], "mask", id="mask"),
        pytest.param(["mask", "hold"], "hold", id="hold-over-mask"),
        pytest.param(["mask", "block", "hold"], "block", id="block-over-all"),
        pytest.param([], None, id="nothing"),
    ],
)
def test_most_severe_action_wins(actions, expected):
    words = ["alpha", "bravo", "charlie"]
    matcher = TermMatcher([Rule(word, "exact", action) for word, action in zip(words, actions, strict=False)])
    assert matcher.match_fast("alpha bravo charlie").action == expected


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        pytest.param("so bad!", "so ***!", id="plain"),
        pytest.param("so b\u0430d", "so ***", id="lookalike"),
        pytest.param("b4d b4d", "*** ***", id="leet-twice"),
        pytest.param("b\u200bad.", "****.", id="zero-width-inside"),
        pytest.param("a b a d guy", "a * * * guy", id="spelled-out-keeps-spaces"),
        pytest.param("baaaad", "******", id="stretched"),
        pytest.param("ｂａｄ", "***", id="fullwidth"),
        pytest.param("ba\u0301d", "****", id="combining-mark"),
        pytest.param("ok", "ok", id="nothing"),
    ],
)
def test_mask_replaces_exactly_the_matched_original_characters(text, masked):
    matcher = TermMatcher([Rule("bad", "exact", "mask")])
    assert mask(text, matcher.match_fast(text).matches) == masked


def test_mask_wildcard_and_regex_spans():
    matcher = TermMatcher([Rule("f*ck", "wildcard", "mask"), Rule(r"\d{5,}", "regex", "mask")])
    text = "fuuck, call 12345"
    assert mask(text, matcher.match_full(text).matches) == "*****, call *****"


MASK_RULES = [Rule("bad", "exact", "mask"), Rule("f*ck", "wildcard", "mask"), Rule("ass", "exact", "mask")]
MASK_PIECES = ["bad", "b a d", "b\u0430d", "b4d", "f u c k", "fuuck", "a55", "was", " ", "!", "\u200b", "x", "é"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(MASK_PIECES), st.text(max_size=3)), max_size=12).map("".join))
def test_mask_keeps_length_and_touches_only_matched_characters(text):
    matches = TermMatcher(MASK_RULES).match_full(text).matches
    masked = mask(text, matches)
    assert len(masked) == len(text)
    inside = {i for m in matches for i in range(m.start, m.end)}
    for i, (before, after) in enumerate(zip(text, masked, strict=True)):
        if i in inside and not before.isspace():
            assert after == "*"
        else:
            assert after == before


@pytest.mark.parametrize(
    ("term", "kind", "problem"),
    [
        pytest.param("", "exact", "must not be empty", id="empty"),
        pytest.param("...", "exact", "nothing left to match", id="only-punctuation"),
        pytest.param("bad", "fuzzy", "kind must be", id="unknown-kind"),
        pytest.param("bad", "wildcard", "needs a", id="wildcard-without-star"),
        pytest.param("a*", "wildcard", "at least two letters", id="wildcard-too-short"),
        pytest.param(r"(?<!\w)kill", "regex", "lookaround", id="lookbehind"),
        pytest.param(r"(\w)\1", "regex", "backreference", id="backreference"),
        pytest.param("a{1,5000}", "regex", "invalid repetition size", id="huge-bound"),
        pytest.param("x?", "regex", "matches empty text", id="matches-empty"),
        pytest.param("(", "regex", "missing )", id="invalid"),
        pytest.param("a" * 201, "regex", "at most 200", id="too-long"),
    ],
)
def test_rule_problem(term, kind, problem):
    assert problem in (rule_problem(term, kind) or "")


@pytest.mark.parametrize(
    "pattern",
    [
        r"qq\s*\d{5,}",
        r"\bkill\b",
        r"(?:ha){3,}",
        r"v[x×]\s*[:：]?\s*\w{6,}",
        r"(?i)free\s+gift",
        # Shapes that backtrack in Python's re and run in linear time in RE2.
        r"(a+)+$",
        r"(a|ab)*c",
        r".*.*.*.*x",
        r"[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*a",
    ],
)
def test_reasonable_regexes_pass(pattern):
    assert rule_problem(pattern, "regex") is None


def test_invalid_rules_are_skipped_not_fatal():
    matcher = TermMatcher([Rule("(?=x)x", "regex"), Rule("bad", "exact", "explode"), Rule("bad")])
    assert len(matcher) == 1
    problems = [problem for _, problem in matcher.rejected]
    assert problems[0].startswith("uses a lookaround")
    assert problems[1:] == ["unknown action"]


def test_regex_over_budget_is_reported_and_stays_on():
    ticks = iter(range(100))
    rule = Rule("bad", "regex", "mask")
    matcher = TermMatcher([rule], clock=lambda: next(ticks) * REGEX_BUDGET_SECONDS * 2)
    for _ in range(3):
        result = matcher.match_full("so bad")
        assert result.terms == ("bad",)
        assert [(o.rule, o.seconds) for o in result.overran] == [(rule, pytest.approx(REGEX_BUDGET_SECONDS * 2))]
    assert matcher.match_full("fine").overran[0].rule == rule


def test_regex_within_budget_reports_no_overrun():
    assert TermMatcher([Rule("bad", "regex")]).match_full("so bad").overran == ()


def test_overruns_of_rules_not_in_force_are_not_reported():
    ticks = iter(range(100))
    rules = [Rule("bad", "regex", room_id=7), Rule("worse", "regex", expires_at=100.0)]
    matcher = TermMatcher(rules, clock=lambda: next(ticks) * REGEX_BUDGET_SECONDS * 2)
    assert matcher.match_full("bad worse", room_id=8, now=100.0).overran == ()


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        # RE2 runs what backtracks in re, with the same answers.
        pytest.param(r"(a+)+$", "a" * 40 + "!", False, id="nested-quantifier"),
        pytest.param(r"[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*[b-z]*a", "b" * 400, False, id="polynomial"),
        pytest.param(r"(a|ab)*c", "ab" * 200 + "c", True, id="alternation-in-repeat"),
        # Case is still ignored; the light form folds full-width digits to ASCII for \d.
        pytest.param(r"FREE\s+GIFT", "free gift", True, id="ignorecase"),
        pytest.param(r"qq\s*\d{5,}", "ＱＱ １２３４５", True, id="fullwidth"),
        pytest.param(r"\p{Han}{2}", "你好", True, id="unicode-class"),
    ],
)
def test_regex_rules_run_on_re2(pattern, text, found):
    matcher = TermMatcher([Rule(pattern, "regex")])
    started = time.thread_time()
    assert bool(matcher.match_full(text)) is found
    # Seconds in re for the first two; RE2 takes microseconds.
    assert time.thread_time() - started < 0.5


def test_ten_thousand_terms_match_a_comment_in_well_under_a_millisecond():
    rng = random.Random(7)

    def word(low: int, high: int) -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))

    terms = [word(4, 10) for _ in range(10_000)]
    rules = [Rule(t, "exact", rng.choice(["block", "hold", "mask"])) for t in terms[:9_500]]
    rules += [Rule(t[:2] + "*" + t[2:], "wildcard", "mask") for t in terms[9_500:]]
    matcher = TermMatcher(rules)
    texts = []
    for _ in range(200):
        words = [rng.choice(terms) if rng.random() < 0.1 else word(1, 8) for _ in range(25)]
        texts.append(" ".join(words)[:100])
    matcher.match_fast(texts[0])  # warm the normalizer's caches

    started = time.perf_counter()
    found = sum(len(matcher.match_fast(text).matches) for text in texts)
    average = (time.perf_counter() - started) / len(texts)

    assert found > 0
    # Typically ~0.2 ms; the bound only catches a pathology.
    assert average < 0.005


def test_rules_of_other_rooms_and_expired_rules_are_skipped():
    matcher = TermMatcher(
        [
            Rule("alpha", id=1),
            Rule("bravo", id=2, room_id=7),
            Rule("charlie", id=3, expires_at=100.0),
        ]
    )
    text = "alpha bravo charlie"
    assert matcher.match_fast(text, room_id=7, now=99.9).terms == ("alpha", "bravo", "charlie")
    assert matcher.match_fast(text, room_id=8, now=100.0).terms == ("alpha",)
    assert matcher.match_fast(text).terms == ("alpha", "charlie")


def test_shadow_rules_are_reported_apart_and_do_not_act():
    matcher = TermMatcher([Rule("alpha", action="block", id=1, shadow=True), Rule("bravo", action="mask", id=2)])
    result = matcher.match_full("alpha bravo alpha")
    assert result.action == "mask"
    assert [m.rule.term for m in result.shadowed] == ["alpha", "alpha"]
    assert result.hit_ids == (2, 1)
