"""The expectation grammar: one line of an `expect:` list read into a comparison (no eval).

Expectations are CI gates that `fnl simulate` judges on its forecast. They are written in
the funnel definition's own `expect:` block (`schemas/funnel.schema.json`) or in an
expectations file beside it (`schemas/expect.schema.json`), one expectation a line:

    expectation := METRIC OP OPERAND
                 | METRIC "between" NUMBER "and" NUMBER
                 | FLAG
    OP          := "<" | "<=" | ">" | ">=" | "=="
    OPERAND     := NUMBER | METRIC
    NUMBER      := a decimal such as 3, 0.03, 1e-3, or a percentage such as 3% (= 0.03)

METRIC is a name of `METRICS` (and, for every stage S of the funnel, `S_rate` and
`S_leads`); FLAG is a name of `FLAGS`, shorthand for one comparison.

This module reads and checks lines only: `fnl validate` uses it for the definition's
block (`block_problems`, a line it cannot read is FNL813, a name it does not know FNL812
with did-you-mean, each at its column in the file), and `engine/simulate/expect.py`
measures and judges. It imports nothing of the simulator, so `fnl validate` stays quick.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import JsonPath, Location, Problem
from .load import Document

KEY = "expect"  # the list's key, in a definition and in an expectations file
MAX_TEXT = 200

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
# Names whose value comes from the behaviour model's `sales:` capacity (checked by the simulator).
NEEDS_CAPACITY = ("capacity", "weeks_over_capacity", "no_rep_over_capacity")


@dataclass(frozen=True)
class Expectation:
    """One line of `expect:`. `metric op bound` (and `upper` for between), located at
    its item in the definition or the expectations file it was written in."""

    text: str
    name: str  # the metric or flag as written
    metric: str
    op: str  # one of OPS, or "between"
    bound: Union[float, str]  # a number, or the name of a metric
    upper: Optional[float]
    location: Location
    source_line: str = ""


class BadLine(Exception):
    """A line that cannot be judged: its code (FNL812 or FNL813, FNL814 from the
    simulator), the offset of the problem in the line, what is wrong and how to fix it."""

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
            raise BadLine("FNL813", at, f"cannot read `{text[at]}` in `{text}`",
                       "write `METRIC OP NUMBER` such as `sql_rate >= 0.03`, `METRIC between A and B`, or a flag "
                       "such as `no_sla_breaches`")
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("num") is not None:
            value = float(m.group("num"))
            if not math.isfinite(value):
                raise BadLine("FNL813", start, f"`{m.group('num')}` is not a finite number",
                              "write a number such as 0.03")
            out.append(("num", value / 100 if m.group("pct") else value, m.start("num")))
        elif m.group("name") is not None:
            out.append(("name", m.group("name"), m.start("name")))
        else:
            out.append(("op", m.group("op"), m.start("op")))
        pos = m.end()
    return out


_OP_FIX = {"=": "==", "=>": ">=", "=<": "<=", "!=": None, "<>": None}


def parse(text: str, stages: Sequence[str]) -> Tuple[str, str, str, Union[float, str], Optional[float]]:
    """(name, metric, op, bound, upper) of one expectation, or BadLine with the offset of the
    problem in `text`."""
    tokens = _tokens(text)
    if not tokens:
        raise BadLine("FNL813", 0, "an empty expectation", "write one such as `sql_rate >= 0.03`")
    known = known_metrics(stages)
    kind, name, at = tokens[0]
    if kind != "name":
        raise BadLine("FNL813", at, f"`{text}` does not start with a metric",
                   "start with the metric: `sql_rate >= 0.03`, not `0.03 <= sql_rate`")
    if name in FLAGS:
        if len(tokens) > 1:
            raise BadLine("FNL813", tokens[1][2], f"`{name}` is a flag and takes no comparison",
                       f"write `{name}` alone")
        metric, op, bound = FLAGS[name]
        return name, metric, op, bound, None
    if name not in known:
        _unknown(name, at, stages, known)
    if len(tokens) == 1:
        raise BadLine("FNL813", at + len(name), f"`{name}` needs a comparison",
                   f"compare it with a number, such as `{name} {'>= 0.03' if is_share(name) else '<= 3'}`")
    kind, op, at = tokens[1]
    if kind == "name" and op == "between":
        rest = tokens[2:]
        if len(rest) != 3 or rest[0][0] != "num" or rest[1][:2] != ("name", "and") or rest[2][0] != "num":
            where = next((t[2] for t, want in zip(rest, ("num", "and", "num"))
                          if (t[0] != "num" if want == "num" else t[:2] != ("name", "and"))),
                         rest[3][2] if len(rest) > 3 else len(text))
            raise BadLine("FNL813", where, f"`{text}`: `between` takes two numbers",
                       f"write `{name} between 0.05 and 0.2`")
        low, high = rest[0][1], rest[2][1]
        if low > high:
            raise BadLine("FNL813", rest[0][2], f"`between {_num(low)} and {_num(high)}` is empty: the first is larger",
                       f"write `{name} between {_num(high)} and {_num(low)}`")
        for value, offset in ((low, rest[0][2]), (high, rest[2][2])):
            _check_number(name, value, offset)
        return name, name, "between", low, high
    if kind != "op" or op not in OPS:
        fix = _OP_FIX.get(op) if kind == "op" else None
        raise BadLine("FNL813", at, f"`{op}` is not a comparison" if kind == "op" else f"expected a comparison after "
                   f"`{name}`, found `{op}`",
                   f"write `{fix}`" if fix else "use one of <, <=, >, >=, ==, or `between A and B`")
    if len(tokens) < 3:
        raise BadLine("FNL813", len(text.rstrip()), f"`{text}` has nothing after `{op}`",
                   f"write a number or a metric after it, such as `{name} {op} {'0.03' if is_share(name) else '3'}`")
    kind, bound, at = tokens[2]
    if kind == "name":
        if bound not in known:
            _unknown(bound, at, stages, known)
    elif kind == "num":
        _check_number(name, bound, at)
    else:
        raise BadLine("FNL813", at, f"`{bound}` after `{op}`: expected a number or a metric", f"write `{name} {op} 3`")
    if len(tokens) > 3:
        raise BadLine("FNL813", tokens[3][2], f"`{text}`: unexpected `{tokens[3][1]}` after the comparison",
                   "write one comparison a line; put each expectation in its own item")
    return name, name, op, bound, None


def _check_number(metric: str, value: float, offset: int) -> None:
    if is_share(metric) and not 0 <= value <= 1:
        raise BadLine("FNL813", offset, f"`{metric}` is a share, from 0 to 1; {_num(value)} is outside",
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
    raise BadLine("FNL812", at, message, help)


def _num(x: float) -> str:
    if math.isnan(x):
        return "no value"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.4g}"


# -- a list of expectations in a document ---------------------------------------------------

# Called with (name, metric, bound, text) of each expectation read; raises BadLine for one
# this caller cannot judge (the simulator: a metric its behaviour model cannot give).
Extra = Callable[[str, str, Union[float, str], str], None]


def read(doc: Document, stages: Sequence[str], extra: Optional[Extra] = None,
         key: JsonPath = (KEY,)) -> Tuple[Tuple[Expectation, ...], Tuple[Problem, ...]]:
    """The expectations of the list at `key` in `doc` (a definition or an expectations
    file), each located at its item, and one located problem per line that cannot be
    read (FNL813) or names what fnl does not know (FNL812), at its column. Items that are
    not strings are left to the schema."""
    data: Any = doc.data
    for part in key:
        data = data.get(part) if isinstance(data, dict) else None
    out: List[Expectation] = []
    problems: List[Problem] = []
    for i, text in enumerate(data if isinstance(data, list) else ()):
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            continue  # the schema says what is wrong with it
        where = key + (i,)
        try:
            name, metric, op, bound, upper = parse(text, stages)
            if extra is not None:
                extra(name, metric, bound, text)
        except BadLine as bad:
            loc = doc.expression_location(where, bad.offset)
            problems.append(Problem(bad.code, bad.message, loc, where, bad.help, source_line=doc.source_line(loc)))
            continue
        loc = doc.locate(where)
        out.append(Expectation(text.strip(), name, metric, op, bound, upper, loc, doc.source_line(loc)))
    return tuple(out), tuple(problems)


def block_problems(doc: Document) -> List[Problem]:
    """`fnl validate`'s check of a definition's `expect:` block: every line readable and
    every name known (grammar and names only; nothing is simulated). Skipped while the
    definition's `stages` are not a list of names: the schema reports that first."""
    data = doc.data
    if not isinstance(data, dict) or KEY not in data:
        return []
    stages = data.get("stages")
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        return []
    return list(read(doc, stages)[1])
