"""The figures of a simulation: what a run says about a funnel, and the mean of many runs.

`figures(run)` turns one run's per-lead and per-email records into the report's numbers:
leads per stage at the horizon and ever reached, conversion between stages, time to each
stage, emails per lead, deferrals, unsubscribes and bounces, every sequence step and A/B
variant, weekly volumes, and the load on each sales rep. `combine` gives, for `--runs R`,
each number as its mean over the runs with a 95 % interval of that mean (Student's t,
R - 1 degrees of freedom): the spread of the simulation's own randomness, nothing else.

Counting rules, stated once:
- A lead counts once the engine took it in (its opt-in or entry); `leads` is those leads.
- Stages follow the definition's order. The main path is that order up to the first
  terminal stage; conversion A → B is the share of leads that reached A and also reached B.
- Time to a stage is from the lead's arrival to its first entry, over the leads that
  entered the funnel in an earlier stage; percentiles are nearest-rank.
- Weeks are 7-day periods from the simulation's start (the last may be shorter).
- Rep load counts each lead's first handoff, to the rep that holds it at the horizon.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import tally
from ..plan import Plan
from .behavior import DAY
from .run import Run
from .tally import HEADLINE_STAGES, WEEK, headline_stages, main_path, most_in_window  # noqa: F401

Z95 = 1.959963984540054
CONFIDENCE = 0.95
# Student's t, two-sided 95 % (the 0.975 quantile), for 1 to 30 degrees of freedom.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


@dataclass(frozen=True)
class Estimate:
    """A figure over several runs: the mean and a 95 % interval of the mean (`lo` to `hi`)."""

    mean: float
    lo: float
    hi: float


# A figure of one run is a number; of several, an Estimate.
Num = Union[int, float, Estimate]


def one_run(v: Num) -> float:
    """One run's figure as a number (a run's figures are never intervals)."""
    if isinstance(v, Estimate):
        raise TypeError("an interval of several runs is not one run's figure")
    return float(v)


@dataclass(frozen=True)
class StageFigures:
    name: str
    leads: Num         # in this stage at the horizon
    unsubscribed: Num  # of those, how many have unsubscribed
    reached: Num       # ever entered this stage
    reached_share: Num  # reached / leads


@dataclass(frozen=True)
class Conversion:
    source: str
    target: str
    reached_source: Num
    reached_both: Num
    rate: Optional[Num]  # None when no lead reached `source`


@dataclass(frozen=True)
class TimeTo:
    stage: str
    leads: Num  # leads that entered the stage after arriving in an earlier one
    p50_days: Optional[Num]
    p90_days: Optional[Num]


@dataclass(frozen=True)
class EmailFigures:
    sent: Num  # every email, of every kind
    per_lead_mean: Num
    per_lead_p95: Num
    per_lead_max: Num
    per_lead_sd: Num  # the standard deviation over the leads (for a standard error of the mean)
    max_in_7_days: Num  # the most emails any lead got in any 7 days
    by_kind: Tuple[Tuple[str, Num], ...]


@dataclass(frozen=True)
class Deferrals:
    """Sends the engine held back, by the rule that held them (one send can name several)."""

    quiet_hours: Num
    frequency_cap: Num
    at: Num
    leads: Num  # leads with at least one send held back


@dataclass(frozen=True)
class StepFigures:
    sequence: str  # a sequence's name, or "" for the delivery of a lead magnet
    step: str      # the step's ID, the delivered template, or `confirmation` (`tally.CONFIRMATION`)
    template: str
    sends: Num
    opens: Num
    clicks: Num
    replies: Num
    unsubscribes: Num


@dataclass(frozen=True)
class Rate:
    """A share with its 95 % Wilson interval; None where nothing was sent."""

    value: Optional[Num]
    lo: Optional[Num]
    hi: Optional[Num]


@dataclass(frozen=True)
class VariantFigures:
    sequence: str
    step: str
    variant: str
    template: str
    sends: Num
    opens: Num
    clicks: Num
    open_rate: Rate   # opens / sends
    click_rate: Rate  # clicks / sends


@dataclass(frozen=True)
class Weekly:
    """Per week from the start: entries into each headline stage, and handoffs."""

    weeks: int
    entered: Tuple[Tuple[str, Tuple[Num, ...]], ...]
    handoffs: Tuple[Num, ...]


@dataclass(frozen=True)
class RepLoad:
    rep: str
    handoffs: Num
    per_week_mean: Num
    per_week_max: Num
    capacity: Optional[float]  # leads a week, from the behaviour model
    weeks_over_capacity: Num
    sla_breaches: Num


@dataclass(frozen=True)
class Figures:
    """Everything the report says about one run (or, from `combine`, the mean of several)."""

    funnel: str
    seed: int
    start: int  # minute
    days: float
    leads: Num
    stages: Tuple[StageFigures, ...]
    headline: Tuple[str, ...]  # the stages the headline names, in order
    conversions: Tuple[Conversion, ...]
    biggest_drop: Optional[Tuple[str, str]]  # (source, target) of the lowest conversion
    time_to: Tuple[TimeTo, ...]
    emails: EmailFigures
    deferrals: Deferrals
    unsubscribes: Num  # unsubscribe events
    unsubscribed_leads: Num
    bounces: Num  # emails that bounced
    steps: Tuple[StepFigures, ...]
    variants: Tuple[VariantFigures, ...]
    weekly: Weekly
    reps: Tuple[RepLoad, ...]
    sla_breaches: Num
    rejected: Num  # events the engine refused (0 unless something is wrong)


@dataclass(frozen=True)
class Summary:
    """`--runs R`: the figures of R runs with independent seeds, each number an Estimate."""

    runs: int
    seeds: Tuple[int, ...]
    method: str
    figures: Figures


# -- one run ------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """The nearest-rank percentile (`p` from 0 to 1) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def wilson(successes: int, trials: int, z: float = Z95) -> Rate:
    """The share `successes / trials` with its Wilson score interval."""
    if trials <= 0:
        return Rate(None, None, None)
    p = successes / trials
    d = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / d
    half = z / d * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return Rate(p, max(0.0, centre - half), min(1.0, centre + half))


def figures(run: Run) -> Figures:
    """The report's figures of one run, from its tally (`tally`)."""
    t = run.tally
    n = t.leads
    names = [s.name for s in run.plan.stages]
    stages = tuple(StageFigures(name, t.at_horizon[name], t.at_horizon_unsubscribed[name], t.reached[name],
                                t.reached[name] / n if n else 0.0) for name in names)
    path = main_path(run.plan)
    conversions = tuple(Conversion(a, b, t.reached[a], t.pairs[(a, b)],
                                   t.pairs[(a, b)] / t.reached[a] if t.reached[a] else None)
                        for a, b in zip(path, path[1:]))
    drops = [c for c in conversions if c.rate is not None]
    worst = min(drops, key=lambda c: (c.rate, path.index(c.source))) if drops else None  # type: ignore[arg-type]
    headline = headline_stages(run.plan)
    # Every kind the plan can send, so that runs of one funnel have the same shape.
    kinds: Dict[str, int] = {seq.kind: 0 for seq in run.plan.sequences}
    if any(m.delivers for m in run.plan.lead_magnets):
        kinds["delivery"] = 0
    for kind, count in t.by_kind.items():
        kinds[kind] = kinds.get(kind, 0) + count
    sent = sum(t.by_kind.values())
    weeks = t.weeks
    return Figures(
        funnel=run.plan.funnel, seed=run.seed, start=run.start, days=run.horizon / DAY, leads=n,
        stages=stages, headline=headline, conversions=conversions,
        biggest_drop=(worst.source, worst.target) if worst is not None else None,
        time_to=tuple(_time_to(name, t.time_to.get(name, Counter())) for name in names[1:]),
        emails=EmailFigures(
            sent=sent, per_lead_mean=(sum(k * v for k, v in t.emails.items()) / n) if n else 0.0,
            per_lead_p95=int(tally.percentile(t.emails, 0.95) or 0), per_lead_max=max(t.emails, default=0),
            per_lead_sd=_sd(t.emails, n),
            max_in_7_days=t.most_in_7_days, by_kind=tuple(sorted(kinds.items()))),
        deferrals=Deferrals(quiet_hours=t.deferred["quiet_hours"], frequency_cap=t.deferred["frequency_cap"],
                            at=t.deferred["at"], leads=t.deferred_leads),
        unsubscribes=t.unsubscribes,
        unsubscribed_leads=t.unsubscribed_leads,
        bounces=t.bounces,
        steps=_steps(t), variants=_variants(run.plan, t),
        weekly=Weekly(weeks, tuple((stage, tuple(t.entered_weekly.get(stage, [0] * weeks))) for stage in headline),
                      tuple(t.handoffs_weekly)),
        reps=_reps(run, weeks),
        sla_breaches=sum(t.sla_breaches.values()),
        rejected=t.rejected,
    )


def _time_to(stage: str, dist: Counter) -> TimeTo:
    p50, p90 = tally.percentile(dist, 0.5), tally.percentile(dist, 0.9)
    return TimeTo(stage, sum(dist.values()), None if p50 is None else round(p50 / DAY, 6),
                  None if p90 is None else round(p90 / DAY, 6))


def _steps(t: tally.Tally) -> Tuple[StepFigures, ...]:
    """Every send step of the plan (none sent: zeros), then each delivered lead magnet."""
    order = sorted(t.steps, key=lambda k: k[0] == "")  # sequences first, in plan order; then deliveries
    return tuple(StepFigures(k[0], k[1], str(t.steps[k][0]), *(int(x) for x in t.steps[k][1:]))  # type: ignore
                 for k in order)


def _variants(plan: Plan, t: tally.Tally) -> Tuple[VariantFigures, ...]:
    out = []
    for seq in plan.sequences:
        for step in seq.steps:
            for variant in step.variants:
                key = (seq.name, step.id, variant.name)
                sends, opens, clicks = (t.variants[key + (what,)] for what in ("sends", "opens", "clicks"))
                out.append(VariantFigures(seq.name, step.id, variant.name, step.template or "", sends, opens,
                                          clicks, wilson(opens, sends), wilson(clicks, sends)))
    return tuple(out)


def _reps(run: Run, weeks: int) -> Tuple[RepLoad, ...]:
    t = run.tally
    owners = run.owners
    reps = list(run.plan.reps())
    for owner in sorted(set(owners.values()) - set(reps)):
        reps.append(owner)
    capacity = run.behavior.capacity
    span_weeks = run.horizon / WEEK
    loads: Dict[str, List[int]] = {rep: [0] * weeks for rep in reps}
    breaches: Dict[str, int] = {rep: 0 for rep in reps}
    for lead, owner in owners.items():
        week = tally.week_of(run.start, t.first_handoff.get(lead), weeks)
        if week is not None:
            loads[owner][week] += 1
        breaches[owner] += t.sla_breaches.get(lead, 0)
    out = []
    for rep in reps:
        per_week = loads[rep]
        limit = capacity.for_rep(rep) if capacity is not None else None
        total = sum(per_week)
        out.append(RepLoad(rep, total, total / span_weeks if span_weeks else 0.0, max(per_week, default=0),
                           limit, sum(1 for w in per_week if limit is not None and w > limit), breaches[rep]))
    return tuple(out)


# -- several runs -------------------------------------------------------------------------

def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (a table to 30, then
    the Cornish-Fisher expansion, good to 1e-4)."""
    if df < 1:
        raise ValueError("at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def estimate(values: Sequence[float]) -> Estimate:
    """The mean of `values` with a 95 % t interval of the mean (a point for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Estimate(mean, mean, mean)
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t975(n - 1) * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half)


# Fields that are shares of something: their intervals stop at 1.
_SHARES = {"reached_share", "rate", "value", "lo", "hi"}


def _combine(values: Sequence[Any], share: bool = False) -> Any:
    first = values[0]
    if isinstance(first, bool) or first is None and all(v is None for v in values):
        return first
    if isinstance(first, (int, float)) or first is None:
        numbers = [float(v) for v in values if v is not None]
        if not numbers:
            return None
        # A figure some runs do not have (no lead reached the stage) is the mean of those that do.
        e = estimate(numbers)
        # Every figure is a count, a time or a share: the interval stops where they must.
        return Estimate(e.mean, max(e.lo, 0.0), min(e.hi, 1.0) if share else e.hi)
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return type(first)(**{f.name: _combine([getattr(v, f.name) for v in values], f.name in _SHARES)
                              for f in dataclasses.fields(first)})
    if isinstance(first, tuple):
        if any(len(v) != len(first) for v in values):
            raise ValueError("runs of one funnel differ in shape")
        return tuple(_combine([v[i] for v in values], share) for i in range(len(first)))
    if isinstance(first, str):
        return first
    raise TypeError(f"cannot combine {type(first).__name__}")


def combine(runs: Sequence[Figures]) -> Summary:
    """The figures of several runs (same funnel, behaviour, horizon; other seeds): every
    number the mean with a 95 % t interval of the mean over the runs."""
    if not runs:
        raise ValueError("no runs to combine")
    first = runs[0]
    combined: Figures = _combine(list(runs))
    rates = [c for c in combined.conversions if c.rate is not None]
    worst = min(rates, key=lambda c: _mean(c.rate)) if rates else None
    combined = dataclasses.replace(
        combined, funnel=first.funnel, seed=first.seed, start=first.start, days=first.days,
        headline=first.headline, weekly=dataclasses.replace(combined.weekly, weeks=first.weekly.weeks),
        reps=tuple(dataclasses.replace(r, capacity=o.capacity) for r, o in zip(combined.reps, first.reps)),
        biggest_drop=(worst.source, worst.target) if worst is not None else None)
    return Summary(len(runs), tuple(f.seed for f in runs), "Student's t over the runs' results", combined)


def _mean(value: Optional[Num]) -> float:
    if value is None:
        return math.inf
    return value.mean if isinstance(value, Estimate) else float(value)


def _sd(dist: Counter, n: int) -> float:
    """The standard deviation of a distribution of whole numbers over `n` leads, from
    exact integer sums (the same whatever order the distribution was counted in)."""
    if n <= 0:
        return 0.0
    total = sum(k * v for k, v in dist.items())
    squares = sum(k * k * v for k, v in dist.items())
    return math.sqrt((n * squares - total * total) / (n * n))


def mean_of(value: Optional[Num]) -> Optional[float]:
    """A figure's value: the number itself, or an Estimate's mean."""
    if value is None:
        return None
    return value.mean if isinstance(value, Estimate) else float(value)


def stage(figs: Figures, name: str) -> Optional[StageFigures]:
    return next((s for s in figs.stages if s.name == name), None)
