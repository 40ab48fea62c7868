"""Expectations: CI gates on a forecast, judged by `fnl simulate`.

Expectations live in two places, and `fnl simulate FUNNEL` judges both:

- the definition's own `expect:` block, a top-level list beside `stages:` (in a split
  funnel, in any one of its files, like every top-level value). It is part of the
  definition, so `fnl validate` checks its grammar and names (FNL812, FNL813, located in
  the funnel's YAML) before anything is simulated; it is not part of the compiled plan
  and does not change its content hash, since expectations change nothing the engine does;
- an expectations file (`schemas/expect.schema.json`) beside the funnel like its
  behaviour model: `funnels/x.expect.yaml` for `funnels/x.yaml`,
  `funnels/acme/acme.expect.yaml` for a split funnel (or the one `*.expect.yaml` in its
  folder). Definition discovery never merges these files. It holds an `expect:` list and,
  optionally, the `funnel:` it is for.

With both, the block's expectations come first, then the file's, each located at its own
file and line. `--expect FILE` replaces both: only that file is judged (the block is still
validated with the definition). `gather` decides which.

Each line is read by the small parser in `engine/expectations.py` (no eval; its docstring
has the grammar), which `fnl validate` uses too without importing the simulator. Every value is a
figure of one run (`measure`); with `--runs R` an expectation judges the mean of the R
values and reports its 95 % interval, and with `--strict` the whole interval must pass
(`judge`). A metric on the right (`rep_load <= capacity`) is compared by its mean.

A failed expectation is a located problem FNL811 at its line, in the funnel's YAML or the
expectations file; a name fnl does not know is FNL812 (with did-you-mean), a line that
cannot be read FNL813, a file that cannot serve this funnel (or a metric its behaviour
model cannot give) FNL814. Reading and the schema use the FNL0xx and FNL1xx codes, as for
funnels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import validate
from ..codes import CODES as ALL_CODES
from ..errors import Problem, ProblemsFound, UsageError
from ..expectations import (FLAGS, KEY, MAX_TEXT, METRICS, NEEDS_CAPACITY, OPS, SHARES, STAGE_METRICS, BadLine,
                            Expectation, _num, is_share, known_metrics, parse, read)
from ..load import Document, load_file
from ..plan import Plan
from ..sources import EXPECT_SUFFIXES, display_path
from ..terminal import escape
from .behavior import Behavior, find_beside
# Sends of these kinds (`tally.MARKETING_KINDS`) are marketing: the ones
# `no_marketing_to_open_opportunities` forbids once sales holds the lead.
from .tally import MARKETING_KINDS  # noqa: F401

SCHEMA_NAME = "expect"
SUFFIXES: Tuple[str, ...] = EXPECT_SUFFIXES
CODES: Dict[str, str] = {code: ALL_CODES[code] for code in ("FNL811", "FNL812", "FNL813", "FNL814")}
_Bad = BadLine  # the name this module used before the grammar moved



# -- the expectations ---------------------------------------------------------------------

@dataclass(frozen=True)
class Judged:
    expectation: Expectation
    value: float  # the mean over the runs
    lo: float
    hi: float
    runs: int
    bound: float  # the bound's value (a metric's mean)
    passed: bool
    strict: bool


@dataclass(frozen=True)
class Gate:
    """The expectations of a forecast, judged."""

    source: str
    strict: bool
    results: Tuple[Judged, ...]

    @property
    def failed(self) -> Tuple[Judged, ...]:
        return tuple(j for j in self.results if not j.passed)


# -- finding and loading ------------------------------------------------------------------

def find_expectations(funnel_path: Union[str, Path]) -> Optional[Path]:
    """The expectations file beside a funnel, found as its behaviour model is."""
    return find_beside(funnel_path, SUFFIXES, "FNL814", "expectations file", "--expect")


def _capacity_check(behavior: Behavior) -> Any:
    """The simulator's own check of each expectation: a metric that needs the reps'
    capacity needs a behaviour model that gives it (FNL814)."""
    capacity = behavior.capacity is not None and bool(behavior.capacity.reps)

    def check(name: str, metric: str, bound: Union[float, str], text: str) -> None:
        needs = [n for n in (name, metric, bound) if isinstance(n, str) and n in NEEDS_CAPACITY]
        if needs and not capacity:
            raise BadLine("FNL814", max(text.find(needs[0]), 0), f"`{needs[0]}` needs the reps' capacity, and the "
                          f"behaviour model ({behavior.source or 'fnl defaults'}) gives none",
                          "add `sales: {leads_per_week: N}` to the behaviour model, or drop this expectation")

    return check


def load_expectations(path: Union[str, Path], plan: Plan, behavior: Behavior) -> Tuple[Expectation, ...]:
    """Read and check the expectations file at `path` for `plan` (and `behavior`, for its
    capacity). Raises ProblemsFound with every located problem, UsageError if no file."""
    file = Path(path)
    if not file.exists() and not file.is_symlink():
        raise UsageError(f"--expect {path}: no such file",
                         "check the path; without --expect fnl judges the funnel's `expect:` block and the "
                         "*.expect.yaml beside the funnel")
    if file.is_dir():
        raise UsageError(f"--expect {path}: is a folder, not an expectations file", "name the *.expect.yaml file")
    loaded = load_file(file, display_path(file))
    if loaded.document is None:
        raise ProblemsFound(tuple(loaded.problems))
    doc = loaded.document
    problems = list(loaded.problems) + validate.schema_problems(doc, SCHEMA_NAME)
    if problems:
        raise ProblemsFound(_sorted(problems))
    data: Dict[str, Any] = doc.data
    if data.get("funnel") not in (None, plan.funnel):
        loc = doc.locate(("funnel",))
        raise ProblemsFound((Problem("FNL814", f"these expectations are for funnel `{data['funnel']}`, not "
                                     f"`{plan.funnel}`", loc, ("funnel",),
                                     f"name the funnel's expectations `{plan.funnel}`, or give the right file "
                                     "with --expect FILE", source_line=doc.source_line(loc)),))
    out, found = read(doc, [s.name for s in plan.stages], _capacity_check(behavior))
    if found:
        raise ProblemsFound(_sorted(found))
    return out


def block_expectations(document: Document, plan: Plan, behavior: Behavior) -> Optional[Tuple[Expectation, ...]]:
    """The expectations of the definition's own `expect:` block (`document` is the
    definition, already validated: its lines read and its names are known), or None
    without one. Raises ProblemsFound for one its behaviour model cannot serve."""
    if not isinstance(document.data, dict) or not isinstance(document.data.get(KEY), list):
        return None
    out, found = read(document, [s.name for s in plan.stages], _capacity_check(behavior))
    if found:
        raise ProblemsFound(_sorted(found))
    return out


def gather(document: Optional[Document], funnel: Union[str, Path], expect_path: Optional[Union[str, Path]],
           plan: Plan, behavior: Behavior) -> Tuple[Optional[Tuple[Expectation, ...]], str]:
    """What `fnl simulate` judges, and where it comes from (for the report's heading).

    `expect_path` (`--expect FILE`) replaces every other source: only that file is judged.
    Otherwise the definition's `expect:` block (from `document`, the definition's loaded
    YAML) and the `*.expect.yaml` beside `funnel` are both judged, the block first; the
    problems of both are raised together, each at its own file and line. (None, "") when
    the funnel has no expectations at all."""
    if expect_path is not None:
        return load_expectations(expect_path, plan, behavior), display_path(Path(expect_path))
    sources: List[str] = []
    out: List[Expectation] = []
    bad: List[Problem] = []
    if document is not None:
        try:
            block = block_expectations(document, plan, behavior)
        except ProblemsFound as found:
            block = ()
            bad.extend(found.problems)
        if block is not None:
            sources.append(document.locate((KEY,)).file)
            out.extend(block)
    beside = find_expectations(funnel)
    if beside is not None:
        try:
            out.extend(load_expectations(beside, plan, behavior))
        except ProblemsFound as found:
            bad.extend(found.problems)
        sources.append(display_path(beside))
    if bad:
        raise ProblemsFound(tuple(bad))
    if not sources:
        return None, ""
    return tuple(out), " and ".join(sources)


def _sorted(problems: Sequence[Problem]) -> Tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda p: (p.location.file, p.location.line, p.location.column, p.code)))


# -- measuring and judging ----------------------------------------------------------------

def measure(run: Any, figs: Any) -> Dict[str, Optional[float]]:
    """Every metric of one run (`run.Run`) and its figures (`figures.Figures`)."""
    e, d = figs.emails, figs.deferrals
    t = run.tally
    sent = float(e.sent)
    caps = [c for r in figs.reps if (c := r.capacity) is not None]
    out: Dict[str, Optional[float]] = {
        "leads": float(figs.leads), "emails_sent": sent, "emails_per_lead": float(e.per_lead_mean),
        "emails_per_lead_p95": float(e.per_lead_p95), "emails_per_lead_max": float(e.per_lead_max),
        "max_emails_in_7d": float(e.max_in_7_days),
        "max_marketing_emails_in_7d": float(t.most_marketing_in_7_days),
        "unsubscribes": float(figs.unsubscribes),
        "unsubscribe_rate": figs.unsubscribes / sent if sent else 0.0,
        "unsubscribed_leads": float(figs.unsubscribed_leads), "bounces": float(figs.bounces),
        "bounce_rate": figs.bounces / sent if sent else 0.0,
        "deferrals": float(d.quiet_hours + d.frequency_cap + d.at), "quiet_hours_deferrals": float(d.quiet_hours),
        "frequency_cap_deferrals": float(d.frequency_cap), "at_deferrals": float(d.at),
        "handoffs": float(len(t.first_handoff)), "sla_breaches": float(figs.sla_breaches),
        "rep_load": float(max((r.per_week_max for r in figs.reps), default=0)),
        "capacity": float(min(caps)) if caps else None,
        "weeks_over_capacity": float(sum(r.weeks_over_capacity for r in figs.reps)),
        "marketing_to_open_opportunities": float(t.marketing_after_handoff),
    }
    for s in figs.stages:
        out[f"{s.name}_rate"] = float(s.reached_share)
        out[f"{s.name}_leads"] = float(s.reached)
    return out


def _holds(op: str, x: float, bound: float, upper: Optional[float]) -> bool:
    tol = 1e-9 * max(1.0, abs(bound))
    if op == "<":
        return x < bound - tol
    if op == "<=":
        return x <= bound + tol
    if op == ">":
        return x > bound + tol
    if op == ">=":
        return x >= bound - tol
    if op == "==":
        return abs(x - bound) <= tol
    assert upper is not None
    return bound - tol <= x <= upper + 1e-9 * max(1.0, abs(upper))


def judge(expectations: Sequence[Expectation], measured: Sequence[Dict[str, Optional[float]]],
          strict: bool = False, source: str = "") -> Gate:
    """Each expectation judged on its metric's values in `measured` (one dict a run): the
    mean must hold; with `strict`, both ends of the 95 % interval of the mean as well."""
    from .figures import estimate

    results = []
    for x in expectations:
        values = [m.get(x.metric) for m in measured]
        numbers = [float(v) for v in values if v is not None]
        if not numbers:
            results.append(Judged(x, math.nan, math.nan, math.nan, len(measured), math.nan, False, strict))
            continue
        est = estimate(numbers)
        lo, hi = max(est.lo, 0.0), (min(est.hi, 1.0) if is_share(x.metric) or x.metric.endswith("_rate") else est.hi)
        if isinstance(x.bound, str):
            others = [float(v) for m in measured if (v := m.get(x.bound)) is not None]
            bound = math.fsum(others) / len(others) if others else math.nan
        else:
            bound = float(x.bound)
        if math.isnan(bound):
            passed = False
        elif strict:
            passed = _holds(x.op, lo, bound, x.upper) and _holds(x.op, hi, bound, x.upper)
        else:
            passed = _holds(x.op, est.mean, bound, x.upper)
        results.append(Judged(x, est.mean, lo, hi, len(numbers), bound, passed, strict))
    return Gate(source, strict, tuple(results))


# -- words --------------------------------------------------------------------------------

def _value_text(j: Judged) -> str:
    if j.runs > 1:
        return f"{_num(j.value)} (95 % interval {_num(j.lo)}–{_num(j.hi)} over {j.runs} runs)"
    return _num(j.value)


def _rule(j: Judged) -> str:
    x = j.expectation
    side = "mean" if not j.strict or j.runs < 2 else "whole 95 % interval"
    what = f"{x.metric} {x.op} {x.bound}" if x.name in FLAGS else x.text
    of = f"the {side} of {j.runs} runs" if j.runs > 1 else "the value of the run"
    return f"{what} must hold for {of}" + (" (--strict)" if j.strict and j.runs > 1 else "")


def problems(gate: Gate) -> Tuple[Problem, ...]:
    """One located FNL811 per failed expectation."""
    out = []
    for j in gate.failed:
        x = j.expectation
        shown = _value_text(j)
        if isinstance(x.bound, str):
            shown += f" ({x.bound} {_num(j.bound)})"
        if x.name in FLAGS:
            shown = f"{x.metric} is {shown}"
        meaning = METRICS.get(x.metric) or next((d.replace("stage S", f"`{x.metric[:-len(s)]}`")
                                                 for s, d in STAGE_METRICS.items() if x.metric.endswith(s)), "")
        help = f"{x.metric}: {meaning}; {_rule(j)}"
        if j.strict and j.runs > 1 and _holds(x.op, j.value, j.bound, x.upper):
            help += "; the mean holds, the interval does not: more --runs narrow it"
        out.append(Problem("FNL811", f"expectation {x.text} failed: {shown}", x.location, (), help,
                           source_line=x.source_line))
    return tuple(out)


def summary(gate: Gate) -> str:
    held = len(gate.results) - len(gate.failed)
    return f"expectations: {held} of {len(gate.results)} hold" + (" (--strict)" if gate.strict else "")


def text_lines(gate: Optional[Gate]) -> List[str]:
    """The report's lines: the count that hold, then each expectation, one a line."""
    if gate is None:
        return []
    rows = [("holds" if j.passed else "FAILS", escape(j.expectation.text), _value_text(j)) for j in gate.results]
    width = max((len(r[1]) for r in rows), default=0)
    return ["", f"Expectations ({escape(gate.source)}): {summary(gate)[len('expectations: '):]}"] + \
        [f"  {a:<5}  {b:<{width}}  {c}" for a, b, c in rows]


def markdown_lines(gate: Optional[Gate]) -> List[str]:
    if gate is None:
        return []
    lines = ["#### Expectations", "", f"{summary(gate)[0].upper()}{summary(gate)[1:]} ({gate.source}).", "",
             "| expectation | value | holds |", "| --- | ---: | --- |"]
    lines += [f"| `{j.expectation.text}` | {_value_text(j)} | {'yes' if j.passed else '**no**'} |"
              for j in gate.results]
    return lines + [""]


def json_items(gate: Optional[Gate]) -> List[Dict[str, Any]]:
    """The JSON report's `expectations` array."""
    if gate is None:
        return []

    def num(x: float) -> Optional[float]:
        return None if math.isnan(x) else round(x, 6) + 0.0

    return [{"name": j.expectation.name, "text": j.expectation.text, "metric": j.expectation.metric,
             "value": num(j.value), "lo": num(j.lo), "hi": num(j.hi), "passed": j.passed, "strict": j.strict,
             "file": j.expectation.location.file, "line": j.expectation.location.line,
             "column": j.expectation.location.column} for j in gate.results]


__all__ = ["CODES", "FLAGS", "MAX_TEXT", "OPS", "SHARES", "Gate", "Judged", "METRICS", "STAGE_METRICS", "BadLine",
           "Expectation", "block_expectations", "find_expectations", "gather", "is_share", "judge", "json_items",
           "known_metrics", "load_expectations", "markdown_lines", "measure", "parse", "problems", "summary",
           "text_lines"]
