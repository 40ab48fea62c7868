"""The lead score's rules, in one place the engine core and the simulator share.

* A score is a float that decays by a factor once per period boundary crossed
  (`clock.periods_between`: local midnights for daily decay, local Mondays for weekly,
  in the sender's timezone).
* Wherever a score is read (conditions, thresholds, reports) it is the score rounded to
  `DECIMALS` places, so `39.99999999997` from repeated decay compares equal to 40 and no
  figure depends on how floating-point rounding fell. `meets(score, threshold)` is that
  rule for a threshold.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from . import clock

DECIMALS = 6


def shown(score: float) -> float:
    """The score as conditions and reports read it."""
    return round(score, DECIMALS)


def meets(score: float, threshold: float) -> bool:
    """Whether a score reaches a threshold (`score >= thresholds.x`)."""
    return shown(score) >= threshold


def decayed(score: float, factor: float, every: int, start: int, end: int, tz: str) -> float:
    """A score brought from minute `start` to minute `end`."""
    if every <= 0 or factor == 1.0:
        return score
    n = clock.periods_between(start, end, every, tz)
    return score * factor ** n if n else score


def windowed(points: Iterable[Tuple[int, float]], factor: float, every: int, window: int, now: int,
             tz: str) -> Tuple[float, List[Tuple[int, float]]]:
    """The score from the points earned inside the window, each decayed from when it was
    earned; and the points still inside it."""
    kept = [(t, n) for t, n in points if t > now - window]
    if every <= 0 or factor == 1.0:
        return sum(n for _, n in kept), kept
    # Points earned in the same period decay alike: sum them first, then decay each sum.
    by_period: Dict[int, float] = {}
    for t, n in kept:
        period = clock.wall(t, tz) // every
        by_period[period] = by_period.get(period, 0.0) + n
    current = clock.wall(now, tz) // every
    total = 0.0
    for period in sorted(by_period):
        total += by_period[period] * factor ** max(0, current - period)
    return total, kept
