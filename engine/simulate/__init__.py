"""`fnl simulate`: forecasting a funnel with synthetic leads.

`behavior` holds its input, the behaviour model: how many leads arrive and how they,
sales and the CRM act (`schemas/behavior.schema.json`). `run` puts synthetic leads through
the engine's own core, `figures` turns a run into numbers, `report` prints them.

`forecast` is the one entry point: it checks the sizes asked for, compiles the funnel,
finds and loads its behaviour model (or takes fnl's default assumptions), runs, and
computes the figures. A simulation starts at a fixed instant, `DEFAULT_START` (a Monday,
00:00 UTC), so that the same funnel, behaviour model and seed give the same report on any
machine and any day. Run i of `runs` uses seed `seed + i`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import UsageError
from .behavior import (DAY, DEFAULTS, MAX_LEADS, Behavior, Defaults, default_behavior, find_behavior,
                       is_behavior_file, load_behavior)
from .workers import Workers

if TYPE_CHECKING:
    from ..plan import Plan
    from .expect import Gate
    from .figures import Figures, Summary

__all__ = ["DEFAULTS", "Workers", "DEFAULT_START", "Behavior", "Defaults", "Forecast", "MAX_DAYS", "MAX_LEADS", "MAX_RUNS", "MAX_SIMULATED",
           "check_sizes", "default_behavior", "find_behavior", "forecast", "is_behavior_file", "load_behavior",
           "parse_count"]

DEFAULT_START = "2026-01-05T00:00:00Z"
MAX_DAYS = 3650
MAX_RUNS = 1000
# The per-lead simulator puts each lead through the engine one step at a time, holding
# every lead's state and record: a few milliseconds and tens of kilobytes a lead. Beyond
# this many leads a run it would take hours and gigabytes, so it is refused before any
# work. A funnel the vectorised simulator takes runs up to MAX_LEADS, in bounded memory.
MAX_SIMULATED = 100_000

# (run number from 0, runs, engine steps so far in this run)
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Forecast:
    """What `fnl simulate` prints: the inputs, the first run's figures and, with several
    runs, their summary."""

    funnel: str        # the path as given
    behavior: Behavior
    seed: int
    runs: int
    start: int         # minute
    days: float
    leads_asked: Optional[int]
    figures: Figures
    summary: Optional[Summary]  # None for one run
    expectations: Optional[Gate] = None  # judged, when the funnel has expectations (expect.py)


def parse_count(text: str, option: str) -> int:
    """A whole number as a user writes it (`500`, `10_000`, `1,000`, `1e6`), or UsageError."""
    cleaned = str(text).strip().replace("_", "").replace(",", "")
    if re.fullmatch(r"[+-]?\d+", cleaned):
        return int(cleaned)
    if re.fullmatch(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+", cleaned):
        value = float(cleaned)
        if math.isfinite(value) and value == int(value):
            return int(value)
    raise UsageError(f"{option} {text}: not a whole number; give one such as {option} 500")


def check_sizes(leads: Optional[int], days: Optional[int], runs: int) -> None:
    """Refuse sizes that make no sense or cannot finish, before any work."""
    if leads is not None and not 1 <= leads <= MAX_LEADS:
        raise UsageError(f"--leads {leads:,}: give from 1 to {MAX_LEADS:,} leads" if leads > 0 else
                         f"--leads {leads}: give at least 1 lead (at most {MAX_LEADS:,})")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days {days:,}: give a horizon from 1 to {MAX_DAYS:,} days (ten years)")
    if not 1 <= runs <= MAX_RUNS:
        raise UsageError(f"--runs {runs:,}: give from 1 to {MAX_RUNS:,} runs")


def start_minute(text: Optional[str]) -> int:
    from ..state import parse_time

    try:
        return parse_time(text or DEFAULT_START)
    except ValueError as exc:
        raise UsageError(f"--start: {exc}") from None


def horizon_for(plan: Plan, model: Behavior, leads: Optional[int], days: Optional[int], workers: Optional[Workers],
                start: int) -> int:
    """The horizon in minutes, after refusing runs larger than fnl simulates: MAX_LEADS
    as columns, MAX_SIMULATED lead by lead (and why this funnel runs lead by lead)."""
    from . import vector

    expected = leads if leads is not None else model.expected_leads
    horizon = days * DAY if days is not None else model.horizon_minutes
    why = vector.lead_by_lead(plan, model, start, horizon, workers.engine if workers is not None else "auto")
    if why is not None and expected > MAX_SIMULATED:
        where = "--leads" if leads is not None else f"the behaviour model ({model.source or 'defaults'})"
        raise UsageError(f"{where} asks for {expected:,.0f} leads a run; fnl simulates at most {MAX_SIMULATED:,} "
                         f"lead by lead, and {plan.funnel} runs lead by lead ({why})",
                         f"give --leads {MAX_SIMULATED:,} or fewer (the figures scale: shares and per-lead "
                         "numbers do not depend on the size)")
    return horizon


def behaviour_file(funnel: str, behavior_path: Optional[str]) -> Optional[Path]:
    """The behaviour model `fnl simulate` reads for `funnel`: the file given with
    `--behavior`, else the `*.behavior.yaml` beside the funnel, else None (fnl's defaults)."""
    if behavior_path is not None and not Path(behavior_path).exists():
        raise UsageError(f"--behavior {behavior_path}: no such file",
                         "check the path; without --behavior fnl uses the *.behavior.yaml beside the funnel")
    return Path(behavior_path) if behavior_path is not None else find_behavior(funnel)


def forecast(funnel: str, behavior_path: Optional[str] = None, *, leads: Optional[int] = None,
             days: Optional[int] = None, seed: int = 1, runs: int = 1, start: Optional[str] = None,
             progress: Optional[Progress] = None, expect_path: Optional[str] = None,
             strict: bool = False, workers: Optional[Workers] = None) -> Forecast:
    """Simulate `funnel` (a definition path) with its behaviour model: the one at
    `behavior_path`, else the `*.behavior.yaml` beside the funnel, else fnl's defaults.
    `leads` scales the arrivals to about that many; `days` sets the horizon (the model's
    by default). Raises UsageError for sizes out of bounds, ProblemsFound for a funnel or
    behaviour model with problems, all before any lead is simulated. The expectations at
    `expect_path`, else the definition's `expect:` block and the `*.expect.yaml` beside
    the funnel (`expect.gather`), are judged on every run (`strict`: the whole 95 %
    interval must hold) into `Forecast.expectations`. `workers`
    says where the leads are simulated (this process by default); the forecast is the same."""
    from ..pipeline import compiled_for
    from . import expect
    from .figures import combine, figures
    from .run import simulate

    check_sizes(leads, days, runs)
    first_minute = start_minute(start)
    found = behaviour_file(funnel, behavior_path)
    compiled = compiled_for(funnel)
    plan = compiled.plan
    model = load_behavior(found, plan) if found is not None else default_behavior(plan)
    expectations, gates = expect.gather(compiled.funnel.document, funnel, expect_path, plan, model)
    horizon = horizon_for(plan, model, leads, days, workers, first_minute)
    results = []
    measured = []  # each run's metrics, when there are expectations to judge
    for i in range(runs):
        report = (lambda steps, i=i: progress(i, runs, steps)) if progress is not None else None
        run = simulate(plan, model, seed=seed + i, leads=leads, horizon=horizon, start=first_minute,
                       progress=report, workers=workers)
        results.append(figures(run))
        if expectations is not None:
            measured.append(expect.measure(run, results[-1]))
    gate = None if expectations is None else expect.judge(expectations, measured, strict, gates)
    return Forecast(funnel, model, seed, runs, first_minute, horizon / DAY, leads, results[0],
                    combine(results) if runs > 1 else None, gate)
