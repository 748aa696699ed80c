"""Send-path filter throughput: normalize + match per comment, in microseconds.

Builds a ``TermMatcher`` from 1,000 and from 10,000 random realistic terms
(Latin words of 3-10 letters, a share of 2-3 character Chinese terms, 5%
wildcards), then times ``match_fast`` (normalization included) over
100-character comments: mixed English and Chinese chatter, some emoji, one
in ten holding a term, some disguised (full-width, zero-width, leet). The
baseline is the normalization alone (``match_form_mapped``) on the same
comments in the same run. The normalizer's per-character caches are warmed
first, as in a running process. Best of ``--repeat`` runs.

Wildcards, before and after RE2: the same matcher with its wildcard
patterns compiled by Python's ``re`` (as before) and by RE2 (as now), on the
same comments; then CPU time for one adversarial term, "a*a*a*a*a*a*z", on
a comment of a "z" and n - 1 "a", where ``re`` backtracks (it stops at 22: 24 takes
seconds) and RE2 stays linear up to the longest comment.

    .venv/bin/python bench/matcher.py
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from moderation.matcher import Rule, TermMatcher
from moderation.normalize import match_form_mapped

COMMENT_CHARS = 100
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
# Common CJK ideographs, enough for varied two- and three-character terms.
CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
)
# Terms' CJK characters start with one of these, which chatter never uses,
# so a comment holds a CJK term only when one is put in.
TERM_CJK = "傻逼操妈死滚蛋屎尿屁贱婊狗猪蠢笨"
EMOJI = "😂👍🔥❤️🎉😭🙏✨"
# Chatter: common English words, so terms (random syllables) rarely occur by chance.
_CHATTER_TEXT = (
    "the a to and of is it you that in this so lol haha wow nice good great game play win lose team "
    "what why how when where who yes no omg gg wp ez noob pro let go come on again first last chat "
    "stream love hate like new old big small fast slow right left up down best worst ever never "
    "really very much more less day night today tomorrow music song voice camera light color red "
    "blue green look see watch hear listen talk say think know want need"
)
CHATTER = _CHATTER_TEXT.split()


def word(rng: random.Random, low: int, high: int) -> str:
    length = rng.randint(low, high)
    return "".join(rng.choice(CONSONANTS if i % 2 == 0 else VOWELS) for i in range(length))


def make_terms(rng: random.Random, count: int) -> list[Rule]:
    terms: set[tuple[str, str]] = set()
    while len(terms) < count:
        roll = rng.random()
        if roll < 0.2:
            tail = "".join(rng.choice(CJK) for _ in range(rng.randint(1, 2)))
            terms.add((rng.choice(TERM_CJK) + tail, "exact"))
        elif roll < 0.25:
            w = word(rng, 4, 9)
            cut = rng.randint(1, len(w) - 2)
            terms.add((w[:cut] + "*" + w[cut + 1 :], "wildcard"))
        else:
            terms.add((word(rng, 3, 10), "exact"))
        if len(terms) == count:
            # A list of real insults, not of everyday words: drop terms that
            # catch chatter ("nob" catches "noob", "g*me" catches "game").
            probe = TermMatcher(Rule(term, kind) for term, kind in terms)
            terms -= {(m.rule.term, m.rule.kind) for w in CHATTER for m in probe.match_fast(w).matches}
    return [Rule(term, kind, rng.choice(["block", "mask", "hold"])) for term, kind in sorted(terms)]


def disguise(rng: random.Random, term: str) -> str:
    trick = rng.choice(["plain", "fullwidth", "zero-width", "leet"])
    if trick == "fullwidth":
        return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in term)
    if trick == "zero-width":
        return "\u200b".join(term)
    if trick == "leet":
        return term.replace("a", "4").replace("e", "3").replace("o", "0")
    return term


def make_comments(rng: random.Random, rules: list[Rule], count: int) -> list[str]:
    plain = [r.term for r in rules if r.kind == "exact"]
    comments = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < COMMENT_CHARS:
            roll = rng.random()
            if roll < 0.3:
                parts.append("".join(rng.choice(CJK) for _ in range(rng.randint(2, 8))))
            elif roll < 0.35:
                parts.append(rng.choice(EMOJI))
            elif roll < 0.38:
                parts.append(rng.choice(string.punctuation) * rng.randint(1, 3))
            else:
                parts.append(rng.choice(CHATTER))
        if rng.random() < 0.1:
            parts.insert(rng.randrange(len(parts)), disguise(rng, rng.choice(plain)))
        comments.append(" ".join(parts)[:COMMENT_CHARS])
    return comments


def per_comment_us(fn, comments: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for text in comments:
            fn(text)
        runs.append((time.perf_counter() - started) / len(comments) * 1e6)
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    rules = make_terms(rng, 10_000)
    comments = make_comments(rng, rules, args.comments)
    python = sys.version.split()[0]
    print(f"{len(comments)} comments of {COMMENT_CHARS} characters, best of {args.repeat} runs, Python {python}")

    for text in comments:  # warm the normalizer's per-character caches
        match_form_mapped(text)
    baseline = per_comment_us(match_form_mapped, comments, args.repeat)
    print(f"normalize alone:                 {baseline:7.1f} us/comment")

    for count in (1_000, 10_000):
        chosen = rules if count == len(rules) else random.Random(args.seed).sample(rules, count)
        started = time.perf_counter()
        matcher = TermMatcher(chosen)
        built_ms = (time.perf_counter() - started) * 1000
        hits = sum(bool(matcher.match_fast(text)) for text in comments)
        total = per_comment_us(matcher.match_fast, comments, args.repeat)
        print(
            f"normalize + match, {count:>6,} terms: {total:7.1f} us/comment"
            f"  (match alone ~{total - baseline:.1f} us; built in {built_ms:.0f} ms;"
            f" {hits / len(comments):.0%} of comments hit)"
        )
    compare_wildcards(rules, comments, args.repeat)


def with_python_re(matcher: TermMatcher) -> TermMatcher:
    """The same matcher as before RE2: wildcard patterns on Python's re, run
    whenever the gate fragment is found (no check that every fragment is).

    RE2's escaping is a subset of what re reads, so the pattern text is the same.
    """
    old = TermMatcher([])
    old.__dict__.update(matcher.__dict__)
    old._wildcards = {index: ((), False, re.compile(p.pattern)) for index, (_, _, p) in matcher._wildcards.items()}
    return old


def cpu_ms(fn, text: str, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        fn(text)
        runs.append(time.process_time() - started)
    return min(runs) * 1000


def compare_wildcards(rules: list[Rule], comments: list[str], repeat: int) -> None:
    wildcards = [r for r in rules if r.kind == "wildcard"]
    new = TermMatcher(rules)
    old = with_python_re(new)
    re_us = per_comment_us(old.match_fast, comments, repeat)
    re2_us = per_comment_us(new.match_fast, comments, repeat)
    print(
        f"normalize + match, {len(rules):>6,} terms ({len(wildcards)} wildcards):"
        f" wildcards on re {re_us:7.1f} us/comment, on RE2 {re2_us:7.1f} us/comment"
    )
    adversarial = TermMatcher([Rule("a*a*a*a*a*a*z", "wildcard")])
    slow = with_python_re(adversarial)
    print('"a*a*a*a*a*a*z" on "z" + n - 1 "a", CPU ms (best of 3): n     re    RE2')
    for n in (12, 16, 20, 22, 100, 500):
        # The "z" lets every fragment be found, so both engines run.
        text = "z" + "a" * (n - 1)
        before = f"{cpu_ms(slow.match_fast, text, 3):6.1f}" if n <= 22 else "     -"
        print(f"{'':49}{n:4} {before} {cpu_ms(adversarial.match_fast, text, 3):6.2f}")


if __name__ == "__main__":
    main()
