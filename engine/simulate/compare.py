"""`fnl simulate FUNNEL --compare OTHER` and `--base REV`: what a change does to the forecast.

Both definitions run with the same behaviour model (the one for FUNNEL) and the same seeds.
Every random draw is keyed by (seed, lead, what it is for) (`draws`), so a lead acts the
same in both funnels wherever they agree (common random numbers): the difference of two
runs with one seed is the change's own effect on those leads, with far less noise than
two independent forecasts. With `--runs R` each headline figure's difference is computed
per seed and reported as the mean of the R paired differences with a 95 % t interval
(R - 1 degrees of freedom); with one run the difference has no interval.

Differences are FUNNEL minus OTHER (minus the funnel at REV for `--base`): positive when
FUNNEL has more. `fnl plan --forecast` uses the same comparison, NEW minus OLD, and prints
it after the plan diff (`plan_section`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import ProblemsFound, UsageError
from ..plan import Plan
from ..state import iso
from ..terminal import escape, json_document
from . import DAY, Behavior, Progress, Workers, behaviour_file, check_sizes, horizon_for, start_minute
from .behavior import default_behavior, load_behavior
from .figures import Estimate, Figures, HEADLINE_STAGES, Num, estimate, one_run

FORMAT_VERSION = 1
FORMATS = ("text", "json", "markdown")
PAIRED = ("paired by seed: each run's difference is between the two funnels with the same seed and the same "
          "behaviour model; the interval is Student's t over those differences, simulation noise only")
ONE_RUN = ("One run: the differences have no interval; give --runs 10 (or more) for 95 % intervals of the "
           "paired difference.")

# A figure: (key, label, kind); kind is count, share or mean.
Metric = Tuple[str, str, str]


@dataclass(frozen=True)
class Row:
    key: str     # stable name in the JSON: `leads`, `stages.mql.reached`, `rates.mql`, ...
    label: str
    kind: str    # count | share | mean
    funnel: Optional[Num]  # None where the funnel has no such figure (a stage it lacks)
    other: Optional[Num]
    difference: Optional[Num]  # funnel - other; an Estimate with several runs


@dataclass(frozen=True)
class Comparison:
    funnel: str   # FUNNEL as given (or NEW for `fnl plan`)
    other: str    # OTHER as given, or `FUNNEL at REV`
    funnel_name: str
    other_name: str
    behavior: Behavior
    seed: int
    runs: int
    start: int
    days: float
    leads_asked: Optional[int]
    rows: Tuple[Row, ...]
    rejected: int = 0  # events the engine refused in either funnel (the model names what one lacks)

    def row(self, key: str) -> Optional[Row]:
        return next((r for r in self.rows if r.key == key), None)


# -- inputs -------------------------------------------------------------------------------

def behaviour_for(funnel: str, behavior_path: Optional[str], plan: Plan) -> Behavior:
    """The behaviour model `forecast` would use for `funnel`."""
    found = behaviour_file(funnel, behavior_path)
    return load_behavior(found, plan) if found is not None else default_behavior(plan)


def _other_plan(other: str) -> Plan:
    from ..pipeline import plan_for

    if not os.path.lexists(other):
        raise UsageError(f"--compare {other}: no such file or directory", "name the definition to compare with")
    try:
        return plan_for(other)
    except ProblemsFound as exc:
        exc.context = f"fnl simulate: cannot compare with {other}: it has problems (fix them, then run again)"
        raise


def _base_plan(funnel: str, rev: str) -> Plan:
    from ..planning import plans_against_base

    try:
        pairs = plans_against_base(rev, (funnel,))
    except ProblemsFound as exc:
        if exc.context:
            why = exc.context.split(": ", 2)[-1].replace("fnl plan again", "fnl simulate again")
            exc.context = f"fnl simulate: cannot compare {funnel} with {rev}: {why}"
        raise
    if len(pairs) != 1:
        raise UsageError(f"{funnel}: {len(pairs)} definitions here or at {rev}; --base compares one funnel",
                         "name one definition file or split-funnel folder")
    old, _ = pairs[0]
    if old.funnel is None:
        raise UsageError(f"{funnel}: no such definition at {rev}", "name a revision where the funnel exists")
    return old.plan


# -- running ------------------------------------------------------------------------------

def metrics(f: Figures, headline: Sequence[str]) -> Dict[str, Tuple[str, str, Optional[float]]]:
    """The headline figures of one run: key -> (label, kind, value)."""
    out: Dict[str, Tuple[str, str, Optional[float]]] = {"leads": ("leads", "count", one_run(f.leads))}
    for s in f.stages:
        out[f"stages.{s.name}.reached"] = (f"reached {s.name}", "count", one_run(s.reached))
    for s in f.stages:
        if s.name in headline:
            label = s.name.upper() if s.name in ("mql", "sql") else s.name
            out[f"rates.{s.name}"] = (f"{label} rate (of the leads)", "share", one_run(s.reached_share))
    out["emails_per_lead"] = ("emails per lead", "mean", one_run(f.emails.per_lead_mean))
    out["emails_sent"] = ("emails sent", "count", one_run(f.emails.sent))
    out["unsubscribes"] = ("unsubscribes (events)", "count", one_run(f.unsubscribes))
    out["unsubscribed_leads"] = ("leads unsubscribed", "count", one_run(f.unsubscribed_leads))
    out["sla_breaches"] = ("SLA breaches", "count", one_run(f.sla_breaches))
    return out


def _headline(plan: Plan) -> Tuple[str, ...]:
    names = [s.name for s in plan.stages]
    return tuple(n for n in HEADLINE_STAGES if n in names)


def _num(values: Sequence[float], runs: int) -> Num:
    return estimate(values) if runs > 1 else values[0]


def run_pair(plan: Plan, other: Plan, model: Behavior, *, seed: int, runs: int, leads: Optional[int],
             horizon: int, start: int, progress: Optional[Progress] = None, workers: Optional[Workers] = None
             ) -> Tuple[Tuple[Row, ...], int]:
    """Simulate both plans with the same model and seeds; the rows of the comparison and
    the events either engine refused."""
    from .figures import figures
    from .run import simulate

    headline = tuple(dict.fromkeys(_headline(plan) + _headline(other)))
    mine: List[Dict[str, Tuple[str, str, Optional[float]]]] = []
    theirs: List[Dict[str, Tuple[str, str, Optional[float]]]] = []
    rejected = 0
    for i in range(runs):
        for which, (p, into) in enumerate(((plan, mine), (other, theirs))):
            n = 2 * i + which
            report = (lambda steps, n=n: progress(n, 2 * runs, steps)) if progress is not None else None
            run = simulate(p, model, seed=seed + i, leads=leads, horizon=horizon, start=start, progress=report,
                           workers=workers)
            rejected += run.rejected
            into.append(metrics(figures(run), headline))
    keys = list(dict.fromkeys(list(mine[0]) + list(theirs[0])))
    # Stages in FUNNEL's order, then those only OTHER has; the other figures after them.
    keys.sort(key=lambda k: _ORDER.index(k.split(".")[0]))
    rows = []
    for key in keys:
        label, kind, _ = mine[0].get(key) or theirs[0][key]
        a = [m[key][2] for m in mine] if key in mine[0] else None
        b = [t[key][2] for t in theirs] if key in theirs[0] else None
        diff = [x - y for x, y in zip(a, b)] if a is not None and b is not None else None  # type: ignore[operator]
        rows.append(Row(key, label, kind, _num(a, runs) if a else None, _num(b, runs) if b else None,  # type: ignore[arg-type]
                        _num(diff, runs) if diff else None))
    return tuple(rows), rejected


_ORDER = ["leads", "stages", "rates", "emails_per_lead", "emails_sent", "unsubscribes", "unsubscribed_leads",
          "sla_breaches"]


def compare(funnel: str, other: Optional[str] = None, base: Optional[str] = None, behavior_path: Optional[str] = None,
            *, leads: Optional[int] = None, days: Optional[int] = None, seed: int = 1, runs: int = 1,
            start: Optional[str] = None, progress: Optional[Progress] = None,
            workers: Optional[Workers] = None) -> Comparison:
    """`fnl simulate FUNNEL --compare OTHER` (a definition path) or `--base REV`: both
    checked before any lead is simulated."""
    from ..pipeline import plan_for

    if (other is None) == (base is None):
        raise UsageError("give one of --compare OTHER and --base REV", "for example: --base origin/main")
    check_sizes(leads, days, runs)
    first_minute = start_minute(start)
    plan = plan_for(funnel)
    model = behaviour_for(funnel, behavior_path, plan)
    horizon = horizon_for(plan, model, leads, days, workers, first_minute)
    if other is not None:
        other_plan, shown = _other_plan(other), other
    else:
        other_plan, shown = _base_plan(funnel, base), f"{funnel} at {base}"  # type: ignore[arg-type]
    horizon_for(other_plan, model, leads, days, workers, first_minute)
    rows, rejected = run_pair(plan, other_plan, model, seed=seed, runs=runs, leads=leads, horizon=horizon,
                              start=first_minute, progress=progress, workers=workers)
    return Comparison(funnel, shown, plan.funnel, other_plan.funnel, model, seed, runs, first_minute,
                      horizon / DAY, leads, rows, rejected)


def for_plans(pairs: Sequence[Tuple[Any, Any]], *, leads: Optional[int] = None, runs: int = 1, seed: int = 1,
              new_path: Optional[str] = None, progress: Optional[Progress] = None) -> List[Optional[Comparison]]:
    """`fnl plan --forecast`: for each (old, new) pair of `engine.diff.Side`, NEW minus OLD
    with NEW's behaviour model; None where one side has no funnel (added or removed)."""
    check_sizes(leads, None, runs)
    first_minute = start_minute(None)
    out: List[Optional[Comparison]] = []
    for old, new in pairs:
        if not old.plan.stages or not new.plan.stages:
            out.append(None)
            continue
        if new.funnel is not None and new.funnel.document.files:
            where = new.funnel.document.files[0]
        else:
            where = new_path or ""
        model = behaviour_for(where, None, new.plan) if where else default_behavior(new.plan)
        horizon = horizon_for(new.plan, model, leads, None, None, first_minute)
        horizon_for(old.plan, model, leads, None, None, first_minute)
        rows, rejected = run_pair(new.plan, old.plan, model, seed=seed, runs=runs, leads=leads, horizon=horizon,
                                  start=first_minute, progress=progress)
        out.append(Comparison("new", "old", new.plan.funnel, old.plan.funnel, model, seed, runs, first_minute,
                              horizon / DAY, leads, rows, rejected))
    return out


# -- numbers in words ---------------------------------------------------------------------

def _plain(v: float, kind: str) -> str:
    if kind == "share":
        return f"{100 * v:.1f} %"
    if kind == "mean" or not float(v).is_integer():
        return f"{v:,.2f}" if kind == "mean" else f"{v:,.1f}"
    return f"{int(v):,}"


def value(v: Optional[Num], kind: str) -> str:
    if v is None:
        return "–"
    return _plain(v.mean if isinstance(v, Estimate) else float(v), kind)


def _signed(v: float, kind: str) -> str:
    if abs(v) < 1e-12:
        return "0"
    sign = "+" if v > 0 else "-"
    if kind == "share":
        return f"{sign}{100 * abs(v):.1f} pp"
    if kind == "mean":
        return f"{sign}{abs(v):,.3f}"
    return sign + _plain(abs(v), kind)


def difference(v: Optional[Num], kind: str) -> str:
    """A difference: signed, shares in percentage points, with its interval when there is one."""
    if v is None:
        return "–"
    if isinstance(v, Estimate):
        if v.lo == v.hi:
            return _signed(v.mean, kind)
        return f"{_signed(v.mean, kind)} ({_signed(v.lo, kind)} to {_signed(v.hi, kind)})"
    return _signed(float(v), kind)


def _round(x: float) -> float:
    r = round(x, 6)
    return 0.0 if r == 0 else r


def document_head(kind: str, funnel: str, behavior: Behavior, seed: int, runs: int, start: int,
                  days: float, method: str) -> Dict[str, Any]:
    """What every `fnl simulate` JSON report other than the forecast starts with; with
    several runs, how their 95 % intervals were made (`method`) and from which seeds."""
    doc = {"version": FORMAT_VERSION, "kind": kind, "funnel": funnel,
           "behavior": {"source": behavior.source, "assumptions": list(behavior.assumptions)},
           "seed": seed, "runs": runs, "start": iso(start), "days": _round(days)}
    if runs > 1:
        doc["intervals"] = {"confidence": 0.95, "method": method, "seeds": list(range(seed, seed + runs))}
    return doc


def render_with(renderers: Mapping[str, Callable[[Any], str]], report: Any, fmt: str, option: str) -> str:
    """`report` in format `fmt` by one of `renderers`, or the usage error naming `option`."""
    if fmt not in renderers:
        raise UsageError(f"--format {fmt} is not available with {option}", f"give one of {', '.join(renderers)}")
    return renderers[fmt](report)


def json_value(v: Optional[Num]) -> Any:
    if v is None:
        return None
    if isinstance(v, Estimate):
        return {"mean": _round(v.mean), "lo": _round(v.lo), "hi": _round(v.hi)}
    return _round(float(v))


# -- rendering ----------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> List[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return [(indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))).rstrip()
            for cells in (header, *rows)]


def _cells(c: Comparison) -> List[List[str]]:
    return [[escape(r.label), value(r.funnel, r.kind), value(r.other, r.kind), difference(r.difference, r.kind)]
            for r in c.rows]


def _notes(c: Comparison) -> List[str]:
    model = escape(c.behavior.source) if c.behavior.source else "fnl's default assumptions"
    notes = [f"Same behaviour model for both ({model}) and the same seeds: a lead acts the same in both "
             "funnels wherever they agree (common random numbers)."]
    if c.runs > 1:
        notes.append(f"Each difference is the mean of {c.runs} runs' differences with its 95 % interval, "
                     f"{PAIRED}.")
    else:
        notes.append(ONE_RUN)
    if c.rejected:
        notes.append(f"The engine refused {c.rejected:,} simulated events: the behaviour model names something "
                     "one of the funnels does not have.")
    return notes


def _title(c: Comparison) -> str:
    runs = f", {c.runs} runs (seeds {c.seed}–{c.seed + c.runs - 1})" if c.runs > 1 else f", seed {c.seed}"
    return (f"Forecast difference: {escape(c.funnel)} minus {escape(c.other)}: {c.days:g} days from "
            f"{iso(c.start)[:10]}{runs}")


def render_text(c: Comparison) -> str:
    lines = [_title(c), ""]
    lines += _table(["figure", c.funnel, c.other, "difference"], _cells(c))
    lines.append("")
    lines += _notes(c)
    return "\n".join(lines) + "\n"


def _md(cell: str) -> str:
    return cell.replace("|", "\\|") or " "


def _md_table(c: Comparison) -> List[str]:
    head = ["figure", escape(c.funnel), escape(c.other), "difference"]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "| --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(_md(x) for x in row) + " |" for row in _cells(c)]
    return lines


def render_markdown(c: Comparison) -> str:
    lines = [f"### {_title(c)}", ""] + _md_table(c) + [""] + [" ".join(_notes(c))]
    return "\n".join(lines) + "\n"


def data(c: Comparison) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        **document_head("comparison", c.funnel, c.behavior, c.seed, c.runs, c.start, c.days, PAIRED),
        "other": c.other,
        "funnel_name": c.funnel_name,
        "other_name": c.other_name,
        "rejected": c.rejected,
        "differences": {r.key: {"label": r.label, "kind": r.kind, "funnel": json_value(r.funnel),
                                "other": json_value(r.other), "difference": json_value(r.difference)}
                        for r in c.rows},
    }
    return doc


def render_json(c: Comparison) -> str:
    return json_document(data(c))


RENDERERS: Dict[str, Callable[[Comparison], str]] = {"text": render_text, "json": render_json,
                                                     "markdown": render_markdown}


def render(c: Comparison, fmt: str) -> str:
    return render_with(RENDERERS, c, fmt, "--compare or --base")


# -- `fnl plan --forecast` ----------------------------------------------------------------

def plan_section(c: Optional[Comparison], fmt: str) -> str:
    """The Forecast section after one plan diff (text or markdown)."""
    if c is None:
        text = "no forecast: the funnel is new or removed, so there is nothing to compare"
        return f"\nForecast\n  {text}\n" if fmt == "text" else f"\n#### Forecast\n\n{text[0].upper() + text[1:]}.\n"
    runs = f"{c.runs} runs" if c.runs > 1 else f"seed {c.seed}"
    what = (f"NEW minus OLD, {c.days:g} days, {runs}, "
            f"{'--leads ' + format(c.leads_asked, ',') if c.leads_asked else 'the behaviour model’s leads'}")
    if fmt == "text":
        lines = ["", f"Forecast ({what})"]
        lines += _table(["figure", "old", "new", "difference"],
                        [[x[0], x[2], x[1], x[3]] for x in _cells(c)])
        lines += [""] + ["  " + n for n in _notes(c)]
        return "\n".join(lines) + "\n"
    head = ["figure", "old", "new", "difference"]
    lines = ["", f"#### Forecast ({what})", "", "| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(_md(v) for v in (x[0], x[2], x[1], x[3])) + " |" for x in _cells(c)]
    lines += ["", " ".join(_notes(c))]
    return "\n".join(lines) + "\n"


__all__ = ["Comparison", "FORMATS", "FORMAT_VERSION", "Row", "compare", "data", "for_plans", "metrics",
           "plan_section", "render", "render_json", "render_markdown", "render_text", "run_pair"]
