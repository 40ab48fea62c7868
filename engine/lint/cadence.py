"""Send timelines: when each email of a sequence goes out, relative to its start."""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..model import Funnel, Sequence


def send_times(seq: Sequence) -> List[Tuple[int, int]]:
    """(minutes after the sequence starts, step index) for every sending step, assuming
    every conditional step sends (the worst case for frequency)."""
    t = 0
    out = []
    for step in seq.steps:
        t += step.wait_minutes
        if step.send:
            out.append((t, step.index))
    return out


def worst_window(times: List[int], per: int) -> Tuple[int, int]:
    """(most sends in any window [t, t+per), start of that window)."""
    times = sorted(times)
    best, start = 0, 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - per:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, times[j]
    return best, start


def capped(funnel: Funnel, seq: Sequence) -> bool:
    cap = funnel.policies.frequency_cap
    # A zero-length window (`per: 0d`) caps nothing; the runtime ignores it too.
    return cap is not None and cap.per_minutes > 0 and (not cap.applies_to or seq.kind in cap.applies_to)


def days(minutes: int) -> str:
    d, rem = divmod(minutes, 1440)
    return f"day {d}" if not rem else f"day {d} +{rem // 60}h{rem % 60:02d}"


def first_over(times: List[Tuple[int, int]], per: int, limit: int) -> Optional[Tuple[int, int, int]]:
    """(count, window start, index of the step that breaks the cap) or None."""
    ordered = sorted(times)
    j = 0
    for i, (t, step) in enumerate(ordered):
        while ordered[j][0] <= t - per:
            j += 1
        if i - j + 1 > limit:
            return i - j + 1, ordered[j][0], step
    return None
