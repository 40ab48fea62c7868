"""What a lead can score: a hard bound where one exists, else a realistic estimate.

Email engagement is bounded by the emails a lead can be sent (the sequences' cadence
and the frequency cap), and each email scores once per kind unless
`scoring.count_repeats`. Repeatable events (site visits, webinars, CRM events) have no
bound but time, so the estimate assumes a realistic rate, and decay (or its `window`)
bounds how much of them adds up. The realistic lead:

* opens, clicks and replies to every email the day it arrives (with `count_repeats`,
  `REPEATS` times each);
* visits the site twice a week (days 0, 3, 7, 10, ...) and does each other scored
  repeatable event (a webinar, a CRM event) once a month, from day 0 of the window, each
  time at the best points the event has (the pricing page's, say);
* downloads every lead magnet once and gets every positive fit rule's points;
* over the first `REALISTIC_DAYS` days (longer when a sequence runs longer, at most
  `MAX_DAYS`), all sequences that can mail it starting on day 0 (in one segment and
  persona at a time).

Without repeatable events and without decay, the estimate is a hard bound instead: every
email of every sequence (a profile update can move a lead to another segment's track),
whenever it is sent, and nothing else.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .. import expr
from ..model import Funnel, Sequence
from .cadence import capped
from .refs import split_event

if TYPE_CHECKING:
    from .context import Context

REALISTIC_DAYS = 30
MAX_DAYS = 365
REPEATS = 3
VISIT_EVERY = 3.5  # days: a keen lead visits the site twice a week
OTHER_EVERY = 30.0  # days: and attends a webinar, or meets a CRM event, once a month
MAX_GROUPS = 64  # segment and persona combinations estimated one by one
SITE_VISIT = "site.visited"
ENGAGEMENT = ("email.opened", "email.clicked", "email.replied")
_KIND_WORD = {"email.opened": "open", "email.clicked": "click", "email.replied": "reply"}


@dataclass(frozen=True)
class Decay:
    """Decay as the estimate applies it: a factor per day and an optional window."""

    per_day: float
    window_days: Optional[int]
    words: str  # "a 30d half-life", "×0.98 every 1d"


@dataclass(frozen=True)
class Estimate:
    points: float
    days: int
    exact: bool  # a hard bound: no repeatable events and no decay, so no assumption
    story: str  # how the figure was reached, in words

    @property
    def shown(self) -> str:
        return str(int(math.floor(self.points + 1e-9)))


def funnel_decay(funnel: Funnel) -> Optional[Decay]:
    d = funnel.scoring.decay
    if d is None:
        return None
    per_day = d.factor ** (1440 / d.every_minutes) if d.every_minutes > 0 else 1.0
    window = math.ceil(d.window_minutes / 1440) if d.window_minutes else None
    raw = funnel.document.data.get("scoring", {}).get("decay", {})
    if d.half_life_minutes is not None:
        words = f"a {raw.get('half_life') or _duration(d.half_life_minutes)} half-life"
    elif d.factor < 1:
        words = f"×{d.factor:g} every {raw.get('every') or _duration(d.every_minutes)}"
    else:
        words = ""
    if window:
        words = (words + ", " if words else "") + f"points older than {window}d dropped"
    if per_day >= 1 and not window:
        return None
    return Decay(per_day, window, words)


def half_life_decay(minutes: int, window_days: Optional[int], words: str) -> Decay:
    return Decay(0.5 ** (1440 / minutes), window_days, words)


def _duration(minutes: int) -> str:
    for unit, size in (("w", 10080), ("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def threshold_users(funnel: Funnel, name: str) -> Tuple[bool, Set[str]]:
    """(whether some condition asks `score >= thresholds.<name>` or `score >`, the
    stages transitions asking it start from)."""
    asked = False
    sources: Set[str] = set()
    conditions = [t.when for t in funnel.transitions if t.when]
    for seq in funnel.sequences:
        conditions.extend(c for c in (seq.when, seq.exit.when if seq.exit else None) if c)
        for step in seq.steps:
            conditions.extend(c for c in (step.when, step.unless) if c)
    for cond in conditions:
        if _reaches(cond.tree, name):
            asked = True
            for t in funnel.transitions:
                if t.when is cond:
                    sources.update(t.sources)
    return asked, sources


def _reaches(tree: expr.Node, name: str) -> bool:
    """Whether the tree holds `score >= thresholds.name` (or `>`, either way round)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, expr.Binary):
            if node.op in (">=", ">", "<=", "<"):
                score, limit = (node.left, node.right) if node.op in (">=", ">") else (node.right, node.left)
                if isinstance(score, expr.Name) and score.dotted == "score" and isinstance(limit, expr.Name) \
                        and limit.parts == ("thresholds", name):
                    return True
            stack.extend((node.left, node.right))
        elif isinstance(node, expr.Unary):
            stack.append(node.operand)
    return False


def counting_sequences(funnel: Funnel, sources: Set[str]) -> List[Sequence]:
    """Sequences that can mail a lead before it is in one of `sources`, or while it is
    (all of them when `sources` is empty)."""
    if not sources:
        return list(funnel.sequences)
    before = set(sources)
    frontier = list(sources)
    while frontier:
        stage = frontier.pop()
        for t in funnel.transitions:
            if t.to == stage:
                for s in t.sources:
                    if s not in before:
                        before.add(s)
                        frontier.append(s)
    return [s for s in funnel.sequences if not s.stages or set(s.stages) & before]


def _points(funnel: Funnel, kind: str, detail: str) -> int:
    """The points of one event, as the engine gives them: the narrowest entry wins."""
    table = dict(funnel.scoring.events)
    if detail and f"{kind}.{detail}" in table:
        return table[f"{kind}.{detail}"]
    return table.get(kind, 0)


def _email_points(funnel: Funnel, templates: Iterable[str], repeats: int) -> Dict[str, Dict[str, int]]:
    """Template -> engagement kind -> the points the realistic lead earns for it."""
    table = dict(funnel.scoring.events)
    out: Dict[str, Dict[str, int]] = {}
    for template in set(templates):
        out[template] = {kind: max(table.get(f"{kind}.{template}", table.get(kind, 0)), 0) * repeats
                         for kind in ENGAGEMENT}
    return out


def repeatable(funnel: Funnel) -> List[Tuple[str, int, float]]:
    """(event, best points, every how many days the realistic lead does it) for every
    scored event a lead can repeat at will."""
    best: Dict[str, int] = {}
    for event, points in funnel.scoring.events:
        base, _detail = split_event(event)
        if base.startswith("email.") or base == "magnet.downloaded" or points <= 0:
            continue
        best[base] = max(best.get(base, 0), points)
    return [(base, p, VISIT_EVERY if base == SITE_VISIT else OTHER_EVERY) for base, p in sorted(best.items())]


def _days(every: float, days: int) -> Iterator[int]:
    """The days of the window on which the realistic lead does something every `every` days."""
    k = 0
    while int(k * every) < days:
        yield int(k * every)
        k += 1


def _sends(funnel: Funnel, seqs: Iterable[Sequence]) -> List[Tuple[int, str]]:
    """(day, template) of every email of these sequences, all started on day 0, with
    the frequency cap holding capped ones back as the engine does."""
    raw: List[Tuple[int, bool, str]] = []
    for seq in seqs:
        t = 0
        for step in seq.steps:
            t += step.wait_minutes
            if step.send:
                raw.append((t, capped(funnel, seq), step.send))
    raw.sort(key=lambda r: (r[0], r[2]))
    cap = funnel.policies.frequency_cap
    sent: List[int] = []  # sorted times of capped sends
    out = []
    for t, is_capped, template in raw:
        if is_capped and cap is not None and cap.max > 0:
            while True:
                lo, hi = bisect.bisect_right(sent, t - cap.per_minutes), bisect.bisect_right(sent, t)
                if hi - lo < cap.max:
                    break
                t = sent[hi - cap.max] + cap.per_minutes
            bisect.insort(sent, t)
        out.append((t // 1440, template))
    return sorted(out)


def _groups(seqs: List[Sequence]) -> List[List[Sequence]]:
    """The sets of sequences one lead can be in: one segment and one persona at a time."""
    segments: List[Optional[str]] = [*sorted({s.segment for s in seqs if s.segment})] or [None]
    personas: List[Optional[str]] = [*sorted({s.persona for s in seqs if s.persona})] or [None]
    if len(segments) * len(personas) > MAX_GROUPS:
        return [seqs]  # every sequence at once: a looser estimate, never a tighter one
    out: List[List[Sequence]] = []
    for seg in segments:
        for per in personas:
            group = [s for s in seqs if s.segment in (None, seg) and s.persona in (None, per)]
            if group not in out:
                out.append(group)
    return out


def estimate(funnel: Funnel, seqs: List[Sequence], decay: Optional[Decay]) -> Estimate:
    """The most the realistic lead (module docstring) scores, and how."""
    per_email = {k: 0 for k in ENGAGEMENT}
    repeats = REPEATS if funnel.scoring.count_repeats else 1
    events = repeatable(funnel)
    magnets = sum(max(m.score, 0) + max(_points(funnel, "magnet.downloaded", m.name), 0)
                  for m in funnel.lead_magnets)
    fit = sum(max(r.points, 0) for r in funnel.scoring.fit)
    exact = not events and decay is None and repeats == 1
    best: Tuple[float, int, int, Dict[str, int]] = (-1.0, 0, 0, per_email)
    deliveries = [(0, m.delivers) for m in funnel.lead_magnets if m.delivers]
    # A lead is in one segment and one persona at a time; a hard bound cannot assume it
    # stays there (a profile update moves it, and the new segment's sequences start).
    for group in (_groups(seqs) if not exact else [seqs]):
        sends = _sends(funnel, group) + deliveries
        worth = _email_points(funnel, (t for _, t in sends), repeats)
        kinds = {k: max((worth[t][k] for _, t in sends), default=0) for k in ENGAGEMENT}
        last = max((d for d, _ in sends), default=0)
        if exact:  # every email, whenever it is sent: nothing fades
            peak, days = float(sum(sum(worth[t].values()) for _, t in sends)), last + 1
        else:
            days = min(max(REALISTIC_DAYS, last + 1), MAX_DAYS)
            earned = [0.0] * days
            for day, template in sends:
                if day < days:
                    earned[day] += sum(worth[template].values())
            for _event, points, every in events:
                for day in _days(every, days):
                    earned[day] += points
            peak = _peak(earned, decay)
        if peak > best[0]:
            best = (peak, days, sum(1 for d, _ in sends if d < days), kinds)
    peak, days, emails, kinds = best
    return Estimate(peak + magnets + fit, days, exact,
                    _story(emails, kinds, repeats, events, magnets, fit, decay))


def _peak(earned: List[float], decay: Optional[Decay]) -> float:
    if decay is None:
        return sum(earned)
    f = decay.per_day
    w = decay.window_days
    score = peak = 0.0
    for day, points in enumerate(earned):
        score = score * f + points
        if w is not None and day - w >= 0:
            score -= earned[day - w] * f ** w
        peak = max(peak, score)
    return peak


def _story(emails: int, kinds: Dict[str, int], repeats: int, events: List[Tuple[str, int, float]], magnets: int,
           fit: int, decay: Optional[Decay]) -> str:
    parts = []
    scored = [f"{p} {_KIND_WORD[k]}" for k, p in kinds.items() if p]
    if emails and scored:
        each = f" ({' + '.join(scored)})" if len(scored) > 1 else f" ({scored[0]})"
        parts.append(f"{emails} email{'s' if emails != 1 else ''} × {'up to ' if repeats == 1 else ''}"
                     f"{sum(kinds.values())}{each}" + (f", each counted {repeats} times" if repeats > 1 else ""))
    for event, points, every in events:
        what = "a site visit" if event == SITE_VISIT else f"one `{event}`"
        parts.append(f"{what} {'twice a week' if every == VISIT_EVERY else 'a month'} ({points} each)")
    if magnets:
        parts.append(f"{magnets} for lead magnets")
    if fit:
        parts.append(f"{fit} fit points")
    text = " + ".join(parts) if parts else "nothing scores"
    if decay is not None and decay.words:
        text += f", decaying with {decay.words}" if "half-life" in decay.words else f", decaying {decay.words}"
    return text


@dataclass(frozen=True)
class Reach:
    """A threshold a condition asks the score to reach, and what a lead can score."""

    name: str
    value: int
    estimate: Estimate
    sequences: Tuple[str, ...]


def reaches(funnel: Funnel, decay: Optional[Decay]) -> List[Reach]:
    """Every threshold some condition compares the score with (`score >= thresholds.x`),
    with what a lead can score before the moves asking it."""
    out = []
    for name, value in funnel.scoring.thresholds:
        asked, sources = threshold_users(funnel, name)
        if not asked:
            continue
        seqs = counting_sequences(funnel, sources)
        out.append(Reach(name, value, estimate(funnel, seqs, decay), tuple(s.name for s in seqs)))
    return out


@dataclass(frozen=True)
class TooFast:
    """A decay so fast that points evaporate between emails (a half-life under a
    quarter of the typical gap), where the same number in a longer unit (12h → 12d) is
    plausible; `lost` are the thresholds out of reach that the longer unit puts back."""

    key: str  # half_life | every
    written: str
    half_life_minutes: int
    gap_minutes: Optional[int]
    suggestion: str  # the duration probably meant, or "" when none is sure
    lost: Tuple[Tuple[Reach, Estimate], ...]  # (as it is, with the suggestion)

    @property
    def path(self) -> Tuple[str, ...]:
        return ("scoring", "decay", self.key)


EVAPORATES = 4  # a half-life under a quarter of the typical gap between emails
MAX_HALF_LIFE = 3650 * 1440  # ten years: no longer unit beyond it was meant
_UNITS = ("m", "h", "d", "w")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def _longer_units(written: str) -> List[Tuple[str, int]]:
    """`12h` -> [(`12d`, minutes), (`12w`, minutes)]: the same number in longer units."""
    if len(written) < 2 or not written[:-1].isdigit() or written[-1] not in _UNITS:
        return []
    n = int(written[:-1])
    return [(f"{n}{u}", n * _UNIT_MINUTES[u]) for u in _UNITS[_UNITS.index(written[-1]) + 1:]]


def _send_gaps(funnel: Funnel) -> Iterator[int]:
    """Every time between two emails of one sequence, in minutes."""
    for seq in funnel.sequences:
        t, last = 0, None
        for step in seq.steps:
            t += step.wait_minutes
            if step.send:
                if last is not None and t > last:
                    yield t - last
                last = t


def median_gap(funnel: Funnel) -> Optional[int]:
    """The typical time between two emails of one sequence, in minutes."""
    gaps = sorted(_send_gaps(funnel))
    return gaps[len(gaps) // 2] if gaps else None


def gaps_vary(funnel: Funnel) -> bool:
    return len(set(_send_gaps(funnel))) > 1


def too_fast(funnel: Funnel) -> Optional[TooFast]:
    d = funnel.scoring.decay
    decay = funnel_decay(funnel)
    if d is None or decay is None or decay.per_day >= 1:
        return None
    raw = funnel.document.data.get("scoring", {}).get("decay", {})
    if d.half_life_minutes is not None:
        key, half = "half_life", d.half_life_minutes
    else:
        key, half = "every", int(round(d.every_minutes * math.log(0.5) / math.log(d.factor)))
    written = str(raw.get(key, ""))
    gap = median_gap(funnel)
    if half <= 0:
        return None
    # Between emails: far shorter than the typical gap is the mistake itself, however
    # high or low the thresholds are. Without two emails in a row, only a decay that
    # fades within a day and puts a threshold out of reach is.
    evaporates = half * EVAPORATES < gap if gap is not None else half < 1440
    if not evaporates:
        return None
    lost = [r for r in reaches(funnel, decay) if r.estimate.points < r.value]
    if gap is None and not lost:
        return None
    window = decay.window_days
    plausible: List[Tuple[str, int, Dict[str, Reach]]] = []
    for suggestion, minutes in _longer_units(written):
        if minutes <= 0:
            break
        longer = minutes if key == "half_life" else int(round(minutes * math.log(0.5) / math.log(d.factor)))
        if longer > MAX_HALF_LIFE or (gap is not None and longer * EVAPORATES < gap):
            continue  # too long to be meant, or evaporating too
        intended = {r.name: r for r in reaches(funnel, half_life_decay(longer, window, f"a {suggestion} half-life"))}
        plausible.append((suggestion, longer, intended))
        if all(intended[r.name].estimate.points >= r.value for r in lost):
            break  # the nearest unit that puts every lost threshold back
    else:
        if gap is None or not plausible:
            return None
        suggestion, _, intended = plausible[0]  # no unit puts them back: they are FNL501's
    saved = tuple((r, intended[r.name].estimate) for r in lost if intended[r.name].estimate.points >= r.value)
    return TooFast(key, written, half, gap, suggestion, saved)


def too_fast_in(ctx: "Context") -> Optional[TooFast]:
    """`too_fast` of the funnel being linted, worked out once for the rules that ask."""
    if "too-fast" not in ctx._cache:
        ctx._cache["too-fast"] = too_fast(ctx.funnel)
    return ctx._cache["too-fast"]  # type: ignore[no-any-return]


def percent(fraction: float) -> str:
    if fraction < 0.001:
        return "almost none of"
    shown = f"{fraction * 100:.1f}".rstrip("0").rstrip(".")
    return f"{shown}% of"
