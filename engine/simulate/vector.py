"""The vectorised simulator: a whole cohort through the plan as NumPy columns.

`engine.core` states the funnel's rules for one lead; `Engine` applies the same rules to
every lead of a chunk at once, each row at its own minute where the leads act at
different ones. Two drivers feed it:

- the daily grid (`run_chunk`, here), for plans whose leads live on one: the behaviour
  model's `timing.day: same_minute` (each of a lead's days is one minute of the engine,
  the reference funnel's daily step), steps that wait whole days, and no rule that moves
  a send off that minute (`Kit.off_grid` says why a plan is not of that kind). Every
  lead's day is the same minute, so the whole cohort advances day by day;
- each lead's own next item (`rounds`), for every other plan: days spread over the
  hours, steps' `at:` times, quiet hours and a frequency cap holding sends back,
  handoff SLAs, CRM reactions, transitions and sequences on events.

`unsupported` says, in words, what neither takes (leads arriving through an entry or a
lead magnet with double opt-in, a handoff that escalates a breached SLA, a score window, a
condition the columns cannot read); those run lead by lead through the engine itself
(`run`).

On the daily grid it is the engine's order, minute by minute, for every lead at once:

1. A lead arriving today is created (consent, fit points, its opt-in's points and
   delivery); a lead with a step due today takes the clock: decay, exits, due steps.
2. The engagement with today's emails, in the engine's order: each lead's bounces first,
   then, email by email, its unsubscribe or its open, click and reply (all drawn when the
   email is sent, as `run` draws them), each a step of the engine: decay, the event, the
   transitions in declaration order, exits, entries, due steps. Emails those steps send
   queue their engagement after the lead's others.
3. The website visit of the leads whose candidate day it is (`draws.Gaps`; never again
   for a lead that has unsubscribed), then what it sends.

`simulate` in `run` picks the way; within a chunk, every shortcut this module takes (a
lead already settled this minute, a lower bound of its next due step, only the leads a
step changed) skips work the engine's rules show would change nothing, and the test
below holds it to that.

The draws are `run`'s (`draws`, keyed by lead number), so a run gives the same tally
whichever simulator ran it: `tests/test_simulate_vector.py` holds the two to the same
JSON, byte for byte, and replays the events this simulator generated through
`engine.drive` (the loop `fnl trace` and the runtime use) to the same sends, stage
entries, scores, unsubscribes and handoffs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import clock
from .. import core
from .. import evaluate as ev
from .. import plan as p
from ..core import FACTS
from ..errors import UsageError
from ..state import Event
from . import tally as tl
from .behavior import DAY, Behavior
from ..units import format_clock
from .cohort import Cohort, Column, lead_timezone, local_minute
from .draws import Draws, below, fold_column
from .run import visit_gaps

CHUNK = 250_000  # leads simulated together: memory is bounded by the chunk, not the run
_NONE = -1
_NEVER = np.iinfo(np.int64).max
_NO_CHANCE = np.uint64(0)  # the bound of a rate of 0 (no hit); any rate above 0 has a bound of at least 2047


class Unsupported(Exception):
    """Why a plan or behaviour model cannot run as columns, in words."""


# -- conditions as columns ----------------------------------------------------------------

Val = Tuple[str, Any]  # (kind, value): "bool" / "num" arrays, "stage" codes, "static" per-lead Python values


class Conditions:
    """Condition trees compiled to functions of a chunk's rows. A subtree that reads only
    the lead's profile (and fit, segment, persona, which do too) is static: evaluated once
    per distinct profile with the engine's own scalar evaluator. The rest reads the
    engine's values as columns: score (as `engine.score.shown` gives it), stage,
    emails_sent, unsubscribed, bounced, the facts the engine reads (`core.FACTS`: `opened`, `replied`, …,
    optionally by name and `since` a stage) and `stage_at_least`."""

    def __init__(self, plan: p.Plan) -> None:
        self.plan = plan
        self.stage_code = {s.name: i for i, s in enumerate(plan.stages)}

    # static ---------------------------------------------------------------------------
    def static(self, tree: p.Tree) -> bool:
        if "var" in tree:
            return tree["var"] in ("fit", "segment", "persona")
        if "call" in tree:
            return False
        return all(self.static(a) for a in list(tree.get("args", [])) + list(tree.get("list", [])))

    def static_value(self, tree: p.Tree, profile: Dict[str, Any]) -> Any:
        def resolve(node: p.Tree) -> Any:
            if "attr" in node:
                return profile.get(node["attr"])
            name = node["var"]
            if name == "fit":
                return self.plan.fit is not None and ev.holds(self.plan.fit.tree, resolve)
            groups = self.plan.segments if name == "segment" else self.plan.personas
            return next((g.name for g in groups if ev.holds(g.when.tree, resolve)), None)
        return ev.evaluate(tree, resolve)

    # compiling --------------------------------------------------------------------------
    def compile(self, tree: Optional[p.Tree]) -> Callable[["Chunk", np.ndarray], np.ndarray]:
        """A function giving, for rows of a chunk, whether the condition holds."""
        if tree is None:
            return lambda c, rows: np.ones(rows.shape[0], dtype=bool)
        f = self._node(tree)
        return lambda c, rows: _truth(f(c, rows))

    def _node(self, tree: p.Tree) -> Callable[["Chunk", np.ndarray], Val]:
        if self.static(tree):
            key = repr(tree)
            return lambda c, rows: ("static", (c, key, tree, rows))
        if "lit" in tree:
            raise AssertionError("a literal is static")  # pragma: no cover
        if "var" in tree:
            return self._var(tree["var"])
        if "call" in tree:
            return self._call(tree)
        op = tree["op"]
        args = [self._node(a) for a in tree["args"]]
        if op in ("and", "or"):
            a, b = args
            if op == "and":
                return lambda c, rows: ("bool", _truth(a(c, rows)) & _truth(b(c, rows)))
            return lambda c, rows: ("bool", _truth(a(c, rows)) | _truth(b(c, rows)))
        if op == "not":
            return lambda c, rows: ("bool", ~_truth(args[0](c, rows)))
        if op == "neg":
            return lambda c, rows: ("num", -_number(args[0](c, rows)))
        if op in ("+", "-", "*", "/"):
            return self._arith(op, tree["args"], args)
        return self._compare(op, tree["args"], args)

    def _var(self, name: str) -> Callable[["Chunk", np.ndarray], Val]:
        if name == "score":
            return lambda c, rows: ("num", shown(c.score[rows]))
        if name == "emails_sent":
            return lambda c, rows: ("num", c.emails[rows].astype(np.float64))
        if name == "unsubscribed":
            return lambda c, rows: ("bool", c.unsub[rows])
        if name == "bounced":
            return lambda c, rows: ("bool", c.bounced[rows])
        if name == "stage":
            return lambda c, rows: ("stage", c.stage[rows])
        if name in FACTS:
            return self._call({"call": name, "args": [], "kwargs": {}})
        raise Unsupported(f"a condition reads `{name}`, which the vectorised simulator does not keep")

    def _call(self, tree: p.Tree) -> Callable[["Chunk", np.ndarray], Val]:
        name, args, kwargs = tree["call"], tree["args"], tree["kwargs"]
        if any("lit" not in a for a in args) or any("lit" not in v for v in kwargs.values()):
            raise Unsupported(f"`{name}(…)` with an argument that is not a literal")
        lits = [a["lit"] for a in args]
        if name == "stage_at_least":
            index = self.plan.stage_index(str(lits[0])) if lits else -1
            order = np.asarray([s.index for s in self.plan.stages] + [-1], dtype=np.int64)
            return lambda c, rows: ("bool", (order[c.stage[rows]] >= index) & (index >= 0))
        key = FACTS.get(name)
        if key is None or set(kwargs) - {"since"}:
            raise Unsupported(f"a condition calls `{name}`, which the vectorised simulator does not keep")
        fact = f"{key}.{lits[0]}" if lits and lits[0] else key
        since = kwargs.get("since", {}).get("lit") if kwargs else None
        if since is not None:
            stage = str(since)

            def after(c: "Chunk", rows: np.ndarray) -> Val:
                seen = c.fact(fact)[rows]
                entered = c.entered_at(stage)[rows]
                return "bool", (seen != _NONE) & (entered != _NONE) & (seen > entered)
            return after
        return lambda c, rows: ("bool", c.fact(fact)[rows] != _NONE)

    def _score_against(self, op: str, trees: List[p.Tree]) -> Callable[["Chunk", np.ndarray], Val]:
        """`score OP number` (or `number OP score`): the score as conditions read it
        (`shown`, rounded to 6 places) only where rounding could matter, within 1e-5 of
        the number; elsewhere the score itself compares the same."""
        flipped = trees[0].get("var") != "score"
        number = float(trees[0 if flipped else 1]["lit"])
        mirror = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
        how = mirror[op] if flipped else op

        def f(c: "Chunk", rows: np.ndarray) -> Val:
            x = c.score[rows]
            near = np.abs(x - number) < 1e-5
            if near.any():
                x = x.copy()
                x[near] = shown(x[near])
            return "bool", _ordered(how, x, number)
        return f

    def _arith(self, op: str, trees: List[p.Tree], args: List[Callable[["Chunk", np.ndarray], Val]]
               ) -> Callable[["Chunk", np.ndarray], Val]:
        a, b = args

        def f(c: "Chunk", rows: np.ndarray) -> Val:
            x, y = _number(a(c, rows)), _number(b(c, rows))
            with np.errstate(all="ignore"):
                if op == "+":
                    return "num", x + y
                if op == "-":
                    return "num", x - y
                if op == "*":
                    return "num", x * y
                return "num", np.where(y != 0, x / np.where(y != 0, y, 1.0), np.nan)
        return f

    def _compare(self, op: str, trees: List[p.Tree], args: List[Callable[["Chunk", np.ndarray], Val]]
                 ) -> Callable[["Chunk", np.ndarray], Val]:
        a, b = args
        if any("var" in t and t["var"] == "stage" for t in trees):
            other = trees[1] if trees[0].get("var") == "stage" else trees[0]
            if op not in ("==", "!=", "in", "not in") or not self.static(other) or (op in ("in", "not in")
                                                                                   and trees[0].get("var") != "stage"):
                raise Unsupported("a condition compares `stage` other than with ==, != or in")
            key = repr(other)

            names = [s.name for s in self.plan.stages]

            def matching(values: List[Any]) -> np.ndarray:
                """[stage code (the last: none), distinct profile] -> whether they match."""
                out = np.zeros((len(names) + 1, len(values)), dtype=bool)
                for j, w in enumerate(values):
                    for i, name in enumerate(names):
                        out[i, j] = (isinstance(w, (list, tuple)) and name in w) if op in ("in", "not in") \
                            else name == w
                return out

            def staged(c: "Chunk", rows: np.ndarray) -> Val:
                table, back = c.static_table(key, other, "stage", matching)
                hit = table[c.stage[rows], back[rows]]
                return "bool", hit if op in ("==", "in") else ~hit
            return staged
        if op in ("in", "not in"):
            raise Unsupported(f"`{op}` on a value the engine keeps (only on the profile, or `stage`)")
        if any(t.get("var") == "score" for t in trees) and any(isinstance(t.get("lit"), (int, float))
                                                               and not isinstance(t.get("lit"), bool) for t in trees):
            return self._score_against(op, trees)

        def f(c: "Chunk", rows: np.ndarray) -> Val:
            x, y = _comparable(a(c, rows), op), _comparable(b(c, rows), op)
            with np.errstate(invalid="ignore"):
                if op == "==":
                    return "bool", x == y
                if op == "!=":
                    return "bool", ~(x == y)
                if op == "<":
                    return "bool", x < y
                if op == "<=":
                    return "bool", x <= y
                if op == ">":
                    return "bool", x > y
                return "bool", x >= y
        return f


def _static(v: Val, how: str, convert: Callable[[Any], Any], dtype: Any) -> np.ndarray:
    """A static value, converted once per distinct profile, for the rows asked about."""
    c, key, tree, rows = v[1]
    table, back = c.static_table(key, tree, how, lambda values: np.asarray([convert(x) for x in values],
                                                                        dtype=dtype))
    return table[back[rows]]


def _ordered(op: str, x: np.ndarray, y: Any) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "==":
            return np.asarray(x == y)
        if op == "!=":
            return np.asarray(x != y)
        if op == "<":
            return np.asarray(x < y)
        if op == "<=":
            return np.asarray(x <= y)
        if op == ">":
            return np.asarray(x > y)
        return np.asarray(x >= y)


def _truth(v: Val) -> np.ndarray:
    kind, value = v
    if kind == "bool":
        return value
    if kind == "num":
        return (value != 0) & ~np.isnan(value)
    if kind == "stage":
        return value >= 0
    return _static(v, "truth", bool, bool)


def _number(v: Val) -> np.ndarray:
    """Numbers as the engine's arithmetic takes them; anything else is NaN (None)."""
    kind, value = v
    if kind == "num":
        return value
    if kind == "static":
        return _static(v, "number", lambda x: float(x) if isinstance(x, (int, float)) and not isinstance(x, bool)
                       else np.nan, np.float64)
    raise Unsupported("arithmetic on a value that is not a number")


def _comparable(v: Val, op: str) -> np.ndarray:
    """A side of a comparison with a number the engine keeps: NaN where `_compare` finds
    no order (None, a boolean, a text); for == a boolean is its number, as in Python."""
    kind, value = v
    if kind == "num":
        return value
    equal = op in ("==", "!=")
    if kind == "bool":
        return value.astype(np.float64) if equal else np.full(value.shape[0], np.nan)
    if kind == "static":
        def one(x: Any) -> float:
            if isinstance(x, bool):
                return float(x) if equal else np.nan
            return float(x) if isinstance(x, (int, float)) else np.nan
        return _static(v, "equal" if equal else "order", one, np.float64)
    raise Unsupported("a comparison of `stage` with a number")


def shown(score: np.ndarray) -> np.ndarray:
    """`engine.score.shown` for a column: NumPy's rounding, and Python's `round` where a
    value lies so near a half that the two could differ."""
    out = np.round(score, 6)
    scaled = score * 1e6
    near = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3
    if near.any():
        idx = np.nonzero(near)[0]
        out[idx] = [round(float(x), 6) for x in score[idx]]
    return out


# -- what the plan asks of the columns ------------------------------------------------------

@dataclass(frozen=True)
class Kit:
    """The plan and behaviour model, as tables the columns use."""

    plan: p.Plan
    behavior: Behavior
    conditions: Conditions
    stages: Tuple[str, ...]
    sends: Tuple[Tuple[Optional[str], Optional[str], str, str], ...]  # code -> (sequence, step, template, kind)
    templates: Tuple[str, ...]
    pages: Tuple[str, ...]
    transitions: Tuple[Tuple[np.ndarray, int, Callable[..., np.ndarray], str, Optional[str]], ...]
    # ^ (sources, to, when, id, on)
    sequences: Tuple[p.Sequence, ...]
    entry: Tuple[Callable[..., np.ndarray], ...]
    exit_when: Tuple[Optional[Callable[..., np.ndarray]], ...]
    step_when: Dict[Tuple[int, int], Tuple[Callable[..., np.ndarray], Optional[Callable[..., np.ndarray]]]]
    step_code: Dict[Tuple[int, int], int]
    order: Tuple[int, ...]  # sequences by (-priority, declaration)
    suppressed: np.ndarray  # [stage, sequence] -> the stage suppresses the sequence
    known: frozenset
    exit_on_state: bool  # some sequence has an exit condition (`exit.when`)
    # No sequence has an entry or exit condition or starts on an event, and none ends on
    # an event but an unsubscribe or bounce (which end every sequence anyway): after an
    # event, only a row whose stage, unsubscribe or bounce changed can leave or enter a
    # sequence.
    settle_on_change: bool
    crm: Tuple[str, ...]  # the CRM events the behaviour model makes (event code _CRM + i)
    magnets: Tuple[str, ...]  # the lead magnets (an opt-in's detail)
    quiet: bool  # quiet hours can hold a send back
    cap: bool  # the frequency cap can hold a send back
    sla: bool  # some handoff has an SLA
    # None: every lead lives on a daily grid (`run_chunk`, day by day); else why not, in
    # words, and the leads advance from their own next event (`rounds`).
    off_grid: Optional[str] = None

    @property
    def grid(self) -> bool:
        return self.off_grid is None


def unsupported(plan: p.Plan, behavior: Behavior, start: Optional[int] = None,
                horizon: Optional[int] = None) -> Optional[str]:
    """Why this plan and behaviour model cannot run as columns (from minute `start` for
    `horizon` minutes), or None."""
    try:
        kit(plan, behavior, start, horizon)
    except Unsupported as why:
        return str(why)
    return None


def lead_by_lead(plan: p.Plan, behavior: Behavior, start: int, horizon: int, engine: str) -> Optional[str]:
    """Why a run with `engine` (auto, vector or per-lead) goes lead by lead, or None when
    it runs as columns; a UsageError when `--engine vector` asks for columns it cannot have."""
    if engine == "per-lead":
        return "--engine per-lead"
    why = unsupported(plan, behavior, start, horizon)
    if why is not None and engine == "vector":
        raise UsageError(f"--engine vector: {plan.funnel} cannot be simulated as columns: {why}",
                         "leave --engine at auto: it simulates such a funnel lead by lead")
    return why


def kit(plan: p.Plan, behavior: Behavior, start: Optional[int] = None, horizon: Optional[int] = None) -> Kit:
    """The tables for `plan`, or Unsupported. `Kit.off_grid` says why the leads do not
    live on a daily grid (then they advance event by event); quiet hours keep them on
    it when they never hold back a send of a run from `start` for `horizon` minutes
    (`quiet_hours_bind`)."""
    off: List[str] = []  # why not the daily grid, first reason first
    if not behavior.timing.same_minute:
        off.append("the behaviour model spreads a lead's day over its hours (`timing.day: spread`)")
    if behavior.crm:
        off.append("the behaviour model has CRM reactions")
    if any(a.kind != "magnet" for a in behavior.arrivals):
        raise Unsupported("leads arrive through an entry (a CRM event or an import), not only lead magnets")
    confirming = [a.source for a in behavior.arrivals if a.confirm is not None]
    if confirming:
        raise Unsupported(f"lead magnet `{confirming[0]}` asks for double opt-in: opt-ins waiting for their "
                          "confirmation are simulated lead by lead")
    escalating = [h.stage for h in plan.handoff if h.escalate is not None and h.sla_minutes is not None]
    if escalating:
        raise Unsupported(f"handoff `{escalating[0]}` escalates a breached SLA (another owner, a new deadline): "
                          "escalations are simulated lead by lead")
    pol = plan.policies
    cap = pol.cap_max is not None and bool(pol.cap_per_minutes)
    if cap:
        off.append("the funnel has a frequency cap")
    d = plan.scoring.decay
    if d is not None and d.window_minutes is not None:
        raise Unsupported("the score decays within a window")
    if any(t.on is not None for t in plan.transitions):
        off.append("a transition waits for an event (`on:`)")
    if start is not None and horizon is not None and start + horizon >= 1 << 31:
        raise Unsupported("the run goes past the year 6053, beyond the columns' clock")
    sla = any(rule.sla_minutes is not None for rule in plan.handoff)
    if sla:
        off.append("a handoff has an SLA")
    conditions = Conditions(plan)
    for group in plan.segments + plan.personas + ((p.Group("fit", plan.fit),) if plan.fit else ()):
        if not conditions.static(group.when.tree):
            raise Unsupported(f"`{group.name}` reads more than the lead's profile")
    if any(not conditions.static(f.when.tree) for f in plan.scoring.fit):
        raise Unsupported("a fit score reads more than the lead's profile")
    sends: List[Tuple[Optional[str], Optional[str], str, str]] = []
    step_code: Dict[Tuple[int, int], int] = {}
    step_when: Dict[Tuple[int, int], Tuple[Callable[..., np.ndarray], Optional[Callable[..., np.ndarray]]]] = {}
    for s, seq in enumerate(plan.sequences):
        if seq.on is not None:
            off.append(f"the sequence {seq.name} starts on an event (`on:`)")
        if seq.exit is not None and any(not on.startswith(("email.", "site.visited")) for on in seq.exit.on):
            off.append(f"the sequence {seq.name} ends on an event other than an email's or a visit")
        for i, step in enumerate(seq.steps):
            if step.at_minute is not None:
                off.append(f"the step {seq.name}/{step.id} sends at a time of day (`at:`)")
            if step.wait_minutes % DAY:
                off.append(f"the step {seq.name}/{step.id} waits part of a day")
            step_when[(s, i)] = (conditions.compile(step.when.tree if step.when else None),
                                 conditions.compile(step.unless.tree) if step.unless else None)
            if step.action == "send":
                step_code[(s, i)] = len(sends)
                sends.append((seq.name, step.id, step.template or "", seq.kind))
    for m in plan.lead_magnets:
        if m.delivers:
            sends.append((None, None, m.delivers, "delivery"))
    def from_stages(names: Sequence[str]) -> np.ndarray:
        """[stage code, the last: none] -> whether the transition leaves from it."""
        out = np.zeros(len(plan.stages) + 1, dtype=bool)
        for name in names:
            if plan.stage_index(name) >= 0:
                out[plan.stage_index(name)] = True
        return out

    transitions = tuple((from_stages(t.sources), plan.stage_index(t.to),
                         conditions.compile(t.when.tree if t.when else None), t.id, t.on) for t in plan.transitions)
    entry = tuple(conditions.compile(seq.when.tree if seq.when else None) for seq in plan.sequences)
    exit_when = tuple(conditions.compile(seq.exit.when.tree) if seq.exit and seq.exit.when else None
                      for seq in plan.sequences)
    suppressed = np.zeros((len(plan.stages) + 1, len(plan.sequences)), dtype=bool)
    for st in plan.stages:
        for s, seq in enumerate(plan.sequences):
            suppressed[st.index, s] = seq.kind in st.suppress or seq.name in st.suppress
    order = tuple(sorted(range(len(plan.sequences)), key=lambda s: (-plan.sequences[s].priority, s)))
    has_quiet = pol.quiet_from is not None and pol.quiet_to is not None
    if has_quiet and not off:  # on the daily grid they may never hold a send back
        held = quiet_hours_bind(plan, behavior, start, horizon) if start is not None and horizon is not None \
            else "some time"
        if held is not None:
            off.append(f"the funnel's quiet hours hold back a send at {held}")
    templates = tuple(dict.fromkeys(t for _, _, t, _ in sends))
    pages = tuple(page for page, _ in behavior.visits.pages)
    crm = tuple(dict.fromkeys(o.event for reaction in behavior.crm for o in reaction.outcomes))
    return Kit(plan, behavior, conditions, tuple(s.name for s in plan.stages), tuple(sends), templates, pages,
               transitions, plan.sequences, entry, exit_when, step_when, step_code, order, suppressed,
               core.known_details(plan), any(w is not None for w in exit_when),
               all(seq.when is None and seq.on is None and (seq.exit is None or (seq.exit.when is None and all(
                   on.split(".")[:2] in (["email", "unsubscribed"], ["email", "bounced"]) for on in seq.exit.on)))
                   for seq in plan.sequences),
               crm, tuple(m.name for m in plan.lead_magnets), has_quiet and bool(off), cap, sla,
               off[0] if off else None)


# -- one chunk of leads -------------------------------------------------------------------

class Chunk:
    """The engine's state of every lead of a chunk, as columns (row = lead of the chunk)."""

    def __init__(self, k: Kit, cohort: Cohort, seed: int, start: int, end: int, log: Optional[List[Event]]) -> None:
        self.k, self.cohort, self.draws = k, cohort, Draws(seed)
        self.start, self.end, self.log = start, end, log
        n = len(cohort)
        self.n = n
        plan = k.plan
        self.lead = cohort.index
        self.stage = np.full(n, -1, dtype=np.int64)
        self.score = np.zeros(n)
        self.score_period = np.zeros(n, dtype=np.int64)
        self.last = np.full(n, -1, dtype=np.int64)  # the minute of the lead's last engine step
        self.unsub = np.zeros(n, dtype=bool)
        self.unsub_at = np.full(n, _NONE, dtype=np.int64)
        self.bounced = np.zeros(n, dtype=bool)
        self.emails = np.zeros(n, dtype=np.int64)
        self.facts: Dict[str, np.ndarray] = {}
        self.engaged: Dict[str, np.ndarray] = {}  # "email.opened.<template>" -> scored already
        self.entered: Dict[str, np.ndarray] = {}
        self.reached = np.full((len(plan.stages), n), _NONE, dtype=np.int64)
        self.first_stage = np.full(n, -1, dtype=np.int64)
        S = len(plan.sequences)
        self.run_step = np.full((S, n), -1, dtype=np.int64)
        self.due_at = np.full((S, n), _NEVER, dtype=np.int64)  # _NEVER where the sequence is not running
        self.next_due = np.full(n, _NEVER, dtype=np.int64)  # a lower bound of each row's next due time
        self.finished = np.zeros((S, n), dtype=bool)
        self.handed = np.full(n, _NONE, dtype=np.int64)
        self.handoffs: List[tl.Handoff] = []
        self.handoff_count = np.zeros(n, dtype=np.int64)
        self._static: Dict[Tuple[str, str], Tuple[np.ndarray, np.ndarray]] = {}
        self._values: Dict[str, Tuple[List[Any], np.ndarray]] = {}
        self._classes: Optional[Tuple[np.ndarray, List[int]]] = None
        self._number_classes: Dict[Tuple[str, Tuple[float, ...]], np.ndarray] = {}
        # Sends: per send, the row, minute, send code and what the lead did with it.
        self.sent_rows: List[np.ndarray] = []
        self.sent_minute: List[np.ndarray] = []
        self.sent_code: List[np.ndarray] = []
        self.sent_flags: List[np.ndarray] = []  # bits: opened 1, clicked 2, replied 4, unsubscribed 8, bounced 16
        self.sent_variant: List[np.ndarray] = []
        self.steps = 0
        self.pw = self._powers()
        self.limits: Dict[str, Tuple[Optional[np.ndarray], ...]] = {}  # per email: `limits_for`
        self.limits_same: Dict[str, Tuple[Any, ...]] = {}
        self.fit = self.static("fit", {"var": "fit"}).astype(bool) if plan.fit is not None else np.zeros(n, bool)
        self.segment = self.static("segment", {"var": "segment"}) if plan.segments else None
        self.persona = self.static("persona", {"var": "persona"}) if plan.personas else None
        self.variants: Dict[int, List[str]] = {code: [v.name for v in step.variants]
                                               for (s, i), code in k.step_code.items()
                                               for step in (k.sequences[s].steps[i],) if step.variants}

    # reading --------------------------------------------------------------------------
    def static(self, key: str, tree: p.Tree) -> np.ndarray:
        """A static condition's value for every row (Python values)."""
        table, back = self.static_table(key, tree, "value", _objects)
        return table[back]

    def static_table(self, key: str, tree: p.Tree, how: str, convert: Callable[[List[Any]], np.ndarray]
                     ) -> Tuple[np.ndarray, np.ndarray]:
        """(`convert` of the tree's value for each distinct profile, each row's profile):
        the scalar evaluator runs once per distinct profile of the attributes it reads."""
        got = self._static.get((key, how))
        if got is None:
            values, back = self._distinct(key, tree)
            got = self._static[(key, how)] = (convert(values), back)
        return got

    def _distinct(self, key: str, tree: p.Tree) -> Tuple[List[Any], np.ndarray]:
        got = self._values.get(key)
        if got is None:
            names = sorted(_attrs(self.k.plan, tree))
            columns = [c for c in self.cohort.profile if c.name in names]
            back, first = groups([_classes_of(c, _literal_cuts(self.k.plan, tree, c.name)) for c in columns], self.n)
            count = max(1, first.shape[0])
            if first.shape[0] == 0:
                first = np.zeros(1, dtype=np.int64)
            values = []
            for u in range(count):
                row = int(first[u])
                profile = {c.name: c.value(row, int(self.lead[row])) for c in columns} if self.n else {}
                values.append(self.k.conditions.static_value(tree, {k: v for k, v in profile.items()
                                                                    if v is not None}))
            got = self._values[key] = (values, back)
        return got

    def fact(self, key: str) -> np.ndarray:
        got = self.facts.get(key)
        if got is None:
            got = self.facts[key] = np.full(self.n, _NONE, dtype=np.int64)
        return got

    def entered_at(self, stage: str) -> np.ndarray:
        got = self.entered.get(stage)
        if got is None:
            got = self.entered[stage] = np.full(self.n, _NONE, dtype=np.int64)
        return got

    def _powers(self) -> np.ndarray:
        d = self.k.plan.scoring.decay
        span = (self.end - self.start) // DAY + 8
        if d is None or d.every_minutes <= 0:
            return np.ones(1)
        most = span * DAY // d.every_minutes + 2
        return np.asarray([d.factor ** i if i else 1.0 for i in range(most + 1)])

    def period(self, minute: int) -> int:
        d = self.k.plan.scoring.decay
        if d is None or d.every_minutes <= 0 or d.factor == 1.0:
            return 0
        return clock.wall(minute, self.k.plan.policies.default_timezone) // d.every_minutes

    def rate_class(self) -> Tuple[np.ndarray, List[int]]:
        """Rows that the behaviour model's email rates cannot tell apart share a class:
        (each row's class, a row of each class)."""
        if self._classes is None:
            email, plan = self.k.behavior.email, self.k.plan
            names = {a.attribute for a in email.by_attribute}
            for group in plan.segments + plan.personas:
                names |= _attrs(plan, group.when.tree)
            back, first = groups([c.codes for c in self.cohort.profile if c.name in names], self.n)
            self._classes = (back, first.tolist())
        return self._classes

    def limits_for(self, template: str, variant: Optional[str]) -> Tuple[Optional[np.ndarray], ...]:
        """For one email (and A/B variant): per (open, click, reply, unsubscribe, bounce),
        the bound of each class of rows' rate (`rate_class`) by the behaviour model's
        fallbacks (template, segment, persona, profile attributes), as the largest folded
        draw that is a hit (`draws.below`), so a chance is one integer comparison;
        `_NO_CHANCE` for a rate of 0; None where every class has the same bound (then
        `limits_same` holds it). Worked out once per class of alike rows."""
        key = f"{template}\x00{variant or ''}"
        got = self.limits.get(key)
        if got is None:
            _back, first = self.rate_class()
            email = self.k.behavior.email
            bounds = []
            for row in first:
                seg = self.segment[row] if self.segment is not None else None
                per = self.persona[row] if self.persona is not None else None
                r = email.rates_for(template, variant=variant, persona=per, segment=seg, profile=self.profile(row))
                bounds.append([_NO_CHANCE if (b := below(x)) is None else b
                               for x in (r.open, r.click, r.reply, r.unsubscribe, r.bounce)])
            table = np.asarray(bounds, dtype=np.uint64).reshape(-1, 5)
            columns = tuple(None if (table[:, c] == table[0, c]).all() else np.ascontiguousarray(table[:, c])
                            for c in range(5))
            self.limits_same[key] = tuple(np.uint64(table[0, c]) if table.shape[0] else _NO_CHANCE
                                          for c in range(5))
            got = self.limits[key] = columns
        return got

    def profile(self, row: int) -> Dict[str, Any]:
        return self.cohort.profile_of(row)


def groups(columns: List[np.ndarray], n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows alike in every one of `columns` (codes, -2 and up) as (each row's group, the
    first row of each group). Few distinct codes go by one pass over the rows."""
    if not columns or n == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(1 if n else 0, dtype=np.int64)
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for c in columns:
        size = int(c.max()) + 3
        key += (c + 2) * radix
        radix *= size
        if radix > 1 << 24:
            _, back = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
            back = back.reshape(-1)
            break
    else:
        present = np.zeros(radix, dtype=bool)
        present[key] = True
        back = (np.cumsum(present) - 1)[key]
    first = np.zeros(int(back.max()) + 1, dtype=np.int64)
    first[back[::-1]] = np.arange(n - 1, -1, -1)
    return back, first


def _counts(values: np.ndarray) -> Counter:
    """value -> how many, of non-negative whole numbers."""
    if values.shape[0] == 0:
        return Counter()
    counts = np.bincount(values)
    seen = np.nonzero(counts)[0]
    return Counter(dict(zip(seen.tolist(), counts[seen].tolist())))


def _objects(values: List[Any]) -> np.ndarray:
    table = np.empty(len(values), dtype=object)
    table[:] = values
    return table


_ORDERED = ("==", "!=", "<", "<=", ">", ">=")


def _nodes(plan: p.Plan, tree: p.Tree) -> List[p.Tree]:
    """Every node of a condition, with the fit, segment and persona conditions it reads."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if node.get("var") == "fit" and plan.fit is not None:
            stack.append(plan.fit.tree)
        if node.get("var") in ("segment", "persona"):
            stack.extend(g.when.tree for g in (plan.segments if node["var"] == "segment" else plan.personas))
        stack.extend(node.get("args", []))
        stack.extend(node.get("list", []))
    return out


def _literal_cuts(plan: p.Plan, tree: p.Tree, name: str) -> Optional[List[float]]:
    """The numbers attribute `name` is compared with, when the condition reads it only
    as `name OP number` (or `number OP name`): then a value's side of each number (below,
    equal, above) decides the condition, not the value itself. None otherwise."""
    nodes = _nodes(plan, tree)
    uses = sum(1 for node in nodes if node.get("attr") == name)
    cuts: List[float] = []
    for node in nodes:
        args = node.get("args", [])
        if node.get("op") in _ORDERED and len(args) == 2:
            for mine, other in ((args[0], args[1]), (args[1], args[0])):
                lit = other.get("lit")
                if mine.get("attr") == name and isinstance(lit, (int, float)) and not isinstance(lit, bool):
                    cuts.append(float(lit))
                    uses -= 1
    return sorted(set(cuts)) if uses == 0 else None


def _classes_of(column: Column, cuts: Optional[List[float]]) -> np.ndarray:
    """A profile column's codes for grouping rows a condition cannot tell apart: a
    number's side of each of `cuts` (`_literal_cuts`), or else the codes themselves."""
    if cuts is None or column.kind == "choice" or not column.values:
        return column.codes
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column.values):
        return column.codes
    values = np.asarray(column.values, dtype=np.float64)
    if not np.isfinite(values).all() or np.abs(values).max() >= 2.0 ** 53:  # not exact as floats
        return column.codes
    codes = column.codes
    present = codes >= 0
    v = values[np.where(present, codes, 0)]
    out = np.zeros(codes.shape[0], dtype=np.int64)
    for i, cut in enumerate(cuts):
        out += (np.sign(v - cut).astype(np.int64) + 1) * 3 ** i
    return np.where(present, out, codes)


def _attrs(plan: p.Plan, tree: p.Tree) -> set:
    return {node["attr"] for node in _nodes(plan, tree) if "attr" in node}


# -- the engine's step, for many leads at one minute ----------------------------------------

_BOUNCED, _UNSUB, _OPEN, _CLICK, _REPLY, _VISIT, _OPTIN = range(7)
_TYPES = ("email.bounced", "email.unsubscribed", "email.opened", "email.clicked", "email.replied", "site.visited",
          "magnet.downloaded")
_CRM = 100  # the CRM event `Kit.crm[i]` is event _CRM + i
_FLAG = {_OPEN: 1, _CLICK: 2, _REPLY: 4, _UNSUB: 8, _BOUNCED: 16}
_LONG_AGO = -(1 << 62)  # a send time before any window
Now = Union[int, np.ndarray]  # one minute for every row, or each row's own


def _pick(minute: Now, sel: np.ndarray) -> Now:
    """The minutes of the rows `sel` picks (a mask or positions) out of rows at `minute`."""
    return minute[sel] if isinstance(minute, np.ndarray) else minute


def _column(minute: Now, n: int) -> np.ndarray:
    return minute.astype(np.int64, copy=False) if isinstance(minute, np.ndarray) else np.full(n, minute, np.int64)


class Engine(Chunk):
    """The rules of `engine.core`, applied to columns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._periods: Dict[int, int] = {}
        self.kept = self._kept_facts()
        # Events the leads make this minute: (rows, type, detail, order, second), each lead's in `order`.
        self.queue: List[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.arrival_day = np.zeros(self.n, dtype=np.int64)
        self.base = 0  # the minute of the grid's day 0
        self.next_visit = np.full(self.n, _NEVER, dtype=np.int64)  # the grid day of the next candidate visit
        self.visit_n = np.zeros(self.n, dtype=np.int64)  # which candidate day that is (from 0)
        self.gaps = visit_gaps(self.k.behavior, self.end - self.start)
        self.recent_until = np.full(self.n, -1, dtype=np.int64)  # a visit before this day follows a click
        self.week = Week(self.n)  # the most emails a lead got in any 7 days
        self.marketing_week = Week(self.n)  # ... of marketing emails
        self.day = 0  # the grid day being simulated
        self._visit_states: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None  # `visit_states`
        self.created_rows: List[np.ndarray] = []
        self.rejected = 0
        self.queued = 0
        self.second = 0  # the second of the step being applied: 0, 10 (engagement) or 50 (visit)
        self.points: Dict[Tuple[str, str], float] = {}
        seq_stages = []
        for seq in self.k.sequences:
            allowed = np.zeros(len(self.k.stages) + 1, dtype=bool)
            for name in seq.stages:
                allowed[self.k.plan.stage_index(name)] = True
            if not seq.stages:
                allowed[:] = True
            allowed[-1] = False  # no stage: not created
            seq_stages.append(allowed)
        self.seq_stages = seq_stages
        visits = self.k.behavior.visits
        self.visit_stages = np.ones(len(self.k.stages) + 1, dtype=bool)
        if visits.stages:
            self.visit_stages[:] = False
            for name in visits.stages:
                self.visit_stages[self.k.plan.stage_index(name)] = True
        self.visit_stages[-1] = False
        n, plan = self.n, self.k.plan
        self.sla_deadline = np.full(n, _NONE, dtype=np.int64)  # _NONE: no SLA running
        self.sla_stage = np.full(n, -1, dtype=np.int64)
        self.sla_breaches = np.zeros(n, dtype=np.int64)
        self.deferred = {rule: np.zeros(n, dtype=np.int64) for rule in ("at", "quiet_hours", "frequency_cap")}
        pol = plan.policies
        self.cap_max = int(pol.cap_max or 0) if self.k.cap else 0
        # The cap's window counts a lead's last `cap_max` sequence sends, oldest first.
        self.history = np.full((n, self.cap_max), _LONG_AGO, dtype=np.int64) if self.cap_max else None
        self.capped = tuple(not pol.cap_applies_to or seq.kind in pol.cap_applies_to for seq in self.k.sequences)
        self._zones: Any = None
        self._tz: Optional[np.ndarray] = None
        self.sender_tz = 0  # the sender's timezone's code in `zones`

    def _kept_facts(self) -> set:
        keep = {"email.clicked"}
        trees = [t.when.tree for t in self.k.plan.transitions if t.when]
        for seq in self.k.sequences:
            trees += [seq.when.tree] if seq.when else []
            trees += [seq.exit.when.tree] if seq.exit and seq.exit.when else []
            trees += [c.tree for step in seq.steps for c in (step.when, step.unless) if c]
        for tree in trees:
            stack = [tree]
            while stack:
                node = stack.pop()
                name = node.get("call") or node.get("var")
                if name in FACTS:
                    args = node.get("args", [])
                    lit = args[0].get("lit") if args else None
                    keep.add(f"{FACTS[name]}.{lit}" if lit else FACTS[name])
                    since = node.get("kwargs", {}).get("since")
                    if since is not None:
                        self.entered_at(str(since.get("lit")))
                stack.extend(node.get("args", []))
                stack.extend(node.get("list", []))
        return keep

    def points_for(self, kind: str, detail: str) -> float:
        key = (kind, detail)
        got = self.points.get(key)
        if got is None:
            events = self.k.plan.scoring.events
            narrow = next((e.points for e in events if e.base == kind and e.detail == detail and detail), None)
            got = self.points[key] = narrow if narrow is not None else \
                next((e.points for e in events if e.base == kind and not e.detail), 0)
        return got

    def kind_name(self, event: int) -> str:
        return _TYPES[event] if event < _CRM else self.k.crm[event - _CRM]

    def names_of(self, event: int) -> Tuple[str, ...]:
        """What an event's detail (a code) names: a template, page or lead magnet."""
        if event == _VISIT:
            return self.k.pages
        if event == _OPTIN:
            return self.k.magnets
        return self.k.templates if event < _VISIT else ()

    def zones(self) -> Tuple[Any, np.ndarray]:
        """(`zones.Zones` of the timezones the rows have, each row's code; `sender_tz` is
        the sender's timezone's)."""
        if self._zones is None:
            pol = self.k.plan.policies
            column = next((c for c in self.cohort.profile if c.name == pol.timezone_attribute), None)
            names: List[str] = []
            codes = np.zeros(self.n, dtype=np.int64)
            if column is not None and column.kind == "choice" and not (column.codes < -1).any():
                values = [str(v) if v else pol.default_timezone for v in column.values]
                names = list(dict.fromkeys(values))
                lookup = np.asarray([names.index(v) for v in values] + [-1], dtype=np.int64)
                codes = lookup[column.codes]  # a missing value (-1) reads the last entry
            elif column is not None:  # as the engine reads any other value: one lead at a time
                each = [lead_timezone(self.k.plan, self.profile(row)) for row in range(self.n)]
                names = sorted(set(each))
                codes = np.asarray([names.index(tz) for tz in each], dtype=np.int64)
            if pol.default_timezone not in names:
                names.append(pol.default_timezone)
            codes[codes < 0] = names.index(pol.default_timezone)
            self._zones = _zones_for(tuple(names), self.start, self.end)
            self._tz = codes
            self.sender_tz = names.index(pol.default_timezone)
        assert self._tz is not None
        return self._zones, self._tz

    def set_fact(self, key: str, rows: np.ndarray, minute: Now) -> None:
        if key in self.kept:
            self.fact(key)[rows] = minute

    def add_points(self, rows: np.ndarray, points: Any) -> None:
        if np.ndim(points) == 0:
            if points:
                self.score[rows] += points
            return
        nonzero = points != 0
        self.score[rows[nonzero]] += points[nonzero]

    # 1. catching up ------------------------------------------------------------------------
    def period_of(self, minute: Now) -> Now:
        """The decay period of each minute (`period`)."""
        if not isinstance(minute, np.ndarray):
            period = self._periods.get(minute)
            if period is None:
                period = self._periods[minute] = self.period(minute)
            return period
        d = self.k.plan.scoring.decay
        if d is None or d.every_minutes <= 0 or d.factor == 1.0:
            return np.zeros(minute.shape[0], dtype=np.int64)
        zones, _ = self.zones()
        return zones.wall(minute, np.full(minute.shape[0], self.sender_tz, dtype=np.int64)) // d.every_minutes

    def decay(self, rows: np.ndarray, minute: Now) -> None:
        period = self.period_of(minute)
        n = period - self.score_period[rows]
        moved = n > 0
        if moved.any():
            r = rows[moved]
            self.score[r] = self.score[r] * self.pw[n[moved]]
        self.score_period[rows] = np.maximum(self.score_period[rows], period)

    def catch_up(self, rows: np.ndarray, minute: Now) -> None:
        # A row that already took a step this minute has its score at this minute, its SLA
        # judged and ran everything due then.
        fresh_mask = self.last[rows] < minute
        fresh, at = rows[fresh_mask], _pick(minute, fresh_mask)
        self.decay(fresh, at)
        if self.k.sla:
            self.sla_breach(fresh, at)
        if self.k.exit_on_state:
            # Without exit conditions, what a row leaves depends on its stage, unsubscribe
            # and bounce, all as they were when its last step settled.
            self.exits(rows, None, None)
        self.run_due(fresh, at)

    def sla_breach(self, rows: np.ndarray, minute: Now) -> None:
        """`core._Step.sla_breach`: a deadline passed before anyone answered."""
        deadline = self.sla_deadline[rows]
        late = (deadline != _NONE) & (minute > deadline)
        if late.any():
            r = rows[late]
            self.sla_breaches[r] += 1
            self.sla_deadline[r] = _NONE

    def sla_answer(self, rows: np.ndarray, event: int) -> None:
        """`core._Step.sla_answer`: a CRM event meets the pending SLA it may answer."""
        if event < _CRM:
            return
        pending = rows[self.sla_deadline[rows] != _NONE]
        if pending.shape[0] == 0:
            return
        kind = self.kind_name(event)
        stages = self.sla_stage[pending]
        for code in np.unique(stages).tolist():
            rule = self.k.plan.handoff_for(self.k.stages[code]) if code >= 0 else None
            if rule is not None and rule.answered_by and kind not in rule.answered_by:
                continue
            self.sla_deadline[pending[stages == code]] = _NONE

    # 3. stages ----------------------------------------------------------------------------
    def transitions(self, rows: np.ndarray, minute: Now, event: Optional[int] = None,
                    detail: Optional[np.ndarray] = None) -> None:
        for sources, to, when, _id, on in self.k.transitions:
            held = sources[self.stage[rows]]
            if on is not None:
                if event is None:
                    continue
                held &= self.matches((on,), event, detail, rows.shape[0])
            cand_at = np.nonzero(held)[0]
            if cand_at.shape[0] == 0:
                continue
            cand = rows[cand_at]
            ok = when(self, cand)
            if not (on or "").startswith("crm."):  # an unsubscribed lead moves only on sales' events
                ok &= ~self.unsub[cand]
            if ok.any():
                self.enter_stage(cand[ok], to, _pick(minute, cand_at[ok]))

    def enter_stage(self, rows: np.ndarray, stage: int, minute: Now) -> None:
        self.stage[rows] = stage
        name = self.k.stages[stage]
        if name in self.entered:
            self.entered[name][rows] = minute
        first = self.reached[stage][rows] == _NONE
        self.reached[stage][rows[first]] = _pick(minute, first)
        rule = self.k.plan.handoff_for(name)
        if rule is not None:
            self.handoff(rows, rule, minute)
        self.on_stage(rows, stage, minute)

    def on_stage(self, rows: np.ndarray, stage: int, minute: Now) -> None:
        """What follows a lead entering a stage outside the engine (CRM reactions: `rounds`)."""

    def handoff(self, rows: np.ndarray, rule: p.Handoff, minute: Now) -> None:
        at = _column(minute, rows.shape[0]).tolist()
        stage = self.k.plan.stage_index(rule.stage)
        pol = self.k.plan.policies
        hours = (pol.business_days, pol.business_from, pol.business_to) \
            if rule.sla_clock == "business" and pol.business_from is not None else None
        for row, now in zip(rows.tolist(), at):
            key, reps = core.handoff_pool(rule, self.profile(row) if rule.assign.kind == "territory" else {})
            if not reps:
                continue
            n = int(self.handoff_count[row])
            self.handoffs.append((now, self.cohort.lead_id(row), n, key, tuple(reps), int(self.lead[row])))
            self.handoff_count[row] = n + 1
            if self.handed[row] == _NONE:
                self.handed[row] = now
            if rule.sla_minutes is not None:
                self.sla_deadline[row] = clock.business_deadline(now, rule.sla_minutes, hours,  # type: ignore[arg-type]
                                                                 pol.default_timezone)
                self.sla_stage[row] = stage
            else:  # a handoff without an SLA ends the one running
                self.sla_deadline[row] = _NONE
                self.sla_stage[row] = -1

    # 4. sequences --------------------------------------------------------------------------
    def exit_now(self, s: int, rows: np.ndarray, event: Optional[int], detail: Optional[np.ndarray]) -> np.ndarray:
        """Which of these rows (running sequence s) leave it now (`core._Step.exit_reason`)."""
        seq = self.k.sequences[s]
        out = self.unsub[rows] | self.bounced[rows] | self.k.suppressed[:, s][self.stage[rows]]
        if seq.segment is not None:
            out |= self.segment[rows] != seq.segment if self.segment is not None else True
        if seq.persona is not None:
            out |= self.persona[rows] != seq.persona if self.persona is not None else True
        x = seq.exit
        if x is not None:
            if x.stage_at_least:
                least = self.k.plan.stage_index(x.stage_at_least)
                if least >= 0:
                    order = np.asarray([st.index for st in self.k.plan.stages] + [-1])
                    out |= order[self.stage[rows]] >= least
            if event is not None and x.on:
                out |= self.matches(x.on, event, detail, rows.shape[0])
            when = self.k.exit_when[s]
            if when is not None and (~out).any():
                rest = ~out
                out[rest] = when(self, rows[rest])
        return out

    def matches(self, ons: Sequence[str], event: Optional[int], detail: Optional[np.ndarray], n: int) -> np.ndarray:
        """`core._matches` of each `on:` with each row's event (of one type; `detail` codes)."""
        out = np.zeros(n, dtype=bool)
        if event is None:
            return out
        kind = self.kind_name(event)
        names = self.names_of(event)
        for on in ons:
            if on == kind:
                out[:] = True
            elif on.startswith(kind + ".") and detail is not None:
                name = on[len(kind) + 1:]
                if name in names:
                    out |= detail == names.index(name)
        return out

    def exits(self, rows: np.ndarray, event: Optional[int], detail: Optional[np.ndarray]) -> None:
        for s in range(len(self.k.sequences)):
            running = self.run_step[s][rows] >= 0
            if not running.any():
                continue
            r = rows[running]
            leave = self.exit_now(s, r, event, detail[running] if detail is not None else None)
            self.run_step[s][r[leave]] = -1
            self.due_at[s][r[leave]] = _NEVER

    def enrol(self, rows: np.ndarray, minute: Now, event: Optional[int], detail: Optional[np.ndarray]) -> None:
        for s, seq in enumerate(self.k.sequences):
            if not seq.steps:
                continue
            cand = ~self.finished[s][rows] & self.seq_stages[s][self.stage[rows]]
            if seq.on is not None:
                cand &= self.matches((seq.on,), event, detail, rows.shape[0])
            if not cand.any():
                continue
            r = rows[cand]
            d = detail[cand] if detail is not None else None
            ok = ~self.unsub[r] & ~self.bounced[r] & ~self.k.suppressed[:, s][self.stage[r]]
            if seq.segment is not None:
                ok &= self.segment[r] == seq.segment if self.segment is not None else False
            if seq.persona is not None:
                ok &= self.persona[r] == seq.persona if self.persona is not None else False
            if ok.any():
                keep = np.nonzero(ok)[0]
                ok[keep] = self.k.entry[s](self, r[keep])
            if ok.any():
                keep = np.nonzero(ok)[0]
                ok[keep] = ~self.exit_now(s, r[keep], event, d[keep] if d is not None else None)
            start = r[ok]
            if start.shape[0]:
                due = _pick(_pick(minute, cand), ok) + seq.steps[0].wait_minutes
                self.run_step[s][start] = 0
                self.due_at[s][start] = due
                self.finished[s][start] = True
                self.next_due[start] = np.minimum(self.next_due[start], due)

    def due(self, rows: np.ndarray, minute: Now) -> Tuple[np.ndarray, np.ndarray]:
        """The rows with a step due at or before `minute`, and their places in `rows`.
        `next_due` is a lower bound of each row's next due time (kept low as steps are
        set, made exact here), so most rows are passed over with one comparison."""
        soon = np.nonzero(self.next_due[rows] <= minute)[0]
        cand = rows[soon]
        if cand.shape[0] == 0:
            return cand, soon
        due_at = self.due_at
        exact = due_at[0][cand]
        for s in range(1, due_at.shape[0]):
            np.minimum(exact, due_at[s][cand], out=exact)
        self.next_due[cand] = exact
        keep = exact <= _pick(minute, soon)
        return cand[keep], soon[keep]

    def run_due(self, rows: np.ndarray, minute: Now) -> None:
        rows, places = self.due(rows, minute)
        if rows.shape[0] == 0:
            return
        now = _pick(minute, places)
        for s in self.k.order:
            seq = self.k.sequences[s]
            for _ in range(len(seq.steps) + 1):
                due = self.due_at[s][rows] <= now
                if not due.any():
                    break
                r = rows[due]
                at = _pick(now, due)
                steps = self.run_step[s][r]
                first = int(steps[0])
                if (steps == first).all():
                    self.advance(s, first, r, at)
                    continue
                for i in np.unique(steps).tolist():
                    pick = steps == i
                    self.advance(s, i, r[pick], _pick(at, pick))
        # `next_due` of these rows may now be below their next step's time: the next look
        # at them (`due`) makes it exact, once.

    def advance(self, s: int, i: int, rows: np.ndarray, minute: Now) -> None:
        seq = self.k.sequences[s]
        step = seq.steps[i]
        due: Now = self.due_at[s][rows] if isinstance(minute, np.ndarray) else minute  # the step's own time
        go = rows
        if step.action in ("send", "notify", "exit"):
            when, unless = self.k.step_when[(s, i)]
            ok = when(self, rows)
            if unless is not None and ok.any():
                keep = np.nonzero(ok)[0]
                ok[keep] = ~unless(self, rows[keep])
            go = rows[ok]
            if step.action == "send" and (self.k.quiet or self.k.cap or step.at_minute is not None) and go.shape[0]:
                held = self.hold(s, step, go, _column(_pick(due, ok), go.shape[0]))
                if held is not None:  # held back: waits in place, at its new time
                    rows = rows[~np.isin(rows, go[held])]
                    go = go[~held]
                    if isinstance(due, np.ndarray):
                        due = self.due_at[s][rows]
            if step.action == "send" and go.shape[0]:
                self.send(self.k.step_code[(s, i)], go, due if not isinstance(due, np.ndarray) else
                          self.due_at[s][go], seq.name, step)
        if step.action == "exit" and go.shape[0]:
            self.run_step[s][go] = -1
            self.due_at[s][go] = _NEVER
            rows = rows[~np.isin(rows, go)]
            if isinstance(due, np.ndarray):
                due = self.due_at[s][rows]
        if rows.shape[0] == 0:
            return
        if i + 1 < len(seq.steps):
            following = due + seq.steps[i + 1].wait_minutes
            self.run_step[s][rows] = i + 1
            self.due_at[s][rows] = following
            self.next_due[rows] = np.minimum(self.next_due[rows], following)
        else:
            self.run_step[s][rows] = -1
            self.due_at[s][rows] = _NEVER

    def hold(self, s: int, step: p.Step, rows: np.ndarray, due: np.ndarray) -> Optional[np.ndarray]:
        """`core._Step.send_time` for a send step of sequence s due at `due`: the rows
        that the step's `at:` time, quiet hours or the frequency cap hold back (None:
        none), which then wait at their new time, each rule that held a row counted once
        for it."""
        pol = self.k.plan.policies
        moment = due.copy()
        hit_at = np.zeros(rows.shape[0], dtype=bool)
        hit_quiet = np.zeros(rows.shape[0], dtype=bool)
        hit_cap = np.zeros(rows.shape[0], dtype=bool)
        capped = self.k.cap and self.capped[s]
        zones, tz = self.zones() if self.k.quiet or step.at_minute is not None else (None, None)
        history = self.history[rows] if capped and self.history is not None else None
        for _ in range(8):  # each rule can only push later; settles in a few rounds
            before = moment.copy()
            if step.at_minute is not None and zones is not None and tz is not None:
                moved = zones.next_local(moment, tz[rows], step.at_minute)
                hit_at |= moved != moment
                moment = moved
            if self.k.quiet and zones is not None and tz is not None:
                moved = zones.after_quiet(moment, tz[rows], pol.quiet_from, pol.quiet_to)
                hit_quiet |= moved != moment
                moment = moved
            if history is not None:
                per = int(pol.cap_per_minutes or 0)
                full = history[:, 0] > moment - per  # the cap's `cap_max` latest sends all in the window
                if full.any():
                    moment = np.where(full, history[:, 0] + per, moment)
                    hit_cap |= full
            if (moment == before).all():
                break
        held = moment > due
        if not held.any():
            return None
        r = rows[held]
        self.due_at[s][r] = moment[held]
        self.next_due[r] = np.minimum(self.next_due[r], moment[held])
        self.deferred["at"][r] += hit_at[held]
        self.deferred["quiet_hours"][r] += hit_quiet[held]
        self.deferred["frequency_cap"][r] += hit_cap[held]
        return held

    def send(self, code: int, rows: np.ndarray, minute: Now, sequence: Optional[str],
             step: Optional[p.Step]) -> None:
        _seq, step_id, template, kind = self.k.sends[code]
        self.emails[rows] += 1
        self.set_fact("email.sent", rows, minute)
        self.set_fact(f"email.sent.{template}", rows, minute)
        if step is not None and self.history is not None:
            h = self.history[rows]
            h[:, :-1] = h[:, 1:]
            h[:, -1] = minute
            self.history[rows] = h
        variant = np.full(rows.shape[0], -1, dtype=np.int64)
        if step is not None and step.variants:
            names = [v.name for v in step.variants]
            ids = [self.cohort.lead_id(r) for r in rows.tolist()]
            variant = np.asarray([names.index(str(core._variant(lead, sequence or "", step))) for lead in ids],
                                 dtype=np.int64)
        flags = np.zeros(rows.shape[0], dtype=np.int64)
        groups = [(variant == v, (names[v] if v >= 0 else None)) for v in np.unique(variant).tolist()] \
            if step is not None and step.variants else [(np.ones(rows.shape[0], dtype=bool), None)]
        for mask, name in groups:
            r = rows[mask]
            flags[mask] = self.behave(r, template, name, (sequence, step_id), _pick(minute, mask))
        self.count_week(rows, kind)
        self.sent_rows.append(rows.astype(np.int32))
        self.sent_minute.append(_column(minute, rows.shape[0]).copy())
        self.sent_code.append(np.full(rows.shape[0], code, dtype=np.int16))
        self.sent_flags.append(flags.astype(np.uint8))
        self.sent_variant.append(variant.astype(np.int8))

    def most_in_week(self, rows: np.ndarray, minutes: np.ndarray, marketing: bool) -> int:
        """The most emails (`marketing`: marketing emails) a lead got in any 7 days, of
        these sends (the daily grid counts them day by day: `Week`)."""
        return (self.marketing_week if marketing else self.week).most

    def count_week(self, rows: np.ndarray, kind: str) -> None:
        self.week.add(rows, self.day)
        if kind in tl.MARKETING_KINDS:
            self.marketing_week.add(rows, self.day)

    def behave(self, rows: np.ndarray, template: str, variant: Optional[str], key: Tuple[Any, ...],
               minute: Now) -> np.ndarray:
        """What each lead does with the email (`run._Loop.on_send`'s draws), queued as the
        events it makes (`later`); the flags say which."""
        limits = self.limits_for(template, variant)
        same = self.limits_same[f"{template}\x00{variant or ''}"]
        classes = self.rate_class()[0][rows] if any(c is not None for c in limits) else None
        lead = self.lead[rows]

        def chance(column: int, what: str, among: np.ndarray) -> np.ndarray:
            """`Draws.chance` for each row: its folded draw at most the bound of its rate."""
            table = limits[column]
            if table is None:  # one bound for every row
                bound = same[column]
                if bound == _NO_CHANCE or among.shape[0] == 0:
                    return np.zeros(among.shape[0], dtype=bool)
                return fold_column(self.draws.state("email", *key, what), lead[among].astype(np.uint64)) <= bound
            assert classes is not None
            bounds = table[classes[among]]
            out = bounds != _NO_CHANCE
            if out.any():
                idx = np.nonzero(out)[0] if not out.all() else None
                leads = lead[among] if idx is None else lead[among][idx]
                folded = fold_column(self.draws.state("email", *key, what), leads.astype(np.uint64))
                hit = folded <= (bounds if idx is None else bounds[idx])
                if idx is None:
                    out = hit
                else:
                    out[idx] = hit
            return out

        every = np.arange(rows.shape[0])
        bounce = chance(4, "bounce", every)
        rest = every[~bounce]
        unsub = np.zeros(rows.shape[0], dtype=bool)
        unsub[rest] = chance(3, "unsubscribe", rest)
        rest = every[~bounce & ~unsub]
        opened = np.zeros(rows.shape[0], dtype=bool)
        opened[rest] = chance(0, "open", rest)
        rest = every[opened]
        clicked = np.zeros(rows.shape[0], dtype=bool)
        replied = np.zeros(rows.shape[0], dtype=bool)
        clicked[rest] = chance(1, "click", rest)
        replied[rest] = chance(2, "reply", rest)
        masks = {_BOUNCED: bounce, _UNSUB: unsub, _OPEN: opened, _CLICK: clicked, _REPLY: replied}
        self.later(rows, masks, self.k.templates.index(template), key, minute)
        return (masks[_OPEN] * 1) | (masks[_CLICK] * 2) | (masks[_REPLY] * 4) | (masks[_UNSUB] * 8) | \
            (masks[_BOUNCED] * 16)

    def later(self, rows: np.ndarray, masks: Dict[int, np.ndarray], detail: int, key: Tuple[Any, ...],
              minute: Now) -> None:
        """Queue the engagement `masks` says each row makes with an email sent at
        `minute`, to apply this minute after the lead's other events (the daily grid);
        `rounds` queues it at its own times instead, and clears a mask's rows whose event
        falls at or after the horizon."""
        base = self.queued
        self.queued += 4
        for what, offset in ((_BOUNCED, 0), (_UNSUB, 1), (_OPEN, 1), (_CLICK, 2), (_REPLY, 3)):
            mask = masks[what]
            if mask.any():
                r = rows[mask]
                # A bounce queued by the step that sent it (second 0) comes before the lead's
                # other events of the minute (second 5 < 10); later ones queue in turn.
                first = what == _BOUNCED and self.second == 0
                order = base - (1 << 40) if first else base + offset
                self.queue.append((r, np.full(r.shape[0], what, dtype=np.int64),
                                   np.full(r.shape[0], detail, dtype=np.int64),
                                   np.full(r.shape[0], order, dtype=np.int64),
                                   5 if first else max(10, self.second)))

    # 2. the events ---------------------------------------------------------------------
    def apply(self, event: int, rows: np.ndarray, detail: np.ndarray, minute: Now, second: Now = 10) -> None:
        """One engine step for each row, all with an event of one type (at `minute`)."""
        self.catch_up(rows, minute)
        before: Tuple[np.ndarray, ...] = (self.stage[rows], self.unsub[rows], self.bounced[rows]) \
            if self.k.settle_on_change else ()
        kind = self.kind_name(event)
        names = self.names_of(event)
        if self.log is not None:
            at, sec = _column(minute, rows.shape[0]).tolist(), _column(second, rows.shape[0]).tolist()
            for row, d, m, sc in zip(rows.tolist(), detail.tolist(), at, sec):
                name = names[d] if d >= 0 else None
                lead_id = self.cohort.lead_id(row)
                self.log.append(Event(kind, m, lead_id, page=name, second=sc) if event == _VISIT else
                                Event(kind, m, lead_id, second=sc) if event >= _CRM else
                                Event(kind, m, lead_id, template=name, second=sc,
                                      bounce="hard" if event == _BOUNCED else None))
        if event in (_OPEN, _CLICK, _REPLY):
            self.set_fact(kind, rows, minute)
            if event == _CLICK:
                self.clicked(rows, minute)
            for d in np.unique(detail).tolist():
                pick = detail == d
                r = rows[pick]
                key = f"{kind}.{names[d]}"
                self.set_fact(key, r, _pick(minute, pick))
                points = self.points_for(kind, names[d])
                if self.k.plan.scoring.count_repeats:
                    self.add_points(r, points)
                    continue
                seen = self.engaged.get(key)
                if seen is None:
                    seen = self.engaged[key] = np.zeros(self.n, dtype=bool)
                first = ~seen[r]
                seen[r] = True
                self.add_points(r[first], points)
        else:
            self.set_fact(kind, rows, minute)
            for d in np.unique(detail).tolist():
                pick = detail == d
                r = rows[pick]
                name = names[d] if d >= 0 else ""
                if name and name in self.k.known:
                    self.set_fact(f"{kind}.{name}", r, _pick(minute, pick))
                self.add_points(r, self.points_for(kind, name))
            if event == _UNSUB:
                fresh = ~self.unsub[rows]
                new = rows[fresh]
                self.unsub[new] = True
                self.unsub_at[new] = _pick(minute, fresh)
            elif event == _BOUNCED:
                self.bounced[rows] = True
        if self.k.sla:
            self.sla_answer(rows, event)
        self.transitions(rows, minute, event, detail)
        if self.k.settle_on_change:
            changed = (self.stage[rows] != before[0]) | (self.unsub[rows] != before[1]) | \
                (self.bounced[rows] != before[2])
            self.settle(rows, minute, event, detail, changed)
        else:
            self.settle(rows, minute, event, detail)

    def clicked(self, rows: np.ndarray, minute: Now) -> None:
        """A click starts the raised visit rate for the days after it (the daily grid's day)."""
        window = self.k.behavior.visits.after_click_minutes // DAY
        self.recent_until[rows] = (minute - self.base) // DAY + window

    def settle(self, rows: np.ndarray, minute: Now, event: Optional[int], detail: Optional[np.ndarray],
               changed: Optional[np.ndarray] = None) -> None:
        """Exits, entries and due steps after a step. With `changed` (`Kit.settle_on_change`),
        only the rows whose stage, unsubscribe or bounce changed can leave or enter."""
        if changed is None:
            self.exits(rows, event, detail)
            self.enrol(rows, minute, event, detail)
        elif changed.any():
            moved = rows[changed]
            part = detail[changed] if detail is not None else None
            self.exits(moved, event, part)
            self.enrol(moved, _pick(minute, changed), event, part)
            self.run_due(moved, _pick(minute, changed))  # only a row that entered a sequence can have a step due
        if changed is None:
            self.run_due(rows, minute)
        self.last[rows] = minute
        self.steps += rows.shape[0]

    def tick(self, rows: np.ndarray, minute: Now) -> None:
        """The clock at `minute` for these rows (a step is due)."""
        self.catch_up(rows, minute)
        if self.k.settle_on_change:
            before = self.stage[rows]
            self.transitions(rows, minute)
            self.settle(rows, minute, None, None, self.stage[rows] != before)
        else:
            self.transitions(rows, minute)
            self.settle(rows, minute, None, None)

    def create(self, rows: np.ndarray, minute: Now) -> np.ndarray:
        """The opt-ins of `minute` (`core._Step.enter`, then the opt-in itself); the rows
        the engine took in."""
        plan = self.k.plan
        fine = self.valid(rows)
        rows, minute = rows[fine], _pick(minute, fine)
        for source in np.unique(self.cohort.source[rows]).tolist():
            pick = self.cohort.source[rows] == source
            r, at = rows[pick], _pick(minute, pick)
            magnet = plan.magnet(self.cohort.sources[source])
            assert magnet is not None
            if self.log is not None:
                for row, m in zip(r.tolist(), _column(at, r.shape[0]).tolist()):
                    self.log.append(Event("optin", m, self.cohort.lead_id(row), magnet=magnet.name,
                                          profile=self.profile(row)))
            stage = plan.stage_index(magnet.enters)
            self.stage[r] = stage
            self.first_visit(r, at)
            self.first_stage[r] = stage
            if magnet.enters in self.entered:
                self.entered[magnet.enters][r] = at
            self.reached[stage][r] = at
            self.score[r] = 0.0
            self.score_period[r] = self.period_of(at)
            for fp in plan.scoring.fit:
                holds = _truth(("static", (self, repr(fp.when.tree), fp.when.tree, r)))
                self.add_points(r[holds], fp.points)
            rule = plan.handoff_for(magnet.enters)
            if rule is not None:
                self.handoff(r, rule, at)
            self.on_stage(r, stage, at)
            self.set_fact("magnet.downloaded", r, at)
            self.set_fact(f"magnet.downloaded.{magnet.name}", r, at)
            self.add_points(r, magnet.score)
            if magnet.delivers:
                code = next(i for i, s in enumerate(self.k.sends) if s[0] is None and s[2] == magnet.delivers)
                self.send(code, r, at, None, None)
            self.add_points(r, self.points_for("magnet.downloaded", magnet.name))
            detail = np.full(r.shape[0], self.k.magnets.index(magnet.name), dtype=np.int64)
            self.transitions(r, at, _OPTIN, detail)
            self.settle(r, at, _OPTIN, detail)
        self.created_rows.append(rows)
        return rows

    def first_visit(self, rows: np.ndarray, minute: Now) -> None:
        """The first candidate day for a visit: the arrival day or later (the daily grid)."""
        if self.gaps.most > 0:
            first = self.gaps.gaps(self.draws.column(("visit-gap",), self.lead[rows], 0)) - 1
            self.next_visit[rows] = self.arrival_day[rows] + first

    def valid(self, rows: np.ndarray) -> np.ndarray:
        """Which rows' profiles the engine takes (`core.validate_profile`), judged once per
        distinct profile of the attributes that can fail."""
        columns = list(self.cohort.profile)
        if not columns or rows.shape[0] == 0:
            return np.ones(rows.shape[0], dtype=bool)
        declared = {a.name: a for a in self.k.plan.profile}
        codes = []
        for c in columns:
            a = declared.get(c.name)
            if c.kind in ("uniform", "log_uniform") and a is not None:
                # A number is judged by its type and its side of the attribute's bounds
                # and enum values (`_literal_cuts`); anything else, one by one.
                cuts = [float(x) for x in (a.minimum, a.maximum, *(a.enum or ()))
                        if isinstance(x, (int, float)) and not isinstance(x, bool)]
                key = (c.name, tuple(sorted(set(cuts))))
                classes = self._number_classes.get(key)
                if classes is None:
                    whole = np.asarray([isinstance(v, int) for v in c.values] + [False], dtype=np.int64)
                    classes = self._number_classes[key] = _classes_of(c, list(key[1])) * 2 + whole[c.codes]
                codes.append(np.where(c.codes[rows] >= 0, classes[rows], c.codes[rows]))
            else:
                codes.append(np.where(c.codes[rows] >= 0, c.codes[rows] if c.kind == "choice" else 0, c.codes[rows]))
        back, first = groups(codes, rows.shape[0])
        ok = np.asarray([core.validate_profile(self.k.plan, self.profile(int(rows[f]))) is None for f in first])
        out = ok[back]
        self.rejected += int((~out).sum())
        return out

    def visit(self, day: int, minute: int, upto: int) -> None:
        """The chance of a website visit for the rows whose candidate day (`draws.Gaps`)
        today is, among the first `upto` (those that have arrived), as columns:
        `run._Loop.visit` for every lead at once."""
        gaps = self.gaps
        if gaps.most <= 0:
            return
        cand = np.nonzero(self.next_visit[:upto] == day)[0]
        if cand.shape[0] == 0:
            return
        gone = self.unsub[cand]  # no more visits, ever
        self.next_visit[cand[gone]] = _NEVER
        cand = cand[~gone]
        if cand.shape[0] == 0:
            return
        visit_state, page_state, gap_state = self.visit_states()
        visits = self.k.behavior.visits
        k = day - self.arrival_day[cand]
        # "Clicked within the window": the last click's day plus the window is after today.
        recent = self.recent_until[cand] > day
        low, high = below(visits.daily / gaps.most), below(visits.after_click_daily / gaps.most)
        limit = np.where(recent, np.uint64(high or 0), np.uint64(low or 0))
        ok = self.visit_stages[self.stage[cand]] & (limit != 0)
        hit = ok & (self.draws.folded(visit_state[cand], k) <= limit)
        n = self.visit_n[cand] + 1
        self.visit_n[cand] = n
        self.next_visit[cand] = day + gaps.gaps(self.draws.then(gap_state[cand], n))
        r = cand[hit]
        if r.shape[0] == 0:
            return
        k = k[hit]
        page = np.full(r.shape[0], -1, dtype=np.int64)
        if self.k.pages:
            x = self.draws.then(page_state[r], k)
            totals = np.cumsum([share for _, share in self.k.behavior.visits.pages])
            picked = np.searchsorted(totals, x, side="right")
            page = np.where(picked < len(totals), picked, -1)
        self.second = 50
        self.apply(_VISIT, r, page, minute, 50)
        self.drain(minute)

    def visit_states(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each lead's folded draw states (`Draws.states`) for its daily visit, its page and
        its next candidate day."""
        if self._visit_states is None:
            self._visit_states = (self.draws.states(("visit",), self.lead), self.draws.states(("page",), self.lead),
                                  self.draws.states(("visit-gap",), self.lead))
        return self._visit_states

    def drain(self, minute: int) -> None:
        """Apply every queued event of this minute, each lead's in its order; what they
        send queues after the lead's others."""
        for _ in range(10_000):
            if not self.queue:
                return
            rows = np.concatenate([q[0] for q in self.queue])
            kinds = np.concatenate([q[1] for q in self.queue])
            details = np.concatenate([q[2] for q in self.queue])
            orders = np.concatenate([q[3] for q in self.queue])
            seconds = np.concatenate([np.full(q[0].shape[0], q[4], dtype=np.int64) for q in self.queue])
            self.queue = []
            order = np.lexsort((orders, rows))
            rows, kinds, details, seconds = rows[order], kinds[order], details[order], seconds[order]
            starts = np.r_[True, rows[1:] != rows[:-1]]
            group = np.cumsum(starts) - 1
            rank = np.arange(rows.shape[0]) - np.nonzero(starts)[0][group]
            if self.second == 0:
                self.second = 10
            for r_ in range(int(rank.max()) + 1):
                at = rank == r_
                for event in np.unique(kinds[at]).tolist():
                    for second in np.unique(seconds[at & (kinds == event)]).tolist():
                        sel = at & (kinds == event) & (seconds == second)
                        self.apply(event, rows[sel], details[sel], minute, second)
        raise AssertionError("engagement kept making email")  # pragma: no cover


# -- a run ----------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _zones_for(names: Tuple[str, ...], start: int, end: int) -> Any:
    from .zones import Zones

    return Zones(names, start, end)


def quiet_hours_bind(plan: p.Plan, behavior: Behavior, start: int, horizon: int) -> Optional[str]:
    """When (a time and a timezone, in words) the quiet hours would hold back a send of a
    run whose leads live on daily grids: every minute a lead acts is its arrival's minute
    a whole number of days later, in any timezone a lead can have; None if never."""
    pol = plan.policies
    assert pol.quiet_from is not None and pol.quiet_to is not None
    end = start + horizon
    zones = {pol.default_timezone}
    for arrival in behavior.arrivals:
        mix = behavior.attribute(pol.timezone_attribute, arrival)
        if mix is None:
            continue
        if mix.kind == "choice":
            zones |= {str(value) for value, _ in mix.values}
        else:
            zones.add("UTC")  # not a timezone's name: the engine reads UTC
    first_days = set()
    for arrival in behavior.arrivals:
        for day in range(max(0, arrival.start // DAY), max(0, (min(arrival.end, horizon) - 1) // DAY) + 1):
            first_days.add(day)
    phases = sorted({local_minute(start, day, behavior.timing.at, pol.default_timezone) % DAY for day in first_days})
    for phase in phases:
        minute = start - (start - phase) % DAY
        while minute < end:
            for zone in sorted(zones):
                if minute >= start and clock.after_quiet(minute, pol.quiet_from, pol.quiet_to, zone) != minute:
                    return f"{format_clock(clock.wall(minute, zone) % DAY)} {zone}"
            minute += DAY
    return None


def grids(cohort: Cohort) -> List[Tuple[Cohort, int]]:
    """The cohort's leads by the time of day they arrive (a clock change moves it by an
    hour): each group lives on one daily grid, starting from its first arrival's minute."""
    if len(cohort) == 0:
        return []
    first = int(cohort.arrives.min())
    phase = (cohort.arrives - first) % DAY
    if not phase.any():
        return [(cohort, first)]
    out = []
    for value in np.unique(phase).tolist():
        rows = np.nonzero(phase == value)[0]
        out.append((cohort.take(rows), first + int(value)))
    return out


def run_chunk(k: Kit, cohort: Cohort, seed: int, start: int, end: int, base: int,
              log: Optional[List[Event]] = None) -> Tuple[tl.Tally, Engine]:
    """Simulate one chunk of a run's leads (all on the grid from minute `base`)."""
    e = Engine(k, cohort, seed, start, end, log)
    e.arrival_day = (cohort.arrives - base) // DAY
    e.base = base
    days = (end - 1 - base) // DAY + 1 if end > base else 0
    # Leads are numbered in arrival order, so those arrived by a day are the first rows.
    in_order = e.n == 0 or bool((np.diff(e.arrival_day) >= 0).all())
    order = np.arange(e.n) if in_order else np.argsort(e.arrival_day, kind="stable")
    bounds = np.searchsorted(e.arrival_day[order], np.arange(days + 1))
    created = np.zeros(e.n, dtype=bool)
    for day in range(int(e.arrival_day.min()) if e.n else days, days):
        minute = base + day * DAY
        new = order[bounds[day]:bounds[day + 1]]
        e.second = 0
        e.day = day
        if new.shape[0]:
            e.create(new, minute)
        upto = int(bounds[day + 1]) if in_order else e.n
        due = e.due(np.nonzero(created[:upto] & (e.next_due[:upto] <= minute))[0], minute)[0]
        if due.shape[0]:
            e.tick(due, minute)
        e.drain(minute)
        if new.shape[0]:
            created[e.created_rows[-1]] = True
        e.visit(day, minute, upto)
        e.week.close_day(day)
        e.marketing_week.close_day(day)
    return tally_of(e, created, start, end), e


def tally_of(e: Engine, created: np.ndarray, start: int, end: int) -> tl.Tally:
    """The chunk's counts (`tally`)."""
    plan = e.k.plan
    t = tl.new(plan, end - start)
    t.rejected, t.engine_steps = e.rejected, e.steps
    rows = np.nonzero(created)[0]
    t.leads = int(rows.shape[0])
    stage = e.stage[rows]
    unsub = e.unsub[rows]
    for i, name in enumerate(e.k.stages):
        here = stage == i
        if here.any():
            t.at_horizon[name] = int(here.sum())
            if (here & unsub).any():
                t.at_horizon_unsubscribed[name] = int((here & unsub).sum())
        reached = e.reached[i][rows]
        got = reached != _NONE
        if got.any():
            t.reached[name] = int(got.sum())
        later = got & (e.first_stage[rows] != i)
        if later.any():
            t.time_to[name] = _counts(reached[later] - e.cohort.arrives[rows][later])
    path = tl.main_path(plan)
    for a, b in zip(path, path[1:]):
        both = (e.reached[plan.stage_index(a)][rows] != _NONE) & (e.reached[plan.stage_index(b)][rows] != _NONE)
        if both.any():
            t.pairs[(a, b)] = int(both.sum())
    for name in tl.headline_stages(plan):
        at = e.reached[plan.stage_index(name)][rows]
        _weeks_into(t.week_counts(name), at[at != _NONE], start, t.weeks)
    t.emails = _counts(e.emails[rows])
    t.unsubscribed_leads = int(unsub.sum())
    handed = e.handed[rows]
    got = handed != _NONE
    t.first_handoff = dict(zip(e.lead[rows][got].tolist(), handed[got].tolist()))
    _weeks_into(t.handoffs_weekly, handed[got], start, t.weeks)
    t.handoffs = list(e.handoffs)
    any_deferred = np.zeros(rows.shape[0], dtype=bool)
    for rule, counts in e.deferred.items():
        mine = counts[rows]
        if mine.any():
            t.deferred[rule] = int(mine.sum())
            any_deferred |= mine > 0
    t.deferred_leads = int(any_deferred.sum())
    breaches = e.sla_breaches[rows]
    late = breaches > 0
    t.sla_breaches.update(dict(zip(e.lead[rows][late].tolist(), breaches[late].tolist())))
    if e.sent_rows:
        s_rows = np.concatenate(e.sent_rows)
        s_minute = np.concatenate(e.sent_minute)
        s_code = np.concatenate(e.sent_code)
        s_flags = np.concatenate(e.sent_flags)
        s_variant = np.concatenate(e.sent_variant)
        kinds = [s[3] for s in e.k.sends]
        by_code = np.bincount(s_code, minlength=len(e.k.sends))
        # Deliveries' rows in the order `tally.from_records` meets them: by first send (minute, lead ID).
        firsts = {c: (int(s_minute[s_code == c].min()), min(e.cohort.lead_id(int(r)) for r in s_rows[
            (s_code == c) & (s_minute == s_minute[s_code == c].min())].tolist()))
            for c, sq in enumerate(e.k.sends) if sq[0] is None and by_code[c]}
        order = [c for c in range(len(e.k.sends)) if c not in firsts] + sorted(firsts, key=firsts.__getitem__)
        for code, count in ((c, int(by_code[c])) for c in order):
            if not count:
                continue
            seq, step, template, kind = e.k.sends[code]
            t.by_kind[kind] += count
            mask = s_code == code
            flags = s_flags[mask]
            row = t.step(seq or "", step or template, template) if seq else t.step("", template, template)
            row[1] = int(row[1]) + count  # type: ignore[call-overload]
            for i, bit in enumerate((1, 2, 4, 8), 2):
                row[i] = int(row[i]) + int(((flags & bit) != 0).sum())  # type: ignore[call-overload]
            variants = s_variant[mask]
            if (variants >= 0).any():
                names = [v.name for v in next(st for sq in plan.sequences if sq.name == seq
                                              for st in sq.steps if st.id == step).variants]
                for v, name in enumerate(names):
                    chosen = variants == v
                    key = (seq, step, name)
                    t.variants[key + ("sends",)] += int(chosen.sum())
                    t.variants[key + ("opens",)] += int(((flags[chosen] & 1) != 0).sum())
                    t.variants[key + ("clicks",)] += int(((flags[chosen] & 2) != 0).sum())
        t.unsubscribes = int(((s_flags & 8) != 0).sum())
        t.bounces = int(((s_flags & 16) != 0).sum())
        t.most_in_7_days = e.most_in_week(s_rows, s_minute, False)
        marketing = np.asarray([kind in tl.MARKETING_KINDS for kind in kinds], dtype=bool)[s_code]
        if marketing.any():
            m_rows, m_minute = s_rows[marketing], s_minute[marketing]
            t.most_marketing_in_7_days = e.most_in_week(m_rows, m_minute, True)
            h = e.handed[m_rows]
            t.marketing_after_handoff = int(((h != _NONE) & (m_minute > h)).sum())
    return t


def _weeks_into(counts: List[int], minutes: np.ndarray, start: int, weeks: int) -> None:
    week = (minutes - start) // tl.WEEK
    week = week[(week >= 0) & (week < weeks)]
    for w, c in enumerate(np.bincount(week, minlength=weeks).tolist()[:weeks]):
        counts[w] += c


class Week:
    """The most emails any row got in 7 days in a row (`tally.most_in_window` on the daily
    grid: sends 7 days apart are in different windows): each row's sends of the last seven
    days as a running count, and the rows each day's sends went to, to take them out of
    it a week later. Work goes by sends, not by rows."""

    def __init__(self, n: int) -> None:
        self.window = np.zeros(n, dtype=np.int32)
        self.days: Dict[int, List[np.ndarray]] = {}  # day -> the rows of each send that day (distinct in each)
        self.most = 0

    def add(self, rows: np.ndarray, day: int) -> None:
        self.window[rows] += 1
        self.days.setdefault(day, []).append(rows)

    def close_day(self, day: int) -> None:
        """The end of `day`: the window holds days day-6 .. day; then day-6 leaves it."""
        for rows in self.days.get(day, ()):
            self.most = max(self.most, int(self.window[rows].max()))
        for rows in self.days.pop(day - 6, ()):
            self.window[rows] -= 1


def run_piece(plan: p.Plan, behavior: Behavior, seed: int, start: int, horizon: int, cohort: Cohort,
              base: int) -> tl.Tally:
    """Simulate some of a run's leads as columns; their tally (handoff owners are settled
    when every piece's tally is in: `tally.settle`)."""
    k = kit(plan, behavior, start, horizon)
    if not k.grid:
        from . import rounds

        return rounds.run_chunk(k, cohort, seed, start, start + horizon)[0]
    return run_chunk(k, cohort, seed, start, start + horizon, base)[0]


def pieces(plan: p.Plan, behavior: Behavior, start: int, horizon: int, cohort: Cohort) -> List[Tuple[Cohort, int]]:
    """The cohort as `run_piece` takes it: by daily grid (`grids`), or whole when the leads
    do not live on one."""
    if not kit(plan, behavior, start, horizon).grid:
        return [(cohort, start)] if len(cohort) else []
    return grids(cohort)
