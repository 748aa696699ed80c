"""Issue 15's acceptance (delivery control) read off a crowd run's timeline:
the node held its poll budget (answers busy, next_ms stretched) and let go
once the crowd shrank; it held its egress budget by cutting comments, said
so in ``missed`` and never left an answer empty; its viewers estimate stayed
near the viewers really polling.

Everything is per whole second as the crowd received it (Figures.seconds).
"""

from __future__ import annotations

import math

from bench.crowdbench.report import Check, Figures

# The controller measures over a window and the crowd's polls spread out
# first (crowd variants, a few poll intervals): judged from this second on.
SETTLED_SECONDS = 10.0
# The viewers estimate counts a viewer by its polls, one stretched interval
# (up to ~12 s when busy) after it joined or left: judged this long after.
ESTIMATE_SETTLED_SECONDS = 15.0
# After viewers left: a leaver counts until its last interval is over (up to
# ~15 s in a stretched room: its crowd variants spread to nearly twice the
# stretched interval), and answers show the tally of the 5 s window before.
ESTIMATE_SETTLED_AFTER_LEAVE_SECONDS = 25.0
ESTIMATE_TOLERANCE = 0.15
# Polls per second: never above 1.1x the budget, within +/-10 % of it while
# the crowd would poll more.
BUDGET_CEILING = 1.10
BUDGET_TOLERANCE = 0.10
# A rate is judged over this many seconds in a row (as a rate gauge shows
# it): a crowd lumps from one second to the next whatever the server does
# (by 1/sqrt(N) at N polls a second if every viewer went its own way; the
# viewers sharing one answer move in seven groups: about 5 % at 1,000/s).
# The per-second figures are shown too.
RATE_SECONDS = 5
BUSY_SHARE = 0.95
# After the crowd shrank below the budget: back to normal within this long.
RECOVERY_SECONDS = 15.0
# Back to normal: (nearly) every answer says normal, and the median next_ms
# is the room's 3 s with at most its +10 % jitter. An answer's crowd
# variants spread next_ms evenly over +/-25 % around that (CROWD_VARIANTS in
# danmaku.pull.cache, handed out in turn), so the median of a second's
# answers is the jittered interval itself, whatever the spread.
NORMAL_SHARE = 0.99
NORMAL_NEXT_MS_P50 = 3300
EGRESS_TOLERANCE = 0.10
# The egress cut follows the bytes it measures, damped (they show a cut an
# interval later): judged once it had a few intervals to settle.
EGRESS_SETTLED_SECONDS = 20.0


def _window(f: Figures, start: float, end: float = math.inf) -> list[dict]:
    return [s for s in f.seconds if start <= s["second"] < end and s["second"] < f.duration_seconds]


def _leave(f: Figures) -> float:
    # The second the viewers left in belongs to the time after.
    return math.floor(f.leave_at_seconds) if f.left else math.inf


def _worst(seconds: list[dict], key: str, target: float) -> tuple[float, int]:
    """The largest relative distance of ``key`` from ``target``, and its second."""
    worst = max(seconds, key=lambda s: abs(s[key] - target), default=None)
    if worst is None:
        return math.nan, -1
    return abs(worst[key] - target) / target, worst["second"]


def _means(seconds: list[dict], key: str, width: int = RATE_SECONDS) -> list[float]:
    """``key`` over every ``width`` seconds in a row: the rate as a gauge
    over that window shows it, apart from the crowd's second-to-second lumps."""
    return [sum(s[key] for s in seconds[at : at + width]) / width for at in range(max(0, len(seconds) - width + 1))]


def _worst_mean(seconds: list[dict], key: str, target: float, width: int = RATE_SECONDS) -> float:
    """As ``_worst`` over the means of ``width`` seconds in a row."""
    return max((abs(mean - target) / target for mean in _means(seconds, key, width)), default=math.nan)


def _share(seconds: list[dict], key: str) -> float:
    answers = sum(s["answers"] for s in seconds)
    return sum(s[key] * s["answers"] for s in seconds if s["answers"]) / answers if answers else math.nan


def budget_checks(f: Figures) -> list[Check]:
    budget, leave = f.poll_budget, _leave(f)
    after = _window(f, SETTLED_SECONDS)
    over = _window(f, SETTLED_SECONDS, leave)
    top = max(after, key=lambda s: s["polls"], default={"polls": math.nan, "second": -1})
    top_rate = max(_means(after, "polls"), default=math.nan)
    off, off_at = _worst(over, "polls", budget)
    off_rate = _worst_mean(over, "polls", budget)
    busy = _share(over, "busy_share")
    found = [
        Check(
            f"polls/s ({RATE_SECONDS} s rate) from {SETTLED_SECONDS:.0f} s on ≤ {BUDGET_CEILING}x the budget",
            top_rate <= BUDGET_CEILING * budget,
            f"highest {top_rate:,.0f}/s ≤ {BUDGET_CEILING * budget:,.0f}/s (single seconds: up to {top['polls']:,}"
            f" at {top['second']} s)",
        ),
        Check(
            f"polls/s ({RATE_SECONDS} s rate) within ±{BUDGET_TOLERANCE:.0%} of the budget from"
            f" {SETTLED_SECONDS:.0f} s to {min(leave, f.duration_seconds):.0f} s",
            off_rate <= BUDGET_TOLERANCE,
            f"worst {off_rate:.1%} off; single seconds: worst {off:.1%} off at {off_at} s"
            f" ({next((s['polls'] for s in over if s['second'] == off_at), 0):,}/s against {budget:,.0f}/s)",
        ),
        Check(
            "answers say busy while the crowd is over the budget",
            busy >= BUSY_SHARE,
            f"{busy:.1%} ≥ {BUSY_SHARE:.0%}",
        ),
    ]
    if f.left:
        found.append(_recovery(f, leave))
    return found


def _recovery(f: Figures, leave: float) -> Check:
    """The first second after the leave from which every second is normal."""
    after = _window(f, leave)
    back_at = None
    for s in reversed(after):
        if not s["answers"] or s["normal_share"] < NORMAL_SHARE or s["next_ms_p50"] > NORMAL_NEXT_MS_P50:
            break
        back_at = s["second"]
    name = (
        f"back to normal (≥ {NORMAL_SHARE:.0%} normal, median next_ms ≤ {NORMAL_NEXT_MS_P50} ms)"
        f" within {RECOVERY_SECONDS:.0f} s of the leave"
    )
    if back_at is None:
        last = after[-1] if after else {"normal_share": math.nan, "next_ms_p50": math.nan}
        return Check(
            name,
            False,
            f"not by the end (last second: {last['normal_share']:.1%} normal, median {last['next_ms_p50']} ms)",
        )
    late = back_at - leave
    tail = _window(f, back_at)
    return Check(
        name,
        late <= RECOVERY_SECONDS,
        f"from {back_at} s, {late:.1f} s after the leave; then ≥ {min(s['normal_share'] for s in tail):.1%}"
        f" normal, median next_ms ≤ {max(s['next_ms_p50'] for s in tail):,.0f} ms",
    )


def egress_checks(f: Figures) -> list[Check]:
    budget = f.egress_budget
    after = _window(f, EGRESS_SETTLED_SECONDS)
    off, off_at = _worst(after, "bytes", budget)
    mean = sum(s["bytes"] for s in after) / max(len(after), 1)
    smoothed = _worst_mean(after, "bytes", budget)
    answers = sum(s["answers"] for s in after)
    cut = sum(s["missed_mean"] * s["answers"] for s in after if s["answers"])
    empty = sum(s["empty"] for s in after)
    return [
        Check(
            f"bytes/s ({RATE_SECONDS} s rate) within ±{EGRESS_TOLERANCE:.0%} of the budget from"
            f" {EGRESS_SETTLED_SECONDS:.0f} s on",
            smoothed <= EGRESS_TOLERANCE,
            f"worst {smoothed:.1%} off (single seconds: worst {off:.1%} off at {off_at} s); mean {mean:,.0f} B/s"
            f" against {budget:,.0f} B/s",
        ),
        Check(
            "answers report the cut (missed > 0)",
            cut > 0,
            f"{cut:,.0f} comments left out over {answers:,} answers = {cut / max(answers, 1):.2f} per answer",
        ),
        Check(
            f"no empty answer from {SETTLED_SECONDS:.0f} s on (the room had {f.send_rate:g} comments/s)",
            empty == 0,
            f"{empty:,} of {answers:,}",
        ),
    ]


def estimate_phases(f: Figures) -> list[tuple[str, list[dict]]]:
    leave, settled = _leave(f), ESTIMATE_SETTLED_SECONDS
    phases = [(f"from {settled:.0f} s" + (" to the leave" if f.left else ""), _window(f, settled, leave))]
    if f.left:
        after = ESTIMATE_SETTLED_AFTER_LEAVE_SECONDS
        phases.append((f"from {after:.0f} s after the leave", _window(f, leave + after)))
    return phases


def _ratios(seconds: list[dict]) -> list[tuple[float, int]]:
    return [
        (s["viewers_estimate"] / s["viewers_true"], s["second"])
        for s in seconds
        if s["answers"] and s["viewers_true"] and not math.isnan(s["viewers_estimate"])
    ]


def estimate_checks(f: Figures) -> list[Check]:
    """The answers' ``viewers`` against the viewers really polling. Judged
    in the control scenarios always, elsewhere when the node sent one."""
    told = any(s["answers"] and s["viewers_estimate"] > 0 for s in f.seconds)
    if not told and f.scenario not in ("budget", "egress"):
        return []
    found = []
    for phase, seconds in estimate_phases(f):
        ratios = _ratios(seconds)
        if not ratios:
            continue
        worst, at = max(ratios, key=lambda pair: abs(pair[0] - 1))
        middle = sorted(ratio for ratio, _ in ratios)[len(ratios) // 2]
        true = sorted(s["viewers_true"] for s in seconds)
        found.append(
            Check(
                f"viewers estimate within ±{ESTIMATE_TOLERANCE:.0%} of the viewers polling, {phase}",
                abs(worst - 1) <= ESTIMATE_TOLERANCE,
                f"estimate / true: median {middle:.3f}, worst {worst:.3f} at {at} s"
                f" ({true[0]:,} to {true[-1]:,} viewers polling)",
            )
        )
    return found


def checks(f: Figures) -> list[Check]:
    """Issue 15's acceptance for the scenario that ran (the viewers estimate in every one)."""
    found = []
    if f.scenario == "budget":
        found += budget_checks(f)
    elif f.scenario == "egress":
        found += egress_checks(f)
    return found + estimate_checks(f)


def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_timeline(f: Figures, every: int = 5) -> None:
    """Every ``every``-th second: what the crowd received and the node's gauges."""
    print(
        "   s  polls/s   bytes/s  busy%  next_ms50  missed/ans  items/ans  est/true        "
        "node: polls/s  bytes/s  mult  | room: cap  viewers"
    )
    for s in f.seconds[::every]:
        gauges = s["gauges"]
        print(
            f"{s['second']:4} {s['polls']:8,} {s['bytes']:9,} {_fmt(s['busy_share'] * 100, '5.1f'):>6}"
            f" {_fmt(s['next_ms_p50'], ',.0f'):>10} {_fmt(s['missed_mean'], '.2f'):>11}"
            f" {_fmt(s['items_mean'], '.1f'):>10} {_fmt(s['viewers_estimate'], ',.0f'):>7}/{s['viewers_true']:<7,}"
            f" {_fmt(gauges.get('danmaku_node_polls_per_second'), ',.0f'):>13}"
            f" {_fmt(gauges.get('danmaku_node_egress_bytes_per_second'), ',.0f'):>8}"
            f" {_fmt(gauges.get('danmaku_node_poll_multiplier'), '.2f'):>5}"
            f"  | {_fmt(gauges.get('danmaku_room_display_cap'), ',.0f'):>8}"
            f" {_fmt(gauges.get('danmaku_room_viewers'), ',.0f'):>8}"
        )
