"""Staff regexes, compiled with RE2. Pure: no Django import.

RE2 (the ``google-re2`` package) matches in time linear in the text, with
no backtracking, so no pattern can make one comment cost seconds the way
``(a+)+`` or ``[b-z]*[b-z]*…a`` do in Python's ``re``. The price is what it
leaves out: lookarounds, backreferences, atomic groups and possessive
repeats are refused with the reason. Otherwise the syntax is Python's, with
these differences (kept, since translating them would make every pattern
several times larger and slower): ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are
ASCII-only (the light form folds full-width letters and digits to ASCII
first; use ``\\pL``, ``\\p{Han}``, ``\\p{Nd}`` for other scripts), and the end
of the text is ``\\z``, not ``\\Z``. Case is ignored, as before.

Linear is not free: the cost per character grows with the compiled
program, which Unicode classes and large ``{m,n}`` bounds inflate. So a
pattern is refused when its program is larger than ``MAX_PROGRAM_SIZE`` or
when one run over a ``MAX_INPUT_CHARS`` probe text takes over
``PROBE_BUDGET_SECONDS`` of CPU time; the matcher still times every run
against a larger budget and holds the comment if one exceeds it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import lru_cache

import re2

# Long enough for any sensible pattern, short enough to read in the admin.
MAX_REGEX_CHARS = 200
# The longest comment (danmaku.textrules.ABSOLUTE_MAX_CODE_POINTS): regex
# rules never see more of one.
MAX_INPUT_CHARS = 500
# RE2 instructions. "qq\s*\d{5,}" is 15, "\pL" about 1,200 (a Unicode class
# is a byte automaton), "[\p{L}\p{N}_]{6,}" 8,100. Bigger programs need more
# memory per pattern and more states in RE2's DFA; when its cache runs out
# it falls back to a slower (still linear) simulation: "(.{1,20}){1,50}q",
# 9,100, took ~40 ms on 500 CJK characters, which the probe refuses.
MAX_PROGRAM_SIZE = 20_000
# CPU time one run on one probe text may take at save time. Vetted patterns
# take microseconds; a tenth of the run-time budget leaves room for texts
# the probes did not think of.
PROBE_BUDGET_SECONDS = 0.005

_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


class RegexRefused(ValueError):
    """The pattern cannot be a regex rule; ``str(exc)`` says why, for the admin."""


def _options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    # The reason goes to the admin; RE2 would also print it to stderr.
    options.log_errors = False
    return options


def compile_regex(pattern: str) -> re2._Regexp:
    """The compiled pattern, or ``RegexRefused`` saying why it cannot be one.
    ``re2.compile`` keeps the last 128 in a cache, so checking a term and
    then loading it compiles it once.

    Checks everything but the timed probe (see ``regex_problem``): the
    length, what RE2 refuses, ``\\C`` (a single byte: it would split a
    character), the program size and matching empty text.
    """
    if len(pattern) > MAX_REGEX_CHARS:
        raise RegexRefused(f"must be at most {MAX_REGEX_CHARS} characters")
    if _has_escape(pattern, "C"):
        raise RegexRefused(r"\C (any single byte) is not allowed: it can split a character")
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        raise RegexRefused(_explain(pattern, exc)) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexRefused(
            f"is too large: it compiles to {compiled.programsize:,} RE2 instructions, the limit is"
            f" {MAX_PROGRAM_SIZE:,} (large {{m,n}} bounds and Unicode classes like \\pL make it grow)"
        )
    if compiled.search(""):
        raise RegexRefused("matches empty text, so it would match every comment")
    return compiled


def regex_problem(pattern: str, *, probe: bool = True, clock: Callable[[], float] = time.thread_time) -> str | None:
    """Why ``pattern`` cannot be a regex rule, or None. Run before saving one.

    ``probe=False`` skips the timed runs (a few milliseconds): for rules
    already vetted when they were saved.
    """
    try:
        compiled = compile_regex(pattern)
    except RegexRefused as exc:
        return str(exc)
    problem = _probe_problem(compiled, pattern, clock) if probe else None
    if problem:
        # Its DFA filled up on the probes (up to 8 MB): do not keep it in
        # re2's cache. The patterns in use are held by their matchers.
        re2.purge()
    return problem


def _explain(pattern: str, exc: re2.error) -> str:
    detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    engine = "RE2, the linear-time engine regex terms run on,"
    if any(_outside_escapes(pattern, look) for look in _LOOKAROUNDS):
        return f"uses a lookaround ((?=, (?!, (?<=, (?<!), which {engine} does not support ({detail})"
    if "(?P=" in pattern or any(_has_escape(pattern, digit) for digit in "123456789"):
        return f"uses a backreference, which {engine} does not support ({detail})"
    if "(?>" in pattern or ("bad repetition operator" in detail and detail.endswith("+")):
        return f"uses an atomic group or a possessive repeat, which {engine} does not support ({detail})"
    if _has_escape(pattern, "Z"):
        return f"uses \\Z, which {engine} spells \\z ({detail})"
    return f"is not a regular expression {engine} accepts: {detail}"


def _has_escape(pattern: str, char: str) -> bool:
    """Whether ``pattern`` holds the escape backslash-``char`` (not an escaped backslash before it)."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            if pattern[i + 1] == char:
                return True
            i += 2
        else:
            i += 1
    return False


def _outside_escapes(pattern: str, piece: str) -> bool:
    """Whether ``piece`` starts somewhere in ``pattern`` that is not escaped."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith(piece, i):
            return True
        i += 1
    return False


@lru_cache(maxsize=1)
def _generic_probes() -> tuple[str, ...]:
    # A linear engine's cost depends on the program and on how many states
    # its DFA needs, which grows with the variety of bytes: random ASCII,
    # CJK (three bytes each), and scripts mixed with astral characters (four).
    # Drawn once, from a fixed seed, so a verdict never depends on luck.
    rng = random.Random(13)
    n = MAX_INPUT_CHARS

    def drawn(*ranges: tuple[int, int]) -> str:
        return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(n))

    return (
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(n)),
        drawn((0x4E00, 0x9FFF)),
        drawn((0x20, 0x7E), (0xA0, 0x3000), (0x10000, 0x1FFFF)),
    )


def _probe_texts(pattern: str) -> list[str]:
    # Plus the pattern's own characters over and over: what it looks for
    # and never quite finds.
    n = MAX_INPUT_CHARS
    own = "".join(dict.fromkeys(c for c in pattern.lower() if c.isalnum())) or "a"
    spaced = own + " " + own[::-1] + "."
    return [*_generic_probes(), (own * n)[:n], (spaced * n)[:n]]


def _probe_problem(compiled: re2._Regexp, pattern: str, clock: Callable[[], float]) -> str | None:
    for text in _probe_texts(pattern):
        started = clock()
        for _ in compiled.finditer(text):
            pass
        elapsed = clock() - started
        if elapsed > PROBE_BUDGET_SECONDS:
            return (
                f"is too slow: {elapsed * 1000:.1f} ms on a {len(text)}-character probe text, the limit is"
                f" {PROBE_BUDGET_SECONDS * 1000:.0f} ms (simplify it: fewer Unicode classes or smaller bounds)"
            )
    return None
