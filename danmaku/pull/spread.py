"""How the next_ms of one shared answer is spread over a crowd.

Pure (no Django). Everyone asking a room the same question in the same
second shares one answer, so a crowd that arrived together would come back
together forever. An answer pulled often is therefore kept in
CROWD_VARIANTS forms differing only in next_ms, handed out in turn
(``danmaku.pull.cache.SharedAnswer``); this module says what each form asks
for.

- Normal and quiet rooms: evenly over +/- CROWD_SPREAD of the interval.
- Stretched rooms ("busy"): a viewer already waiting the stretched interval
  gets it spread evenly over (1 - w, 1 + w) of it, w = (m - 1) / m up to
  BUSY_SPREAD: the crowd keeps mixing, the mean stays the interval.
- A viewer arriving from an unstretched interval (the crowd a storm brought,
  back after its normal interval before the controller could count it) gets
  its first stretched wait from the *equilibrium* distribution of those
  waits, after a delay: the forward-recurrence law of renewal theory, with
  which a renewal process polls at its long-run rate from its first return
  on. Given the plain spread instead, the storm's returns overlapped with
  their own second round: a 9,000-viewer storm held to 1,000 polls/s came
  back at 858-1,201 polls/s over 5 s, 976-1,013 with the equilibrium law
  (tests/danmaku/pull/test_spread.py; the crowd bench: 1,116 at worst, then
  1,070). The delay makes the arriving wait's mean the stretched interval
  itself, so a viewer taken for an arriving one by mistake (the cursor's age
  is all that tells them apart) polls no more or less often than it should.
  A fixed delay of the longest unstretched wait instead sent every viewer of
  a room stretched by 5 % away for 5-9 s instead of 3 s, and the egress
  budget's small stretches made the node's bytes swing by 16 %.
"""

from __future__ import annotations

import math

# +/- this share of next_ms, drawn from the answer's identity, so crowds
# of different seconds drift apart.
JITTER_SHARE = 0.1
CROWD_VARIANTS = 7
CROWD_SPREAD = 0.25
# An answer pulled fewer than this many times in a room that was not
# crowded a moment ago has one form only (a quiet room, a handful of
# viewers: no variants built for them).
CROWD_STEP = 16
# The widest spread of a stretched room's variants.
BUSY_SPREAD = 0.5

_HALF = (CROWD_VARIANTS - 1) // 2


def variant_rank(index: int) -> int:
    """Variant ``index``'s place from the shortest wait (0) to the longest:
    the first is the middle one, the others in pairs outwards, the nearest
    first (CROWD_VARIANTS is odd)."""
    step = (index + 1) // 2
    return _HALF - step if index % 2 else _HALF + step


def variant_factor(index: int) -> float:
    """next_ms's factor for variant ``index`` in a room not stretched."""
    return 1 + CROWD_SPREAD * (variant_rank(index) - _HALF) / _HALF


def unstretched_ceiling_ms(interval_ms: float) -> float:
    """The longest wait a viewer of a room not stretched is given, plus the
    second a cursor can lag: a viewer whose cursor is younger than this is
    taken for one arriving from an unstretched interval."""
    return interval_ms * (1 + CROWD_SPREAD) * (1 + JITTER_SHARE) + 1000


def stretched_ms(index: int, interval_ms: float, multiplier: float, shift: float, *, arriving: bool) -> float:
    """Variant ``index``'s wait in a room stretched ``multiplier`` times,
    before jitter. ``shift`` (0..1, from the answer's identity) moves the
    variants by a fraction of their spacing, so each second's answer puts
    them elsewhere and cohorts fill the gaps between each other's.
    ``arriving``: the viewers come from an unstretched interval."""
    mean = interval_ms * multiplier
    spread = max(CROWD_SPREAD, min((multiplier - 1) / multiplier, BUSY_SPREAD))
    quantile = (variant_rank(index) + shift) / CROWD_VARIANTS
    if arriving:
        return arriving_delay(mean, spread) + equilibrium_quantile(quantile, mean, spread)
    return mean * (1 + spread * (2 * quantile - 1))


def arriving_delay(mean: float, spread: float) -> float:
    """The delay before an arriving viewer's equilibrium wait that makes its
    mean ``mean``: the equilibrium law's own mean is E[X^2] / (2 E[X]) =
    mean * (1 + spread^2 / 3) / 2 for waits uniform over mean * (1 -/+ spread)."""
    return mean * (1 - spread * spread / 3) / 2


def equilibrium_quantile(quantile: float, mean: float, spread: float) -> float:
    """The ``quantile`` of the forward-recurrence (equilibrium) law of waits
    uniform over mean * (1 -/+ spread): density (1 - F(x)) / mean, flat up to
    the shortest wait, then falling linearly to 0 at the longest."""
    low = mean * (1 - spread)
    width = 2 * spread * mean
    target = quantile * mean
    if target <= low:
        return target
    # Solve low + y - y^2 / (2 width) = target for y in [0, width].
    beyond = target - low
    return low + width * (1 - math.sqrt(max(0.0, 1 - 2 * beyond / width)))


def jitter(next_ms: float, fraction: float) -> int:
    """``next_ms`` moved by up to JITTER_SHARE either way (``fraction`` 0..1)."""
    return max(100, int(next_ms * (1 + JITTER_SHARE * (2 * fraction - 1))))
