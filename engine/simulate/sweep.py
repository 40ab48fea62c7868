"""`fnl simulate FUNNEL --sweep 'PATH=LO..HI/N'`: the forecast at each of N values of one
behaviour-model setting.

PATH names a setting of the behaviour file by its keys, dotted as the file nests them
(`email.by_industry.saas.open`, `visits.daily`, `arrivals.guide.leads`; a leading
`behavior.` may be written). The values are `LO..HI/N` (N evenly spaced values from LO to
HI, both included; whole numbers when LO and HI are) or a list `A,B,C`. For each value the
file is read with that one setting replaced and checked as `fnl simulate` checks it, so a
value that cannot happen (a probability above 1) is the same located problem, and the
funnel is simulated with the same seeds: every draw is keyed by (seed, lead, what it is
for), so the rows differ by the setting's own effect (common random numbers). Each point
runs on `workers` like any forecast. One row per value: leads, the headline stages
(leads reaching them and their share), emails per lead, leads unsubscribed and SLA
breaches; with `--runs R` each figure is the mean of R runs with its 95 % interval.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ProblemsFound, UsageError
from ..state import iso
from ..terminal import escape, json_document
from . import DAY, Behavior, Progress, Workers, behaviour_file, check_sizes, start_minute
from . import horizon_for
from .compare import _round, document_head, json_value, metrics, render_with
from .figures import HEADLINE_STAGES, Estimate, Num, estimate

FORMATS = ("text", "json", "markdown")
MAX_POINTS = 50
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?"


@dataclass(frozen=True)
class Sweep:
    """What the user asked to vary: a dotted path in the behaviour file and its values."""

    text: str
    path: Tuple[str, ...]
    values: Tuple[float, ...]


@dataclass(frozen=True)
class SweepRow:
    value: float
    figures: Tuple[Tuple[str, str, str, Num], ...]  # (key, label, kind, value)


@dataclass(frozen=True)
class SweepResult:
    funnel: str
    behavior: Behavior  # the model as written, before any value is set
    sweep: Sweep
    seed: int
    runs: int
    start: int
    days: float
    leads_asked: Optional[int]
    rows: Tuple[SweepRow, ...]


def _number(text: str, sweep: str) -> float:
    share = text.endswith("%")
    try:
        value = float(text[:-1] if share else text)
    except ValueError:
        raise UsageError(f"--sweep {sweep}: `{text}` is not a number", _EXAMPLE) from None
    if not math.isfinite(value):
        raise UsageError(f"--sweep {sweep}: `{text}` is not a finite number", _EXAMPLE)
    return value / 100 if share else value


_EXAMPLE = "write PATH=LO..HI/N, such as --sweep email.default.open=0.2..0.4/5, or PATH=A,B,C"


def parse_sweep(text: str) -> Sweep:
    """`PATH=LO..HI/N` or `PATH=A,B,C`, or UsageError saying how to write it."""
    if "=" not in text:
        raise UsageError(f"--sweep {text}: no `=`", _EXAMPLE)
    raw_path, _, spec = text.partition("=")
    parts = [p.strip() for p in raw_path.strip().split(".")]
    if parts and parts[0] in ("behavior", "behaviour") and len(parts) > 1:
        parts = parts[1:]
    if not parts or any(not p for p in parts):
        raise UsageError(f"--sweep {text}: `{raw_path.strip()}` is not a dotted path of the behaviour file", _EXAMPLE)
    spec = spec.strip()
    ranged = re.fullmatch(rf"({_NUMBER})\s*\.\.\s*({_NUMBER})\s*/\s*(\d+)", spec)
    if ranged:
        lo, hi, n = _number(ranged.group(1), text), _number(ranged.group(2), text), int(ranged.group(3))
        if not 2 <= n <= MAX_POINTS:
            raise UsageError(f"--sweep {text}: give from 2 to {MAX_POINTS} points after the `/`", _EXAMPLE)
        whole = all(re.fullmatch(r"[+-]?\d+", g) for g in (ranged.group(1), ranged.group(2)))
        values = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        if whole:
            values = [float(round(v)) for v in values]
    elif re.fullmatch(rf"{_NUMBER}(\s*,\s*{_NUMBER})*", spec):
        values = [_number(v.strip(), text) for v in spec.split(",")]
        if len(values) > MAX_POINTS:
            raise UsageError(f"--sweep {text}: give at most {MAX_POINTS} values", _EXAMPLE)
    else:
        raise UsageError(f"--sweep {text}: `{spec}` is neither LO..HI/N nor a list of numbers", _EXAMPLE)
    unique = tuple(dict.fromkeys(values))
    return Sweep(text, tuple(parts), unique)


def _setter(sweep: Sweep, value: float) -> Callable[[Any], Any]:
    """What replaces the setting in the behaviour file's data (a copy)."""
    import copy
    import difflib

    def apply(data: Any) -> Any:
        data = copy.deepcopy(data)
        node = data
        for depth, key in enumerate(sweep.path):
            where = ".".join(sweep.path[:depth]) or "the top level"
            if not isinstance(node, dict):
                raise UsageError(f"--sweep {sweep.text}: `{where}` of the behaviour file is not a mapping, so it "
                                 f"has no `{key}`", "name a setting the behaviour file has, key by key")
            last = depth == len(sweep.path) - 1
            if key not in node and not last:
                guess = difflib.get_close_matches(key, [str(k) for k in node], n=1, cutoff=0.6)
                hint = f"did you mean `{guess[0]}`?" if guess else \
                    f"the keys there: {', '.join(sorted(str(k) for k in node)) or 'none'}"
                raise UsageError(f"--sweep {sweep.text}: the behaviour file has no `{key}` under {where}", hint)
            if last:
                old = node.get(key)
                if isinstance(old, (dict, list)):
                    raise UsageError(f"--sweep {sweep.text}: `{'.'.join(sweep.path)}` is a "
                                     f"{'mapping' if isinstance(old, dict) else 'list'}, not a number",
                                     "sweep one number, such as its `open` rate")
                node[key] = int(value) if float(value).is_integer() and not isinstance(old, float) else value
            else:
                node = node[key]
        return data

    return apply


def sweep(funnel: str, spec: str, behavior_path: Optional[str] = None, *, leads: Optional[int] = None,
          days: Optional[int] = None, seed: int = 1, runs: int = 1, start: Optional[str] = None,
          progress: Optional[Progress] = None, workers: Optional[Workers] = None) -> SweepResult:
    """The forecast of `funnel` at every value of the sweep, same seeds for every value."""
    from ..pipeline import plan_for
    from .behavior import load_behavior
    from .figures import figures
    from .run import simulate

    wanted = parse_sweep(spec)
    check_sizes(leads, days, runs)
    first_minute = start_minute(start)
    found = behaviour_file(funnel, behavior_path)
    plan = plan_for(funnel)
    if found is None:
        raise UsageError(f"--sweep {spec}: {funnel} has no behaviour model to vary",
                         "write a *.behavior.yaml beside the funnel (`fnl schema behavior`), or pass --behavior FILE")
    written = load_behavior(found, plan)
    # Every point is checked before any is simulated: a bad value stops the sweep at once.
    models = []
    for value in wanted.values:
        try:
            models.append((value, load_behavior(found, plan, edit=_setter(wanted, value))))
        except ProblemsFound as exc:
            exc.context = (f"fnl simulate: with --sweep {'.'.join(wanted.path)}={_show(value)} the behaviour model "
                           "has problems (the line is the setting's place in the file)")
            raise
    headline = tuple(s.name for s in plan.stages if s.name in HEADLINE_STAGES)
    horizons = [horizon_for(plan, m, leads, days, workers, first_minute) for _, m in models]
    total = len(models) * runs
    rows = []
    for n, (value, model) in enumerate(models):
        per_run: List[Dict[str, Tuple[str, str, Optional[float]]]] = []
        for i in range(runs):
            k = n * runs + i
            report = (lambda steps, k=k: progress(k, total, steps)) if progress is not None else None
            run = simulate(plan, model, seed=seed + i, leads=leads, horizon=horizons[n],
                           start=first_minute, progress=report, workers=workers)
            per_run.append(metrics(figures(run), headline))
        cells = []
        for key, (label, kind, _) in per_run[0].items():
            values = [m[key][2] for m in per_run]
            if any(v is None for v in values):
                continue
            nums = [float(v) for v in values if v is not None]
            cells.append((key, label, kind, estimate(nums) if runs > 1 else nums[0]))
        rows.append(SweepRow(value, tuple(cells)))
    return SweepResult(funnel, written, wanted, seed, runs, first_minute, max(horizons) / DAY, leads, tuple(rows))


# -- rendering ----------------------------------------------------------------------------

def _show(value: float) -> str:
    return f"{value:g}"


def _columns(r: SweepResult) -> List[Tuple[str, str, str]]:
    first = r.rows[0].figures
    keep = []
    for key, label, kind, _ in first:
        if key == "leads" or key.startswith("rates.") or key in ("emails_per_lead", "unsubscribed_leads",
                                                                   "sla_breaches"):
            keep.append((key, label, kind))
        elif key.startswith("stages.") and key.split(".")[1] in HEADLINE_STAGES:
            keep.append((key, label, kind))
    return keep


def _cell(v: Num, kind: str) -> str:
    def one(x: float) -> str:
        if kind == "share":
            return f"{100 * x:.1f} %"
        if kind == "mean":
            return f"{x:.2f}"
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"

    if isinstance(v, Estimate):
        return one(v.mean) if v.lo == v.hi else f"{one(v.mean)} ({one(v.lo)}–{one(v.hi)})"
    return one(float(v))


def _header(r: SweepResult) -> List[str]:
    return [".".join(r.sweep.path)] + [label for _, label, _ in _columns(r)]


def _cells(r: SweepResult) -> List[List[str]]:
    cols = _columns(r)
    out = []
    for row in r.rows:
        by_key = {key: (kind, v) for key, _, kind, v in row.figures}
        out.append([_show(row.value)] + [_cell(by_key[key][1], kind) if key in by_key else "–"
                                         for key, _, kind in cols])
    return out


def _title(r: SweepResult) -> str:
    runs = f", {r.runs} runs (seeds {r.seed}–{r.seed + r.runs - 1})" if r.runs > 1 else f", seed {r.seed}"
    return (f"Sweep for {escape(r.funnel)}: {escape('.'.join(r.sweep.path))} at {len(r.rows)} values, "
            f"{r.days:g} days from {iso(r.start)[:10]}{runs}")


def _notes(r: SweepResult) -> List[str]:
    model = escape(r.behavior.source) if r.behavior.source else "the behaviour model"
    notes = [f"Each row is {model} with only this setting changed, simulated with the same seeds (common random "
             "numbers), so rows differ by the setting's own effect."]
    if r.runs > 1:
        notes.append(f"Figures are means over {r.runs} runs with 95 % intervals (simulation noise only).")
    return notes


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> List[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    return [(indent + "  ".join(c.rjust(w) for c, w in zip(cells, widths))).rstrip() for cells in (header, *rows)]


def render_text(r: SweepResult) -> str:
    lines = [_title(r), ""] + _table(_header(r), _cells(r)) + [""] + _notes(r)
    return "\n".join(lines) + "\n"


def render_markdown(r: SweepResult) -> str:
    head = _header(r)
    lines = [f"### {_title(r)}", "", "| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _cells(r)]
    lines += ["", " ".join(_notes(r))]
    return "\n".join(lines) + "\n"


def data(r: SweepResult) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        **document_head("sweep", r.funnel, r.behavior, r.seed, r.runs, r.start, r.days, "Student's t over the runs"),
        "setting": ".".join(r.sweep.path),
        "points": [{"value": _round(row.value), "figures": {key: json_value(v) for key, _, _, v in row.figures}}
                   for row in r.rows],
    }
    return doc


def render_json(r: SweepResult) -> str:
    return json_document(data(r))


RENDERERS: Dict[str, Callable[[SweepResult], str]] = {"text": render_text, "json": render_json,
                                                      "markdown": render_markdown}


def render(r: SweepResult, fmt: str) -> str:
    return render_with(RENDERERS, r, fmt, "--sweep")


__all__ = ["FORMATS", "Sweep", "SweepResult", "SweepRow", "data", "parse_sweep", "render", "sweep"]
