"""Send timelines: when each email of a sequence goes out, relative to its start."""
from __future__ import annotations

from typing import Any, Callable, FrozenSet, Hashable, List, Optional, Set, Tuple

from ..model import Funnel, Sequence, format_duration
from .conditions import exclusive, guard_terms


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


Pairs = Set[FrozenSet[Any]]


def exclusive_pairs(funnel: Funnel, seq: Sequence, tag: Optional[Hashable] = None) -> Pairs:
    """Pairs of sending steps (by index, or `(tag, index)` when a tag is given) whose
    conditions exclude each other (`when: X` and `unless: X`, `when: X` and `when: not X`):
    at most one of them sends."""
    guarded = [(s.index, guard_terms(s.when.tree if s.when else None, s.unless.tree if s.unless else None, funnel))
               for s in seq.steps if s.send and (s.when is not None or s.unless is not None)]
    key: Callable[[int], Any] = (lambda i: i) if tag is None else (lambda i: (tag, i))
    out: Pairs = set()
    for n, (i, a) in enumerate(guarded):
        for j, b in guarded[n + 1:]:
            if exclusive(a, b, funnel):
                out.add(frozenset((key(i), key(j))))
    return out


def _most_together(keys: List[Any], apart: Pairs) -> int:
    """The most of `keys` that can all send: no two of them an exclusive pair."""
    if not apart:
        return len(keys)
    best = 0

    def grow(chosen: List[Any], rest: List[Any]) -> None:
        nonlocal best
        if len(chosen) + len(rest) <= best:
            return
        if not rest:
            best = len(chosen)
            return
        head, tail = rest[0], rest[1:]
        if all(frozenset((head, c)) not in apart for c in chosen):
            grow(chosen + [head], tail)
        grow(chosen, tail)

    grow([], keys)
    return best


def first_over(times: List[Tuple[int, Any]], per: int, limit: int,
               apart: Optional[Pairs] = None) -> Optional[Tuple[int, int, Any]]:
    """(count, window start, the step that breaks the cap) or None. Steps in an `apart`
    pair never both send, so a window counts the most of its steps that can send together."""
    ordered = sorted(times, key=lambda x: x[0])
    j = 0
    for i, (t, step) in enumerate(ordered):
        while ordered[j][0] <= t - per:
            j += 1
        count = _most_together([k for _, k in ordered[j:i + 1]], apart or set())
        if count > limit:
            return count, ordered[j][0], step
    return None


def cap_window(funnel: Funnel, document: Any) -> str:
    """The cap's window as the definition writes it (`7d`, not `1w`)."""
    cap = funnel.policies.frequency_cap
    assert cap is not None
    try:
        node: Any = document.data
        for part in cap.path + ("per",):
            node = node[part]
        if isinstance(node, str) and node.strip():
            return node.strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return format_duration(cap.per_minutes)
