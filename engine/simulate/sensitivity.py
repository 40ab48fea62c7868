"""`fnl simulate FUNNEL --sensitivity`: which behaviour assumptions move the forecast most.

Each group of rates in the behaviour model is moved down and up by `STEP` (20 %), one group
at a time, everything else as it was, and the funnel is simulated again with the same
seeds. The groups: the email open, click, reply, unsubscribe and bounce probabilities
(each at every level the model sets it: the default, attribute values, segments, personas,
templates and their A/B variants), the daily website-visit rates (the ordinary one and
the raised one after a click), and the CRM outcome probabilities. A probability moved
stays within [0, 1]; where a CRM reaction's outcomes would then add up to more than 1 they
are scaled back to add up to 1.

Because every draw is keyed by (seed, lead, what it is for), the moved and the unmoved
model see the same random numbers (common random numbers): the change in a figure is the
rate's own effect, not noise between two independent runs. With `--runs R` each change is
the mean of the R per-seed changes with a 95 % t interval.

Rows are sorted by impact: the largest change, down or up, of any headline figure (leads
reaching MQL, SQL, customer) as a share of that figure's value at the model's own rates
(of 1 where the figure is 0).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..state import iso
from ..terminal import escape, json_document
from . import DAY, Behavior, Progress, Workers, check_sizes, start_minute
from .behavior import Rates
from . import horizon_for
from .compare import _round, behaviour_for, document_head, json_value, render_with
from .figures import Estimate, Num, estimate, mean_of, one_run

FORMATS = ("text", "json", "markdown")
STEP = 0.2
RATE_NAMES = ("open", "click", "reply", "unsubscribe", "bounce")


def _clamp(p: float) -> float:
    return min(1.0, max(0.0, p))


def _scale_email(name: str) -> Callable[[Behavior, float], Behavior]:
    def level(r: Rates, f: float) -> Rates:
        v = getattr(r, name)
        if v is None:
            return r
        changes: Dict[str, Any] = {name: _clamp(v * f)}
        return replace(r, **changes)

    def scale(b: Behavior, f: float) -> Behavior:
        e = b.email
        email = replace(
            e, default=replace(e.default, **{name: _clamp(getattr(e.default, name) * f)}),
            by_attribute=tuple(replace(a, values=tuple((v, level(r, f)) for v, r in a.values)) for a in e.by_attribute),
            by_segment=tuple((n, level(r, f)) for n, r in e.by_segment),
            by_persona=tuple((n, level(r, f)) for n, r in e.by_persona),
            by_template=tuple(replace(t, rates=level(t.rates, f),
                                      variants=tuple((n, level(r, f)) for n, r in t.variants))
                              for t in e.by_template))
        return replace(b, email=email)

    return scale


def _scale_visits(b: Behavior, f: float) -> Behavior:
    v = b.visits
    return replace(b, visits=replace(v, daily=_clamp(v.daily * f), after_click_daily=_clamp(v.after_click_daily * f)))


def _scale_crm(b: Behavior, f: float) -> Behavior:
    reactions = []
    for reaction in b.crm:
        moved = [_clamp(o.probability * f) for o in reaction.outcomes]
        total = sum(moved)
        if total > 1:
            moved = [p / total for p in moved]
        reactions.append(replace(reaction, outcomes=tuple(replace(o, probability=p)
                                                          for o, p in zip(reaction.outcomes, moved))))
    return replace(b, crm=tuple(reactions))


# (key, label, how to move the group by a factor)
GROUPS: Tuple[Tuple[str, str, Callable[[Behavior, float], Behavior]], ...] = tuple(
    (f"email.{name}", f"email {name} rate", _scale_email(name)) for name in RATE_NAMES) + (
    ("visits.daily", "website visits a day", _scale_visits),
    ("crm.outcomes", "CRM outcome probabilities", _scale_crm),
)


@dataclass(frozen=True)
class SensitivityRow:
    key: str
    label: str
    down: Tuple[Tuple[str, Optional[Num]], ...]  # (stage, change in leads reaching it) at -20 %; None: unmoved
    up: Tuple[Tuple[str, Optional[Num]], ...]
    impact: float  # the largest change, down or up, of a headline figure, as a share of its value


@dataclass(frozen=True)
class Sensitivity:
    funnel: str
    behavior: Behavior
    seed: int
    runs: int
    start: int
    days: float
    leads_asked: Optional[int]
    leads: Num
    headline: Tuple[str, ...]
    base: Tuple[Tuple[str, Num], ...]  # leads reaching each headline stage at the model's rates
    rows: Tuple[SensitivityRow, ...]   # sorted by impact, largest first
    unchanged: Tuple[str, ...]         # groups the model has nothing to move in (labels)


def sensitivity(funnel: str, behavior_path: Optional[str] = None, *, leads: Optional[int] = None,
                days: Optional[int] = None, seed: int = 1, runs: int = 1, start: Optional[str] = None,
                progress: Optional[Progress] = None, workers: Optional[Workers] = None) -> Sensitivity:
    from ..pipeline import plan_for
    from .figures import figures
    from .run import simulate

    check_sizes(leads, days, runs)
    first_minute = start_minute(start)
    plan = plan_for(funnel)
    model = behaviour_for(funnel, behavior_path, plan)
    horizon = horizon_for(plan, model, leads, days, workers, first_minute)
    moved: Dict[Tuple[str, int], Behavior] = {}
    for key, _, scale in GROUPS:
        for sign in (-1, 1):
            other = scale(model, 1 + sign * STEP)
            if other != model:
                moved[(key, sign)] = other
    total = runs * (1 + len(moved))
    done = 0

    def reached(m: Behavior, i: int) -> Tuple[Dict[str, float], Tuple[str, ...], int]:
        nonlocal done
        n = done
        report = (lambda steps: progress(n, total, steps)) if progress is not None else None
        f = figures(simulate(plan, m, seed=seed + i, leads=leads, horizon=horizon, start=first_minute,
                             progress=report, workers=workers))
        done += 1
        return {s.name: one_run(s.reached) for s in f.stages}, f.headline, int(one_run(f.leads))

    base_runs: List[Dict[str, float]] = []
    lead_counts: List[float] = []
    changes: Dict[Tuple[str, int], List[Dict[str, float]]] = {k: [] for k in moved}
    headline: Tuple[str, ...] = ()
    for i in range(runs):
        base, headline, n = reached(model, i)
        base_runs.append(base)
        lead_counts.append(float(n))
        for k, m in moved.items():
            got, _, _ = reached(m, i)
            changes[k].append({s: got[s] - base[s] for s in headline})

    def num(values: Sequence[float]) -> Num:
        return estimate(values) if runs > 1 else values[0]

    base_num = tuple((s, num([b[s] for b in base_runs])) for s in headline)
    rows: List[Tuple[SensitivityRow, float]] = []
    for key, label, _ in GROUPS:
        if (key, -1) not in moved and (key, 1) not in moved:
            continue
        sides = []
        for sign in (-1, 1):
            per_seed = changes.get((key, sign))
            sides.append(tuple((s, num([c[s] for c in per_seed]) if per_seed else None) for s in headline))
        shares = []
        for (s, b) in base_num:
            scale_by = max(abs(mean_of(b) or 0.0), 1.0)
            for side in sides:
                d = dict(side)[s]
                if d is not None:
                    shares.append(abs(mean_of(d) or 0.0) / scale_by)
        rows.append((SensitivityRow(key, label, sides[0], sides[1], max(shares, default=0.0)), sum(shares)))
    order = [k for k, _, _ in GROUPS]
    # Largest impact first; between equals, the larger change over every figure and both directions.
    rows.sort(key=lambda r: (-r[0].impact, -r[1], order.index(r[0].key)))
    unchanged = tuple(label for key, label, _ in GROUPS if (key, -1) not in moved and (key, 1) not in moved)
    return Sensitivity(funnel, model, seed, runs, first_minute, horizon / DAY, leads, num(lead_counts), headline,
                       base_num, tuple(r for r, _ in rows), unchanged)


# -- rendering ----------------------------------------------------------------------------

def _label(stage: str) -> str:
    return stage.upper() if stage in ("mql", "sql") else stage


def _count(v: Optional[Num]) -> str:
    if v is None:
        return "–"
    x = mean_of(v) or 0.0
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _change(v: Optional[Num]) -> str:
    if v is None:
        return "–"

    def signed(x: float) -> str:
        if abs(x) < 1e-12:
            return "0"
        text = f"{abs(x):,.0f}" if float(x).is_integer() else f"{abs(x):,.1f}"
        return ("+" if x > 0 else "-") + text

    if isinstance(v, Estimate):
        return signed(v.mean) if v.lo == v.hi else f"{signed(v.mean)} ({signed(v.lo)} to {signed(v.hi)})"
    return signed(float(v))


def _header(s: Sensitivity) -> List[str]:
    step = f"{100 * STEP:.0f} %"
    cols = ["rate"]
    for st in s.headline:
        cols += [f"{_label(st)} -{step}", f"{_label(st)} +{step}"]
    return cols + ["impact"]


def _cells(s: Sensitivity) -> List[List[str]]:
    out = []
    for r in s.rows:
        cells = [escape(r.label)]
        for (_, down), (_, up) in zip(r.down, r.up):
            cells += [_change(down), _change(up)]
        out.append(cells + [f"{100 * r.impact:.1f} %"])
    return out


def _title(s: Sensitivity) -> str:
    runs = f", {s.runs} runs (seeds {s.seed}–{s.seed + s.runs - 1})" if s.runs > 1 else f", seed {s.seed}"
    return (f"Sensitivity for {escape(s.funnel)}: each behaviour rate moved -{100 * STEP:.0f} % and "
            f"+{100 * STEP:.0f} %, {s.days:g} days from {iso(s.start)[:10]}{runs}")


def _baseline(s: Sensitivity) -> str:
    parts = [f"{_count(s.leads)} leads"] + [f"{_count(v)} {escape(_label(st))}" for st, v in s.base]
    return "At the model's own rates: " + " → ".join(parts)


def _notes(s: Sensitivity) -> List[str]:
    model = escape(s.behavior.source) if s.behavior.source else "fnl's default assumptions"
    notes = [f"Changes are in leads reaching each stage, with the same seeds as the unmoved model ({model}): "
             "common random numbers, so each change is the rate's own effect. Impact: the largest change as a "
             "share of the figure; rows sorted by it."]
    if s.runs > 1:
        notes.append(f"Each change is the mean over {s.runs} runs with its 95 % interval (paired by seed; "
                     "simulation noise only).")
    if s.unchanged:
        notes.append("Nothing to move (not in the model, or all 0): " + ", ".join(s.unchanged) + ".")
    return notes


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> List[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return [(indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))).rstrip()
            for cells in (header, *rows)]


def render_text(s: Sensitivity) -> str:
    lines = [_title(s), "", "  " + _baseline(s), ""]
    lines += _table(_header(s), _cells(s)) if s.rows else ["  no rates to move"]
    lines += [""] + _notes(s)
    return "\n".join(lines) + "\n"


def render_markdown(s: Sensitivity) -> str:
    head = _header(s)
    lines = [f"### {_title(s)}", "", f"**{_baseline(s)}**", ""]
    if s.rows:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("| --- |" + " ---: |" * (len(head) - 1))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _cells(s)]
    else:
        lines.append("No rates to move.")
    lines += ["", " ".join(_notes(s))]
    return "\n".join(lines) + "\n"


def data(s: Sensitivity) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        **document_head("sensitivity", s.funnel, s.behavior, s.seed, s.runs, s.start, s.days,
                        "Student's t over the runs' paired changes"),
        "step": STEP,
        "leads": json_value(s.leads),
        "base": {st: json_value(v) for st, v in s.base},
        "rates": [{"rate": r.key, "label": r.label, "impact": _round(r.impact),
                   "down": {st: json_value(v) for st, v in r.down},
                   "up": {st: json_value(v) for st, v in r.up}} for r in s.rows],
        "unchanged": list(s.unchanged),
    }
    return doc


def render_json(s: Sensitivity) -> str:
    return json_document(data(s))


RENDERERS: Dict[str, Callable[[Sensitivity], str]] = {"text": render_text, "json": render_json,
                                                      "markdown": render_markdown}


def render(s: Sensitivity, fmt: str) -> str:
    return render_with(RENDERERS, s, fmt, "--sensitivity")


__all__ = ["FORMATS", "GROUPS", "STEP", "Sensitivity", "SensitivityRow", "data", "render", "render_json",
           "render_markdown", "render_text", "sensitivity"]
