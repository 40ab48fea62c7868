"""A run's counts, kept small: what `figures` needs of a run, summed piece by piece.

A run's leads are simulated in pieces (per-lead by `run`, or a whole cohort at a time by
`vector`); each piece gives a `Tally` of what its leads did, the tallies add up (`add`)
and `settle` gives each handoff its owner, in engine order across every piece. A tally
holds counts and distributions (a value -> how many leads had it), never a record per
lead, so a run of ten million leads fits in memory, and a distribution keeps every value,
so a percentile of the sum is the percentile of the whole run.

Counting rules (stated once, for both simulators):
- A lead counts once the engine took it in (its opt-in or entry).
- Conversion A → B is over the leads that reached A: how many of them also reached B.
- Time to a stage is from the lead's arrival to its first entry, over the leads that
  entered the funnel in an earlier stage.
- Weeks are 7-day periods from the simulation's start (the last may be shorter).
- A handoff's owner is the next round-robin turn of its pool (`state.Shared`), handoffs
  taken in (minute, lead ID) order; rep load counts each lead's first handoff, to the rep
  that holds the lead at the horizon.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import state as st
from ..plan import Plan
from .behavior import DAY

if TYPE_CHECKING:
    from .run import LeadRecord, Send

WEEK = 7 * DAY
MARKETING_KINDS = ("nurture", "broadcast")

# One handoff: (minute, lead ID, n-th of the lead, round-robin key, reps, lead number).
Handoff = Tuple[int, str, int, str, Tuple[str, ...], int]


@dataclass
class Tally:
    """The counts of some leads of one run (see the module's counting rules)."""

    weeks: int
    leads: int = 0
    at_horizon: Counter = field(default_factory=Counter)           # stage -> leads in it
    at_horizon_unsubscribed: Counter = field(default_factory=Counter)
    reached: Counter = field(default_factory=Counter)              # stage -> leads that entered it
    pairs: Counter = field(default_factory=Counter)                # (a, b) -> leads that reached both
    time_to: Dict[str, Counter] = field(default_factory=dict)      # stage -> minutes -> leads
    emails: Counter = field(default_factory=Counter)               # emails of a lead -> leads
    most_in_7_days: int = 0
    most_marketing_in_7_days: int = 0
    by_kind: Counter = field(default_factory=Counter)
    deferred: Counter = field(default_factory=Counter)             # rule -> sends held back
    deferred_leads: int = 0
    unsubscribes: int = 0                                          # events
    unsubscribed_leads: int = 0
    bounces: int = 0
    steps: Dict[Tuple[str, str], List[object]] = field(default_factory=dict)  # -> [template, 5 counts]
    variants: Counter = field(default_factory=Counter)             # (seq, step, variant, what) -> count
    entered_weekly: Dict[str, List[int]] = field(default_factory=dict)
    handoffs_weekly: List[int] = field(default_factory=list)
    handoffs: List[Handoff] = field(default_factory=list)
    first_handoff: Dict[int, int] = field(default_factory=dict)    # lead number -> minute
    sla_breaches: Counter = field(default_factory=Counter)         # lead number -> breaches
    marketing_after_handoff: int = 0
    rejected: int = 0
    engine_steps: int = 0

    def __post_init__(self) -> None:
        if not self.handoffs_weekly:
            self.handoffs_weekly = [0] * self.weeks

    def week_counts(self, name: str) -> List[int]:
        return self.entered_weekly.setdefault(name, [0] * self.weeks)

    def step(self, sequence: str, step: str, template: str) -> List[object]:
        return self.steps.setdefault((sequence, step), [template, 0, 0, 0, 0, 0])


def new(plan: Plan, horizon: int) -> Tally:
    """An empty tally with a row for every send step of the plan, in plan order."""
    t = Tally(weeks=max(1, math.ceil(horizon / WEEK)))
    for seq in plan.sequences:
        for step in seq.steps:
            if step.action == "send":
                t.step(seq.name, step.id, step.template or "")
    return t


def add(tallies: Sequence[Tally]) -> Tally:
    """The tally of all these pieces' leads."""
    out = Tally(weeks=tallies[0].weeks)
    for t in tallies:
        out.leads += t.leads
        for name in ("at_horizon", "at_horizon_unsubscribed", "reached", "pairs", "emails", "by_kind", "deferred",
                     "variants", "sla_breaches"):
            getattr(out, name).update(getattr(t, name))
        for stage, dist in t.time_to.items():
            out.time_to.setdefault(stage, Counter()).update(dist)
        out.most_in_7_days = max(out.most_in_7_days, t.most_in_7_days)
        out.most_marketing_in_7_days = max(out.most_marketing_in_7_days, t.most_marketing_in_7_days)
        for name in ("deferred_leads", "unsubscribes", "unsubscribed_leads", "bounces", "marketing_after_handoff",
                     "rejected", "engine_steps"):
            setattr(out, name, getattr(out, name) + getattr(t, name))
        for key, row in t.steps.items():
            mine = out.step(key[0], key[1], str(row[0]))
            for i in range(1, 6):
                mine[i] = int(mine[i]) + int(row[i])  # type: ignore[call-overload]
        for stage, weeks in t.entered_weekly.items():
            mine_w = out.week_counts(stage)
            for i, v in enumerate(weeks):
                mine_w[i] += v
        out.handoffs_weekly = [a + b for a, b in zip(out.handoffs_weekly, t.handoffs_weekly)]
        out.handoffs += t.handoffs
        out.first_handoff.update(t.first_handoff)
    return out


def settle(handoffs: Iterable[Handoff]) -> Dict[int, str]:
    """Each handed-off lead's owner at the horizon: every handoff takes its pool's next
    round-robin turn, in (minute, lead ID) order, as one engine loop over all leads gives."""
    shared = st.Shared()
    owners: Dict[int, str] = {}
    for _minute, _id, _n, key, reps, index in sorted(handoffs, key=lambda h: h[:3]):
        owners[index], shared = shared.take(key, reps)
    return owners


def most_in_window(minutes: Sequence[int], window: int) -> int:
    """The most of `minutes` inside any `window` minutes (a send at t and one at t + window
    are in different windows)."""
    ordered = sorted(minutes)
    best, first = 0, 0
    for last, minute in enumerate(ordered):
        while minute - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def week_of(start: int, minute: Optional[int], weeks: int) -> Optional[int]:
    if minute is None:
        return None
    week = (minute - start) // WEEK
    return week if 0 <= week < weeks else None


def from_records(plan: Plan, start: int, horizon: int, records: Sequence["LeadRecord"], sends: Sequence["Send"],
                 headline: Sequence[str], rejected: int = 0, engine_steps: int = 0) -> Tally:
    """The tally of the per-lead simulator's records (`run.LeadRecord`, `run.Send`)."""
    t = new(plan, horizon)
    t.rejected, t.engine_steps = rejected, engine_steps
    path = main_path(plan)
    pairs = list(zip(path, path[1:]))
    created = set()
    for r in records:
        if not r.created:
            continue
        created.add(r.index)
        t.leads += 1
        reached: Dict[str, int] = r.reached
        if r.stage is not None:
            t.at_horizon[r.stage] += 1
            if r.unsubscribed_at is not None:
                t.at_horizon_unsubscribed[r.stage] += 1
        first = next(iter(reached), None)
        for stage, minute in reached.items():
            t.reached[stage] += 1
            if stage != first:
                t.time_to.setdefault(stage, Counter())[minute - r.arrived] += 1
            if stage in headline:
                week = week_of(start, minute, t.weeks)
                if week is not None:
                    t.week_counts(stage)[week] += 1
        for a, b in pairs:
            if a in reached and b in reached:
                t.pairs[(a, b)] += 1
        t.emails[r.emails] += 1
        t.most_in_7_days = max(t.most_in_7_days, most_in_window(r.sends, WEEK))
        t.deferred.update(r.deferred)
        t.deferred_leads += bool(r.deferred)
        t.unsubscribed_leads += r.unsubscribed_at is not None
        if r.handed_off_at is not None:
            t.first_handoff[r.index] = r.handed_off_at
            week = week_of(start, r.handed_off_at, t.weeks)
            if week is not None:
                t.handoffs_weekly[week] += 1
        if r.sla_breaches:
            t.sla_breaches[r.index] += r.sla_breaches
        for n, (minute, key, reps) in enumerate(r.handoffs):
            t.handoffs.append((minute, r.id, n, key, reps, r.index))
    marketing: Dict[int, List[int]] = {}
    for s in sends:
        t.by_kind[s.kind or "other"] += 1
        row = t.step(s.sequence, s.step, s.template) if s.sequence else \
            t.step("", CONFIRMATION if s.kind == CONFIRMATION else s.template, s.template)
        for i, flag in enumerate((True, s.opened, s.clicked, s.replied, s.unsubscribed), 1):
            row[i] = int(row[i]) + bool(flag)  # type: ignore[call-overload]
        t.unsubscribes += s.unsubscribed
        t.bounces += s.bounced
        if s.variant is not None:
            v = (s.sequence, s.step, s.variant)
            t.variants[v + ("sends",)] += 1
            t.variants[v + ("opens",)] += s.opened
            t.variants[v + ("clicks",)] += s.clicked
        if s.kind in MARKETING_KINDS and s.lead in created:
            marketing.setdefault(s.lead, []).append(s.minute)
            handed = t.first_handoff.get(s.lead)
            t.marketing_after_handoff += handed is not None and s.minute > handed
    t.most_marketing_in_7_days = max((most_in_window(m, WEEK) for m in marketing.values()), default=0)
    return t


# The step name of a double opt-in's confirmation emails in the steps table (a lead
# magnet's delivery is named by its template).
CONFIRMATION = "confirmation"


def main_path(plan: Plan) -> Tuple[str, ...]:
    """The stages in order up to the first terminal stage (the funnel's way forward)."""
    out: List[str] = []
    for stage in plan.stages:
        out.append(stage.name)
        if stage.terminal:
            break
    return tuple(out)


HEADLINE_STAGES = ("mql", "sql", "customer")


def headline_stages(plan: Plan) -> Tuple[str, ...]:
    """The stages a forecast's headline names: mql, sql and customer where the funnel has
    them, else its main path after the first stage."""
    names = [s.name for s in plan.stages]
    chosen = tuple(n for n in HEADLINE_STAGES if n in names)
    return chosen or main_path(plan)[1:]


def percentile(dist: Counter, p: float) -> Optional[float]:
    """The nearest-rank percentile (`p` from 0 to 1) of a distribution; None when empty."""
    n = sum(dist.values())
    if not n:
        return None
    rank = max(0, math.ceil(p * n) - 1)
    seen = 0
    for value in sorted(dist):
        seen += dist[value]
        if seen > rank:
            return float(value)
    return None  # pragma: no cover
