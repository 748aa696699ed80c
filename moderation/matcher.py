"""Blocked-term matching. Pure: no Django import.

A ``TermMatcher`` is built once from the active rules and then only read.

- exact: the term's match form (``normalize.match_form``) found in the
  text's match form as a whole word. A term's edge counts as a word edge
  when the text starts or ends there, a space or a script change is there,
  or either character on the edge is not a letter or digit of a script
  written with spaces: so for Latin, Cyrillic, Greek, Vietnamese... "ass"
  catches "a.s.s" and "你是ass吗" but not "class" or "assassin", while a
  term in a script written without spaces (Chinese, Japanese, Thai) or an
  emoji matches as a substring ("傻逼" in "你是傻逼吗"): those scripts have
  no word boundary to check. Spelled-out letters ("a b a d") are joined by
  the normalizer; the spaces they had still count as edges, so "bad" is
  found in "a b a d". Use a wildcard ("*ass*") for deliberate substring
  matching in spaced scripts.
  Markup or wrapping punctuation on both sides also makes a word: "bad"
  catches "<b>bad</b>", "x(bad)x", "**bad**y", "[b]bad[/b]" and "||bad||"
  (see ``_wrapped_word``). Apostrophes, hyphens, dots and commas do not wrap, they
  join, so "Moby-Dick's" does not hold "dick" and "s.h.i.t." does not
  hold "hit".
  Letters may be stretched: the Aho-Corasick automaton runs over the text
  with runs of one letter collapsed ("baaaad" reads "bad"), then each hit
  checks the runs are at least as long as the term's, so "bad" catches
  "baaaad" while "ass" does not catch "was".
- wildcard: "*" stands for any run (possibly empty) of non-space
  characters, "f*ck". The longest literal fragment goes into the same
  automaton; only when it is found does the term's pattern run, compiled
  with RE2, so it matches in time linear in the text (Python's ``re``
  backtracks: "a*a*a*a*a*a*z" on 25 "a" took seconds). Spans are the same
  as ``re``'s (leftmost, greedy, non-overlapping).
- regex: only in ``match_full`` (the Celery task), on the light form
  (``normalize.fold_mapped``: case, width and zero-width folded, nothing
  else), input capped at ``MAX_INPUT_CHARS``, compiled with RE2 (see
  ``moderation.regexes``: what it refuses, how it differs from ``re``).
  Each run is timed in CPU time; one over ``REGEX_BUDGET_SECONDS`` is
  reported in ``MatchResult.overran`` (the caller holds that comment) and
  the rule stays on: one comment never switches a rule off.

Every match carries the span of the original text it covers, for ``mask``.

Rules carry their scope (``room_id``: None for every room), an optional
expiry (``expires_at``, epoch seconds) and a ``shadow`` flag. ``match_fast``
and ``match_full`` take the room and the current time; rules of other rooms
and expired rules are skipped, and shadow rules' matches are reported apart
(``MatchResult.shadowed``) so they can be counted without acting.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import ahocorasick
import re2

from moderation.normalize import WILDCARD_MARK, Mapped, fold_mapped, match_form, match_form_mapped, spaceless
from moderation.regexes import MAX_INPUT_CHARS, compile_regex, regex_problem

KINDS = ("exact", "wildcard", "regex")
ACTIONS = ("block", "hold", "mask")
# Most severe first wins: a comment matching a block term and a mask term is blocked.
SEVERITY = {"mask": 1, "hold": 2, "block": 3}

MAX_TERM_CHARS = 200
# CPU time one regex rule may take on one comment. Vetted patterns take
# microseconds (and at most moderation.regexes.PROBE_BUDGET_SECONDS on the
# save-time probes); a run over it is reported in ``MatchResult.overran``
# and the comment is held, never the rule switched off.
REGEX_BUDGET_SECONDS = 0.05

# Punctuation that joins the letters around it into one word in ordinary
# writing: apostrophes ("don't", "Moby-Dick's"), hyphens and dashes, and the
# dots and commas of spelled-out evasions ("a.s.s"), full-width ones too.
# Any other punctuation or symbol next to a word is markup or a wrapper
# ("<b>bad</b>", "x(bad)x", "||bad||") and makes a word edge.
_JOINERS = frozenset(".,'\u2019\u00b7\u3002\u3001\uff0c\uff0e\u30fb\uff65")


@dataclass(frozen=True, slots=True)
class Rule:
    """One blocked term. ``id`` is the database row's, for hit counting;
    ``room_id`` None means every room; ``expires_at`` is epoch seconds."""

    term: str
    kind: str = "exact"
    action: str = "block"
    id: int | None = None
    room_id: int | None = None
    shadow: bool = False
    expires_at: float | None = None

    def applies(self, room_id: int | None, now: float | None) -> bool:
        """Whether the rule is in force in ``room_id`` at ``now`` (None: skip the expiry check)."""
        if self.room_id is not None and self.room_id != room_id:
            return False
        return self.expires_at is None or now is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Match:
    """``rule`` matched the original text's characters [start, end)."""

    rule: Rule
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Overrun:
    """Regex ``rule`` took ``seconds`` of CPU time on one comment, over ``REGEX_BUDGET_SECONDS``."""

    rule: Rule
    seconds: float


@dataclass(frozen=True, slots=True)
class MatchResult:
    """``matches``: what the rules in force found; ``shadowed``: what shadow
    rules found, which only counts hits and never acts; ``overran``: regex
    rules in force (shadow ones included) that ran over their budget on
    this text, whatever they found: the comment needs a person's eyes."""

    matches: tuple[Match, ...] = ()
    shadowed: tuple[Match, ...] = ()
    overran: tuple[Overrun, ...] = ()

    @property
    def hit_ids(self) -> tuple[int, ...]:
        """Ids of the rules that matched, shadow ones included, each once."""
        return tuple(dict.fromkeys(m.rule.id for m in (*self.matches, *self.shadowed) if m.rule.id is not None))

    @property
    def action(self) -> str | None:
        """The most severe action among the matches, or None."""
        return most_severe(m.rule.action for m in self.matches)

    @property
    def terms(self) -> tuple[str, ...]:
        """The matched rules' terms, each once, in order of appearance."""
        return tuple(dict.fromkeys(m.rule.term for m in sorted(self.matches, key=lambda m: m.start)))

    def __bool__(self) -> bool:
        return bool(self.matches)


def most_severe(actions: Iterable[str]) -> str | None:
    return max(actions, key=SEVERITY.__getitem__, default=None)


def mask(text: str, matches: Iterable[Match]) -> str:
    """``text`` with every matched character replaced by "*".

    Whitespace inside a match stays, so the result has the same length and
    the same word breaks; characters outside every match are untouched.
    """
    chars = list(text)
    for match in matches:
        for i in range(match.start, min(match.end, len(chars))):
            if not chars[i].isspace():
                chars[i] = "*"
    return "".join(chars)


# -- Validation ---------------------------------------------------------------------


def rule_problem(term: str, kind: str, *, probe: bool = True) -> str | None:
    """Why ``term`` cannot be a rule of ``kind``, or None. Run before saving one.

    ``probe=False`` skips the timed regex probe (milliseconds per pattern):
    for rules already vetted when they were saved.
    """
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}"
    if not term.strip():
        return "must not be empty"
    if kind == "regex":
        return regex_problem(term, probe=probe)
    if len(term) > MAX_TERM_CHARS:
        return f"must be at most {MAX_TERM_CHARS} characters"
    if kind == "exact":
        if not match_form(term):
            return "has nothing left to match once punctuation and invisible characters are removed"
        return None
    form = match_form(term, wildcard=True)
    if WILDCARD_MARK not in form:
        return 'a wildcard term needs a "*" inside or next to a word; use an exact term instead'
    literal = sum(len(_runs(fragment)[0]) for fragment in form.split(WILDCARD_MARK))
    if literal < 2:
        return "a wildcard term needs at least two letters besides the *"
    return None


# -- Matching ---------------------------------------------------------------------------


def _runs(text: str) -> tuple[str, list[int], list[int]]:
    """Collapse runs of one character: (one char per run, run lengths, index of each run's start)."""
    key: list[str] = []
    counts: list[int] = []
    firsts: list[int] = []
    previous = None
    for i, char in enumerate(text):
        if char == previous:
            counts[-1] += 1
        else:
            key.append(char)
            counts.append(1)
            firsts.append(i)
            previous = char
    return "".join(key), counts, firsts


def _fragment_pattern(fragment: str) -> str:
    key, counts, _ = _runs(fragment)
    return "".join(re2.escape(c) + ("+" if n == 1 else f"{{{n},}}") for c, n in zip(key, counts, strict=True))


def _wildcard_options() -> re2.Options:
    options = re2.Options()
    # Term and text are both casefolded match forms already.
    options.log_errors = False
    return options


_WILDCARD_OPTIONS = _wildcard_options()


class TermMatcher:
    """Matches text against a fixed list of rules. Safe to share between threads.

    ``clock`` times each regex run (CPU time of the calling thread, so a
    busy machine does not make a pattern look slow).
    """

    def __init__(
        self,
        rules: Iterable[Rule | tuple[str, str, str]],
        *,
        clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._clock = clock
        self.rules: list[Rule] = []
        # Rules that failed validation, with the reason, skipped.
        self.rejected: list[tuple[Rule, str]] = []
        # Automaton key -> entries: (rule index, run lengths) for an exact
        # term, (rule index, None) for a wildcard's gate fragment.
        entries: dict[str, list[tuple[int, tuple[int, ...] | None]]] = {}
        # Rule index -> (the collapsed keys of its fragments other than the
        # gate, whether one holds a space, the compiled pattern).
        self._wildcards: dict[int, tuple[tuple[str, ...], bool, re2._Regexp]] = {}
        self._regexes: list[tuple[Rule, re2._Regexp]] = []

        for raw in rules:
            rule = raw if isinstance(raw, Rule) else Rule(*raw)
            problem = rule_problem(rule.term, rule.kind, probe=False) if rule.action in ACTIONS else "unknown action"
            if problem:
                self.rejected.append((rule, problem))
                continue
            index = len(self.rules)
            self.rules.append(rule)
            if rule.kind == "exact":
                key, counts, _ = _runs(match_form(rule.term))
                entries.setdefault(key, []).append((index, tuple(counts)))
            elif rule.kind == "wildcard":
                form = match_form(rule.term, wildcard=True)
                fragments = form.split(WILDCARD_MARK)
                keys = [key for f in fragments if (key := _runs(f)[0])]
                gate = max(keys, key=len)
                entries.setdefault(gate, []).append((index, None))
                keys.remove(gate)
                # RE2, not re: "[^ ]*" between fragments backtracks
                # polynomially in re ("a*a*a*a*a*a*z" on 25 "a" took seconds).
                pattern = "[^ ]*".join(_fragment_pattern(f) for f in fragments)
                self._wildcards[index] = (tuple(keys), " " in form, re2.compile(pattern, _WILDCARD_OPTIONS))
            else:
                self._regexes.append((rule, compile_regex(rule.term)))

        self._automaton: ahocorasick.Automaton | None = None
        if entries:
            automaton = ahocorasick.Automaton()
            for key, values in entries.items():
                automaton.add_word(key, tuple(values))
            automaton.make_automaton()
            self._automaton = automaton

    def __len__(self) -> int:
        return len(self.rules)

    def match_fast(self, text: str, *, room_id: int | None = None, now: float | None = None) -> MatchResult:
        """Exact and wildcard terms in force in ``room_id`` (None: global
        terms only) at ``now`` (epoch seconds): what the send path runs."""
        if self._automaton is None:
            return MatchResult()
        return _result(self._fast(text, match_form_mapped(text)), (), room_id, now)

    def match_full(self, text: str, *, room_id: int | None = None, now: float | None = None) -> MatchResult:
        """Every rule, regexes included: what the moderation task runs."""
        matches = self._fast(text, match_form_mapped(text)) if self._automaton is not None else []
        overran: list[Overrun] = []
        if self._regexes:
            matches.extend(self._regex(fold_mapped(text), overran))
        return _result(matches, overran, room_id, now)

    def _fast(self, text: str, form: Mapped) -> list[Match]:
        key, counts, firsts = _runs(form.text)
        matches: list[Match] = []
        # Wildcard rule index -> where its gate fragment ends in ``key``.
        gated: dict[int, list[int]] = {}
        for last, values in self._automaton.iter(key):
            for index, wanted in values:
                if wanted is None:
                    gated.setdefault(index, []).append(last)
                    continue
                first = last - len(wanted) + 1
                if all(counts[first + k] >= n for k, n in enumerate(wanted)):
                    begin, end = firsts[first], firsts[last] + counts[last] - 1
                    hard = _edge(text, form, begin)
                    hard_end = _edge(text, form, end + 1) if hard else None
                    if hard and hard_end:
                        found: tuple[int, int] | None = (begin, end)
                    else:
                        found = _wrapped_word(text, form, firsts, counts, first, last, wanted, hard, hard_end)
                    if found is not None:
                        start, stop = form.span(*found)
                        matches.append(Match(self.rules[index], start, stop))
        for index in sorted(gated):
            others, spaced, pattern = self._wildcards[index]
            if others and not _may_match(key, others, spaced, gated[index]):
                continue
            for found in pattern.finditer(form.text):
                if found.end() > found.start():
                    start, end = form.span(found.start(), found.end() - 1)
                    matches.append(Match(self.rules[index], start, end))
        return matches

    def _regex(self, form: Mapped, overran: list[Overrun]) -> list[Match]:
        text = form.text[:MAX_INPUT_CHARS]
        matches: list[Match] = []
        for rule, pattern in self._regexes:
            started = self._clock()
            found = [m.span() for m in pattern.finditer(text) if m.end() > m.start()]
            elapsed = self._clock() - started
            if elapsed > REGEX_BUDGET_SECONDS:
                overran.append(Overrun(rule, elapsed))
            for begin, end in found:
                start, stop = form.span(begin, end - 1)
                matches.append(Match(rule, start, stop))
        return matches


def _may_match(key: str, others: tuple[str, ...], spaced: bool, gates: list[int]) -> bool:
    """Whether a wildcard may match text collapsed to ``key``, where its gate
    fragment ends at ``gates`` and ``others`` are its other fragments' keys.

    A match holds every fragment and, as "*" never crosses a space, lies in
    one word: the word around a gate must hold the other fragments (the
    whole text, for a term with a space in it). Substring tests in C: they
    spare most calls into RE2, which cost more than re's on short texts.
    """
    if spaced:
        return all(k in key for k in others)
    for last in gates:
        end = key.find(" ", last)
        word = key[key.rfind(" ", 0, last) + 1 : end if end >= 0 else len(key)]
        if all(k in word for k in others):
            return True
    return False


def _result(
    matches: Iterable[Match], overran: Iterable[Overrun], room_id: int | None, now: float | None
) -> MatchResult:
    acting: list[Match] = []
    shadowed: list[Match] = []
    for match in matches:
        if match.rule.applies(room_id, now):
            (shadowed if match.rule.shadow else acting).append(match)
    late = tuple(o for o in overran if o.rule.applies(room_id, now))
    return MatchResult(tuple(acting), tuple(shadowed), late)


# -- Word edges -------------------------------------------------------------------------


def _joins(char: str) -> bool:
    """A letter, digit or mark of a script written with spaces: two of them
    side by side are inside one word."""
    return (char.isalnum() or unicodedata.category(char)[0] == "M") and not spaceless(char)


def _edge(text: str, form: Mapped, i: int) -> bool:
    """Whether a word may start (or end) between ``form.text[i - 1]`` and ``form.text[i]``."""
    if i <= 0 or i >= len(form.text):
        return True
    before, after = form.text[i - 1], form.text[i]
    if not (_joins(before) and _joins(after)):
        return True
    # Joined by the normalizer although the original had whitespace there:
    # spelled-out letters ("a b a d"). Punctuation and invisible characters
    # between letters ("s.h.i.t", "s\u200bhit") do not make an edge.
    return any(c.isspace() for c in text[form.ends[i - 1] : form.starts[i]])


@lru_cache(maxsize=4096)
def _wraps(char: str) -> bool:
    """Punctuation or a symbol that is not a joiner (see ``_JOINERS``)."""
    category = unicodedata.category(char)
    return category[0] in "PS" and category != "Pd" and char not in _JOINERS


# How a word may start or end at a place: an edge the normalizer saw
# (space, text end, script change), a symbol read as a letter ("|bad|"),
# markup or wrapping punctuation ("<b>bad</b>"); None: inside a word.
_HARD, _SYMBOL, _MARKUP = 1, 2, 3


def _side(text: str, form: Mapped, i: int, outside: int, *, hard: bool | None, symbol: bool = True) -> int | None:
    """What is between form characters ``i - 1`` and ``i`` for a word on one
    side of it; ``outside`` is the form character beyond the word, ``hard``
    the ``_edge`` there when already known (None: find out), ``symbol``
    whether a symbol read as a letter may count. Cheap tests first: most
    calls are for a term found inside a longer word."""
    start = form.ends[i - 1] if i > 0 else 0
    stop = form.starts[i] if i < len(form.text) else len(text)
    if start < stop and any(_wraps(c) for c in text[start:stop]):
        return _MARKUP
    if symbol and 0 <= outside < len(form.text):
        letter = form.text[outside]
        original = text[form.starts[outside]]
        if original != letter and letter.isalpha() and _wraps(original):
            return _SYMBOL
    if hard is None:
        hard = _edge(text, form, i)
    return _HARD if hard else None


def _inside_is_bare(text: str, form: Mapped, start: int, stop: int) -> bool:
    """No markup or wrapping punctuation between form characters ``start``..``stop``."""
    for i in range(start + 1, stop + 1):
        begin, end = form.ends[i - 1], form.starts[i]
        if begin < end and any(_wraps(c) for c in text[begin:end]):
            return False
    return True


def _wrapped_word(
    text: str,
    form: Mapped,
    firsts: list[int],
    counts: list[int],
    first: int,
    last: int,
    wanted: tuple[int, ...],
    hard_begin: bool,
    hard_end: bool | None,
) -> tuple[int, int] | None:
    """Form indices [begin, end] of the exact term whose runs were found at
    ``first``..``last`` of the collapsed text, if they hold a word wrapped
    in markup; called when they are not a whole word by ``_edge`` alone
    (``hard_begin``, ``hard_end``: whether their start and end are edges,
    None when not known).

    A whole word has an edge on each side (see ``_edge``) or markup or
    wrapping punctuation there: "bad" in "<b>bad</b>", "x(bad)x", "**bad**y"
    or "you [bad]" is the bare word. A symbol read as a letter counts as
    wrapping only when the other side is wrapped too, so "|bad|" is "bad"
    but "$hit" reads "shit", not "hit". The first and last runs may give up
    letters to the wrapping ("<b>bad</b>" collapses to "badb": the tag's
    "b" is not the word's), and no wrapping may sit inside the word.
    """
    begin, end = firsts[first], firsts[last] + counts[last] - 1
    # The latest start and the earliest end leave the least inside the word.
    # Inside a run of one letter only markup or a symbol can be a side: a
    # space there ("b a a d") is a hard edge the whole run already had.
    start = side = None
    for i in range(begin + counts[first] - wanted[0], begin - 1, -1):
        side = _side(text, form, i, i - 1, hard=hard_begin if i == begin else False)
        if side is not None:
            start = i
            break
    if start is None:
        return None
    earliest = firsts[last] + wanted[-1] - 1
    if first == last:
        earliest = max(earliest, start + wanted[0] - 1)
    # A symbol pairs only with markup or another symbol, an edge only with markup.
    stop = None
    for i in range(earliest, end + 1):
        hard = (hard_end if i == end else False) if side == _MARKUP else False
        if _side(text, form, i + 1, i + 1, hard=hard, symbol=side != _HARD) is not None:
            stop = i
            break
    if stop is None:
        return None
    return (start, stop) if _inside_is_bare(text, form, start, stop) else None
