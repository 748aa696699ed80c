"""Staff regexes on RE2 alone: what is refused and why, the probe, the size limit."""

from __future__ import annotations

import pytest

from moderation.regexes import MAX_PROGRAM_SIZE, PROBE_BUDGET_SECONDS, compile_regex, regex_problem


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param(r"(?<!\w)kill", "uses a lookaround", id="negative-lookbehind"),
        pytest.param(r"(?<=qq)\d+", "uses a lookaround", id="lookbehind"),
        pytest.param(r"kill(?!er)", "uses a lookaround", id="negative-lookahead"),
        pytest.param(r"(?=\d{5})\d+", "uses a lookaround", id="lookahead"),
        pytest.param(r"(\w)\1", "uses a backreference", id="numbered-backreference"),
        pytest.param(r"(?P<x>a)(?P=x)", "uses a backreference", id="named-backreference"),
        pytest.param(r"(?>ab)c", "atomic group or a possessive repeat", id="atomic-group"),
        pytest.param(r"a++b", "atomic group or a possessive repeat", id="possessive"),
        pytest.param(r"bad\Z", r"spells \z", id="python-end-of-text"),
        pytest.param(r"a\Cb", "any single byte", id="single-byte"),
        pytest.param("(", "missing )", id="unbalanced"),
        pytest.param("x*", "matches empty text", id="matches-empty"),
        pytest.param("a" * 201, "at most 200", id="too-long"),
        pytest.param(r"[\p{L}\p{N}_]{20}", "is too large", id="program-too-large"),
    ],
)
def test_refused_patterns_say_why(pattern, reason):
    problem = regex_problem(pattern)
    assert problem is not None
    assert reason in problem


def test_the_reason_names_the_engine_and_quotes_its_error():
    problem = regex_problem(r"(?<!\w)kill")
    assert problem == (
        "uses a lookaround ((?=, (?!, (?<=, (?<!), which RE2, the linear-time engine regex terms run on,"
        " does not support (invalid perl operator: (?<!)"
    )


def test_an_escaped_backslash_is_not_an_escape():
    # "\\1" is a backslash and a 1, "\\C" a backslash and a C.
    assert regex_problem(r"a\\1") is None
    assert regex_problem(r"a\\C") is None


def test_a_pattern_slow_on_a_probe_text_is_refused():
    # Within the size limit, but RE2's DFA gives up on it over CJK text and
    # the fallback takes tens of milliseconds.
    pattern = r"(.{1,20}){1,50}q"
    assert compile_regex(pattern).programsize <= MAX_PROGRAM_SIZE
    assert "is too slow" in (regex_problem(pattern) or "")


def test_the_probe_uses_the_clock_it_is_given():
    ticks = iter(range(100))
    problem = regex_problem("bad", clock=lambda: next(ticks) * PROBE_BUDGET_SECONDS * 2)
    assert problem is not None
    assert problem.startswith("is too slow")
    assert regex_problem("bad", probe=False) is None


def test_compiled_patterns_ignore_case_and_are_shared():
    assert compile_regex("FREE") is compile_regex("FREE")
    assert compile_regex("FREE").search("free gift")
