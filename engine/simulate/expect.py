"""Expectations: CI gates on a forecast, judged by `fnl simulate`.

An expectations file (`schemas/expect.schema.json`) sits beside the funnel like its
behaviour model: `funnels/x.expect.yaml` for `funnels/x.yaml`, `funnels/acme/acme.expect.yaml`
for a split funnel (or the one `*.expect.yaml` in its folder); `--expect FILE` names another.
Definition discovery never merges these files. It holds an `expect:` list, one expectation a
line, each read by the small parser below (no eval):

    expectation := METRIC OP OPERAND
                 | METRIC "between" NUMBER "and" NUMBER
                 | FLAG
    OP          := "<" | "<=" | ">" | ">=" | "=="
    OPERAND     := NUMBER | METRIC
    NUMBER      := a decimal such as 3, 0.03, 1e-3, or a percentage such as 3% (= 0.03)

METRIC is a name of `METRICS` (and, for every stage S of the funnel, `S_rate` and
`S_leads`); FLAG is a name of `FLAGS`, shorthand for one comparison. Every value is a
figure of one run (`measure`); with `--runs R` an expectation judges the mean of the R
values and reports its 95 % interval, and with `--strict` the whole interval must pass
(`judge`). A metric on the right (`rep_load <= capacity`) is compared by its mean.

A failed expectation is a located problem FNL811 at its line; a name fnl does not know is
FNL812 (with did-you-mean), a line that cannot be read FNL813, a file that cannot serve this
funnel FNL814. Reading and the schema use the FNL0xx and FNL1xx codes, as for funnels.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import validate
from ..codes import CODES as ALL_CODES
from ..errors import Location, Problem, ProblemsFound, UsageError
from ..load import load_file
from ..plan import Plan
from ..sources import EXPECT_SUFFIXES, display_path
from ..terminal import escape
from .behavior import Behavior, find_beside

SCHEMA_NAME = "expect"
SUFFIXES: Tuple[str, ...] = EXPECT_SUFFIXES
CODES: Dict[str, str] = {code: ALL_CODES[code] for code in ("FNL811", "FNL812", "FNL813", "FNL814")}
MAX_TEXT = 200

# Sends of these kinds are marketing: the ones `no_marketing_to_open_opportunities` forbids
# once sales holds the lead.
MARKETING_KINDS = ("nurture", "broadcast")

# name -> what it measures, one run at a time. Shares are from 0 to 1.
METRICS: Dict[str, str] = {
    "leads": "leads the engine took in",
    "emails_sent": "emails sent, of every kind",
    "emails_per_lead": "emails per lead, the mean",
    "emails_per_lead_p95": "emails per lead, the 95th percentile",
    "emails_per_lead_max": "emails to the lead that got the most",
    "max_emails_in_7d": "the most emails any lead got in any 7 days",
    "max_marketing_emails_in_7d": "the most nurture and broadcast emails any lead got in any 7 days",
    "unsubscribes": "unsubscribe events",
    "unsubscribe_rate": "unsubscribe events per email sent (a share)",
    "unsubscribed_leads": "leads unsubscribed at the horizon",
    "bounces": "emails that bounced",
    "bounce_rate": "bounces per email sent (a share)",
    "deferrals": "sends held back, by quiet hours, the frequency cap and `at:` times together",
    "quiet_hours_deferrals": "sends held back by quiet hours",
    "frequency_cap_deferrals": "sends held back by the frequency cap",
    "at_deferrals": "sends held back until a step's `at:` time",
    "handoffs": "leads handed off to sales",
    "sla_breaches": "SLA breaches of handed-off leads",
    "rep_load": "the busiest week of the busiest rep: first handoffs to one rep in one week",
    "capacity": "the smallest capacity of any rep in the behaviour model (`sales:`), leads a week",
    "weeks_over_capacity": "rep-weeks with more first handoffs than that rep's own capacity",
    "marketing_to_open_opportunities": "nurture and broadcast emails sent to a lead after its handoff to sales",
}
# For every stage S of the funnel.
STAGE_METRICS: Dict[str, str] = {
    "_rate": "the share of the leads that ever reached stage S",
    "_leads": "leads that ever reached stage S",
}
# A flag is one comparison with a name of its own.
FLAGS: Dict[str, Tuple[str, str, float]] = {
    "no_marketing_to_open_opportunities": ("marketing_to_open_opportunities", "==", 0.0),
    "no_sla_breaches": ("sla_breaches", "==", 0.0),
    "no_rep_over_capacity": ("weeks_over_capacity", "==", 0.0),
}
OPS = ("<", "<=", ">", ">=", "==")
SHARES = ("unsubscribe_rate", "bounce_rate")
NEEDS_CAPACITY = ("capacity", "weeks_over_capacity", "no_rep_over_capacity")


# -- the expectations ---------------------------------------------------------------------

@dataclass(frozen=True)
class Expectation:
    """One line of `expect:`. `metric op bound` (and `upper` for between)."""

    text: str
    name: str  # the metric or flag as written
    metric: str
    op: str  # one of OPS, or "between"
    bound: Union[float, str]  # a number, or the name of a metric
    upper: Optional[float]
    location: Location
    source_line: str = ""


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


class _Bad(Exception):
    def __init__(self, code: str, offset: int, message: str, help: str) -> None:
        super().__init__(message)
        self.code, self.offset, self.message, self.help = code, offset, message, help


def is_share(metric: str) -> bool:
    return metric in SHARES or (metric.endswith("_rate") and metric not in METRICS)


def known_metrics(stages: Sequence[str]) -> List[str]:
    out = list(METRICS)
    for stage in stages:
        out += [f"{stage}{suffix}" for suffix in STAGE_METRICS]
    return out


_TOKEN = re.compile(r"\s*(?:(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?P<pct>\s*%)?"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|(?P<op>[<>=!]+))")


def _tokens(text: str) -> List[Tuple[str, Any, int]]:
    out: List[Tuple[str, Any, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise _Bad("FNL813", at, f"cannot read `{text[at]}` in `{text}`",
                       "write `METRIC OP NUMBER` such as `sql_rate >= 0.03`, `METRIC between A and B`, or a flag "
                       "such as `no_sla_breaches`")
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("num") is not None:
            value = float(m.group("num"))
            if not math.isfinite(value):
                raise _Bad("FNL813", start, f"`{m.group('num')}` is not a finite number", "write a number such as 0.03")
            out.append(("num", value / 100 if m.group("pct") else value, m.start("num")))
        elif m.group("name") is not None:
            out.append(("name", m.group("name"), m.start("name")))
        else:
            out.append(("op", m.group("op"), m.start("op")))
        pos = m.end()
    return out


_OP_FIX = {"=": "==", "=>": ">=", "=<": "<=", "!=": None, "<>": None}


def parse(text: str, stages: Sequence[str]) -> Tuple[str, str, str, Union[float, str], Optional[float]]:
    """(name, metric, op, bound, upper) of one expectation, or _Bad with the offset of the
    problem in `text`."""
    tokens = _tokens(text)
    if not tokens:
        raise _Bad("FNL813", 0, "an empty expectation", "write one such as `sql_rate >= 0.03`")
    known = known_metrics(stages)
    kind, name, at = tokens[0]
    if kind != "name":
        raise _Bad("FNL813", at, f"`{text}` does not start with a metric",
                   "start with the metric: `sql_rate >= 0.03`, not `0.03 <= sql_rate`")
    if name in FLAGS:
        if len(tokens) > 1:
            raise _Bad("FNL813", tokens[1][2], f"`{name}` is a flag and takes no comparison",
                       f"write `{name}` alone")
        metric, op, bound = FLAGS[name]
        return name, metric, op, bound, None
    if name not in known:
        _unknown(name, at, stages, known)
    if len(tokens) == 1:
        raise _Bad("FNL813", at + len(name), f"`{name}` needs a comparison",
                   f"compare it with a number, such as `{name} {'>= 0.03' if is_share(name) else '<= 3'}`")
    kind, op, at = tokens[1]
    if kind == "name" and op == "between":
        rest = tokens[2:]
        if len(rest) != 3 or rest[0][0] != "num" or rest[1][:2] != ("name", "and") or rest[2][0] != "num":
            where = next((t[2] for t, want in zip(rest, ("num", "and", "num"))
                          if (t[0] != "num" if want == "num" else t[:2] != ("name", "and"))),
                         rest[3][2] if len(rest) > 3 else len(text))
            raise _Bad("FNL813", where, f"`{text}`: `between` takes two numbers",
                       f"write `{name} between 0.05 and 0.2`")
        low, high = rest[0][1], rest[2][1]
        if low > high:
            raise _Bad("FNL813", rest[0][2], f"`between {_num(low)} and {_num(high)}` is empty: the first is larger",
                       f"write `{name} between {_num(high)} and {_num(low)}`")
        for value, offset in ((low, rest[0][2]), (high, rest[2][2])):
            _check_number(name, value, offset)
        return name, name, "between", low, high
    if kind != "op" or op not in OPS:
        fix = _OP_FIX.get(op) if kind == "op" else None
        raise _Bad("FNL813", at, f"`{op}` is not a comparison" if kind == "op" else f"expected a comparison after "
                   f"`{name}`, found `{op}`",
                   f"write `{fix}`" if fix else "use one of <, <=, >, >=, ==, or `between A and B`")
    if len(tokens) < 3:
        raise _Bad("FNL813", len(text.rstrip()), f"`{text}` has nothing after `{op}`",
                   f"write a number or a metric after it, such as `{name} {op} {'0.03' if is_share(name) else '3'}`")
    kind, bound, at = tokens[2]
    if kind == "name":
        if bound not in known:
            _unknown(bound, at, stages, known)
    elif kind == "num":
        _check_number(name, bound, at)
    else:
        raise _Bad("FNL813", at, f"`{bound}` after `{op}`: expected a number or a metric", f"write `{name} {op} 3`")
    if len(tokens) > 3:
        raise _Bad("FNL813", tokens[3][2], f"`{text}`: unexpected `{tokens[3][1]}` after the comparison",
                   "write one comparison a line; put each expectation in its own item")
    return name, name, op, bound, None


def _check_number(metric: str, value: float, offset: int) -> None:
    if is_share(metric) and not 0 <= value <= 1:
        raise _Bad("FNL813", offset, f"`{metric}` is a share, from 0 to 1; {_num(value)} is outside",
                   f"write a share such as {_num(value / 100) if value > 1 else '0.03'} or a percentage such as "
                   f"{_num(value) if value > 1 else '3'}%")


def _unknown(name: str, at: int, stages: Sequence[str], known: Sequence[str]) -> None:
    guess = difflib.get_close_matches(name, list(known) + list(FLAGS), n=1, cutoff=0.6)
    stage_like = next((name[:-len(s)] for s in STAGE_METRICS if name.endswith(s)), None)
    if stage_like is not None and stage_like not in stages:
        message = f"`{name}`: `{stage_like}` is not a stage of the funnel"
        help = f"did you mean `{guess[0]}`?" if guess else "its stages: " + ", ".join(f"`{s}`" for s in stages)
    else:
        message = f"`{name}` is not a metric fnl knows"
        help = f"did you mean `{guess[0]}`?" if guess else "see the metrics in `fnl schema expect` or the README"
    raise _Bad("FNL812", at, message, help)


# -- finding and loading ------------------------------------------------------------------

def find_expectations(funnel_path: Union[str, Path]) -> Optional[Path]:
    """The expectations file beside a funnel, found as its behaviour model is."""
    return find_beside(funnel_path, SUFFIXES, "FNL814", "expectations file", "--expect")


def load_expectations(path: Union[str, Path], plan: Plan, behavior: Behavior) -> Tuple[Expectation, ...]:
    """Read and check the expectations at `path` for `plan` (and `behavior`, for its
    capacity). Raises ProblemsFound with every located problem, UsageError if no file."""
    file = Path(path)
    if not file.exists() and not file.is_symlink():
        raise UsageError(f"--expect {path}: no such file",
                         "check the path; without --expect fnl uses the *.expect.yaml beside the funnel")
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
    stages = [s.name for s in plan.stages]
    capacity = behavior.capacity is not None and bool(behavior.capacity.reps)
    out: List[Expectation] = []
    for i, text in enumerate(data["expect"]):
        where = ("expect", i)
        try:
            name, metric, op, bound, upper = parse(text, stages)
            needs = [n for n in (name, metric, bound) if isinstance(n, str) and n in NEEDS_CAPACITY]
            if needs and not capacity:
                raise _Bad("FNL814", text.find(needs[0]), f"`{needs[0]}` needs the reps' capacity, and the "
                           f"behaviour model ({behavior.source or 'fnl defaults'}) gives none",
                           "add `sales: {leads_per_week: N}` to the behaviour model, or drop this expectation")
        except _Bad as bad:
            loc = doc.expression_location(where, bad.offset)
            problems.append(Problem(bad.code, bad.message, loc, where, bad.help, source_line=doc.source_line(loc)))
            continue
        loc = doc.locate(where)
        out.append(Expectation(text.strip(), name, metric, op, bound, upper, loc, doc.source_line(loc)))
    if problems:
        raise ProblemsFound(_sorted(problems))
    return tuple(out)


def _sorted(problems: Sequence[Problem]) -> Tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda p: (p.location.file, p.location.line, p.location.column, p.code)))


# -- measuring and judging ----------------------------------------------------------------

def measure(run: Any, figs: Any) -> Dict[str, Optional[float]]:
    """Every metric of one run (`run.Run`) and its figures (`figures.Figures`)."""
    from .figures import WEEK, most_in_window

    e, d = figs.emails, figs.deferrals
    sent = float(e.sent)
    handed = {r.index: r.handed_off_at for r in run.leads if r.created and r.handed_off_at is not None}
    marketing = sum(1 for s in run.sends if s.kind in MARKETING_KINDS and s.lead in handed
                    and s.minute > handed[s.lead])
    caps = [c for r in figs.reps if (c := r.capacity) is not None]
    by_lead: Dict[int, List[int]] = {}
    for s in run.sends:
        if s.kind in MARKETING_KINDS:
            by_lead.setdefault(s.lead, []).append(s.minute)
    out: Dict[str, Optional[float]] = {
        "leads": float(figs.leads), "emails_sent": sent, "emails_per_lead": float(e.per_lead_mean),
        "emails_per_lead_p95": float(e.per_lead_p95), "emails_per_lead_max": float(e.per_lead_max),
        "max_emails_in_7d": float(e.max_in_7_days),
        "max_marketing_emails_in_7d": float(max((most_in_window(m, WEEK) for m in by_lead.values()), default=0)),
        "unsubscribes": float(figs.unsubscribes),
        "unsubscribe_rate": figs.unsubscribes / sent if sent else 0.0,
        "unsubscribed_leads": float(figs.unsubscribed_leads), "bounces": float(figs.bounces),
        "bounce_rate": figs.bounces / sent if sent else 0.0,
        "deferrals": float(d.quiet_hours + d.frequency_cap + d.at), "quiet_hours_deferrals": float(d.quiet_hours),
        "frequency_cap_deferrals": float(d.frequency_cap), "at_deferrals": float(d.at),
        "handoffs": float(len(handed)), "sla_breaches": float(figs.sla_breaches),
        "rep_load": float(max((r.per_week_max for r in figs.reps), default=0)),
        "capacity": float(min(caps)) if caps else None,
        "weeks_over_capacity": float(sum(r.weeks_over_capacity for r in figs.reps)),
        "marketing_to_open_opportunities": float(marketing),
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

def _num(x: float) -> str:
    if math.isnan(x):
        return "no value"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.4g}"


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


__all__ = ["CODES", "FLAGS", "Gate", "Judged", "METRICS", "STAGE_METRICS", "Expectation", "find_expectations",
           "judge", "json_items", "load_expectations", "markdown_lines", "measure", "parse", "problems", "summary",
           "text_lines"]
