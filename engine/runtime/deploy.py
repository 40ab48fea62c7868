"""A new plan deployed to a database with leads in flight.

The database keeps the plan it runs: meta `plan` (its content hash) and `plan_json` (its
text, as `fnl compile` writes it, read back with `engine.planfile`). A new plan is first
checked lead by lead against it (`check`): each lead's state moves by the rule `fnl plan`
predicts with (`migrate.migrate`), and what that rule cannot make right for some lead
(`migrate.concerns`) refuses the whole plan, saying how many leads, why, and what to
change. `deploy` then saves every lead's moved state, the new plan's hash and text, and a
record of the deploy (meta `deployed:<n>`, with `deployments` counting them) in one
transaction: a process that dies during it leaves the old plan running and its leads as
they were. `fnl plan --db` shows the same check without writing anything (`preview`).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .. import planfile
from ..drive import next_due
from ..errors import UsageError
from ..migrate import concerns, migrate, step_move
from ..plan import Plan, dumps
from ..state import LeadState, iso
from ..terminal import escape_lines
from .codec import State
from .db import Database
from .loop import crash_point

PLAN_JSON = "plan_json"  # meta key: the text of the plan the database runs
OUTCOMES = ("stays", "resumes", "finishes", "exits")
# The kinds of concern (`migrate.Concern.key` up to its colon), in the order they are said.
KINDS = ("funnel", "profile", "stage", "order", "decay", "kind", "sla")


@dataclass(frozen=True)
class Counted:
    """A concern (`migrate.Concern`) and how many leads have it; `first` is one of them
    (the first by ID), to look at with `fnl explain`."""

    key: str
    refuses: bool
    reason: str
    fix: str
    leads: int
    first: str

    def text(self) -> str:
        one = f" (one is {self.first})" if self.first else ""
        if self.leads == 1:  # the reasons are written of leads: said of one, the verb agrees
            one = f" ({self.first})" if self.first else ""
            return f"1 lead {_of_one(self.reason)}{one}"
        return f"{self.leads:,} leads {self.reason}{one}"


# The first verb of a reason (`migrate.Concern`), said of one lead.
_ONE = {"are": "is", "have": "has", "hold": "holds", "wait": "waits", "keep": "keeps"}


def _of_one(reason: str) -> str:
    verb, _, rest = reason.partition(" ")
    rest = (rest.replace(" they already passed", " it already passed").replace(" they would ", " it would ")
            .replace("their ", "its "))
    return f"{_ONE.get(verb, verb + 's')} {rest}"


@dataclass(frozen=True)
class StepCount:
    """The leads waiting on one step of the old plan, and where they go (`migrate.StepMove`)."""

    sequence: str
    step: str
    outcome: str  # stays | resumes | finishes | exits
    target: Optional[str]
    leads: int


@dataclass(frozen=True)
class StageCount:
    stage: str  # removed by the new plan
    to: str
    leads: int


@dataclass(frozen=True)
class Deployment:
    """What a new plan does to the leads in a database: every stored lead with its state
    under the new plan and a note for what moved (a lead not opted in yet keeps its state),
    the leads counted per step and per stage moved, and what refuses the plan."""

    funnel: str
    old_funnel: str
    old_hash: str
    new_hash: str
    leads: Tuple[Tuple[str, State, Tuple[str, ...]], ...]
    steps: Tuple[StepCount, ...]
    stages: Tuple[StageCount, ...]
    refusals: Tuple[Counted, ...]
    warnings: Tuple[Counted, ...]

    @property
    def deployable(self) -> bool:
        return not self.refusals

    @property
    def in_flight(self) -> int:
        """Leads that opted in (the others have no state a plan moves)."""
        return sum(1 for _, state, _ in self.leads if isinstance(state, LeadState))

    def outcomes(self) -> Dict[str, int]:
        """Leads in sequences, per outcome: stays, resumes, finishes, exits."""
        out = dict.fromkeys(OUTCOMES, 0)
        for s in self.steps:
            out[s.outcome] += s.leads
        return out


def refusal(d: Deployment, path: str) -> Tuple[str, str]:
    """The error of a plan the leads in flight refuse, and its help: the first reason and
    its fix (`fnl plan --db` lists them all)."""
    first = d.refusals[0]
    more = f" (and {len(d.refusals) - 1} more: fnl plan --db {path} NEW lists them)" if len(d.refusals) > 1 else ""
    return (f"--db {path} runs another plan of {d.old_funnel} ({d.old_hash[:19]}), and {d.new_hash[:19]} cannot be "
            f"deployed to its leads in flight: {first.text()}{more}",
            f"{first.fix}, then run again (nothing was changed)")


def check(old_plan: Plan, new_plan: Plan, states: Iterable[Tuple[str, State]]) -> Deployment:
    """Every lead's state moved from `old_plan` to `new_plan`, counted, and what refuses it."""
    concern = concerns(old_plan, new_plan)
    leads: List[Tuple[str, State, Tuple[str, ...]]] = []
    steps: Counter = Counter()
    stages: Counter = Counter()
    found: Dict[str, Tuple[Any, int, str]] = {}  # key -> (concern, leads, first lead)
    for lead, state in sorted(states, key=lambda item: item[0]):
        if not isinstance(state, LeadState):
            leads.append((lead, state, ()))
            continue
        moved, notes = migrate(old_plan, new_plan, state)
        leads.append((lead, moved, notes))
        for run in state.running:
            move = step_move(old_plan, new_plan, run.sequence, run.step_id)
            steps[(run.sequence, run.step_id, move.outcome, move.target)] += 1
        if moved.stage != state.stage:
            stages[(state.stage, moved.stage)] += 1
        for c in concern(state):
            was = found.get(c.key)
            found[c.key] = (was[0], was[1] + 1, was[2]) if was else (c, 1, lead)
    if old_plan.funnel != new_plan.funnel:
        n = sum(1 for _, state, _ in leads if isinstance(state, LeadState))
        found = {"funnel": (None, n, next((lead for lead, _, _ in leads), "")), **found}
    refusals: List[Counted] = []
    warnings: List[Counted] = []
    for key, (c, n, first) in sorted(found.items(), key=lambda kv: (KINDS.index(kv[0].split(":")[0]), kv[0])):
        if c is None:
            refusals.append(Counted(key, True, f"are in {old_plan.funnel}, and this is a plan of another funnel, "
                                               f"{new_plan.funnel}",
                                    f"run {new_plan.funnel} on a database of its own (or give the definition of "
                                    f"{old_plan.funnel})", n, first))
        else:
            (refusals if c.refuses else warnings).append(Counted(key, c.refuses, c.reason, c.fix, n, first))
    order = {s.name: (i, {st.id: j for j, st in reversed(list(enumerate(s.steps)))})
             for i, s in enumerate(old_plan.sequences)}

    def place(key: Tuple[str, str, str, Optional[str]]) -> Tuple[Any, ...]:
        seq_at, step_at = order.get(key[0], (len(order), {}))
        return seq_at, key[0], step_at.get(key[1], len(step_at)), key[1]

    return Deployment(new_plan.funnel, old_plan.funnel, old_plan.content_hash, new_plan.content_hash, tuple(leads),
                      tuple(StepCount(seq, step, outcome, target, n)
                            for (seq, step, outcome, target), n in sorted(steps.items(), key=lambda kv: place(kv[0]))),
                      tuple(StageCount(a, b, n) for (a, b), n in sorted(stages.items(),
                                                                        key=lambda kv: old_plan.stage_index(kv[0][0]))),
                      tuple(refusals), tuple(warnings))


def stored_plan(db: Database) -> Optional[Plan]:
    """The plan the database runs, read back from its text; None for a database no plan
    has run on yet."""
    running = db.meta("plan")
    if running is None:
        return None
    text = db.meta(PLAN_JSON)
    if text is None:
        raise UsageError(f"--db {db.path} runs plan {running[:19]} of {db.meta('funnel')} but does not hold the "
                         f"plan itself (an earlier fnl started it), so a new plan cannot be checked against it",
                         "run it once with the plan it was started with (fnl keeps that plan in it then), then "
                         "with the new one")
    plan = planfile.parse(text.encode("utf-8"), f"--db {db.path} (the plan it runs)")
    if plan.content_hash != running:
        raise UsageError(f"--db {db.path}: the plan it holds ({plan.content_hash[:19]}) is not the plan it runs "
                         f"({running[:19]}): the database was changed by something other than fnl",
                         "give a database fnl run keeps")
    return plan


def preview(db: Database, new_plan: Plan) -> Tuple[Plan, Deployment]:
    """The plan the database runs, and what deploying `new_plan` would do to its leads;
    nothing is written."""
    old = stored_plan(db)
    if old is None:
        raise UsageError(f"--db {db.path}: no plan of {new_plan.funnel} runs on this database yet, so none of its "
                         f"leads is in flight", "give the database fnl run keeps for it, or compare two definitions: "
                         "fnl plan OLD NEW")
    return old, check(old, new_plan, db.states())


def against_db(db: Database, new_path: str) -> Tuple[Any, Any, Deployment]:
    """`fnl plan --db PATH NEW`: the plan the database runs and NEW (`diff.Side`s), and what
    deploying NEW would do to the database's leads."""
    from ..diff import Side
    from ..planning import _cannot_plan, load_plan

    with _cannot_plan(new_path, "the new plan file" if new_path.endswith(".json") else "the new definition"):
        new_side = load_plan(new_path)
    db.scope(new_side.plan.funnel, new_side.plan.sender.from_)  # the database keeps each funnel's leads apart
    old, deployment = preview(db, new_side.plan)
    return Side(old), new_side, deployment


def _keep(db: Database, plan: Plan) -> None:
    db.set_meta("plan", plan.content_hash)
    db.set_meta("funnel", plan.funnel)
    db.set_meta(PLAN_JSON, dumps(plan))


def deploy(db: Database, new_plan: Plan) -> Deployment:
    """Move every lead to `new_plan`, in one transaction; a plan some lead refuses is not
    deployed (nothing is written) and comes back with its `refusals` (`refusal` says them)."""
    with db.transaction():
        db.lock_funnel()  # PostgreSQL: no worker advances a lead of the funnel meanwhile
        if db.meta("plan") == new_plan.content_hash:  # another worker deployed it just now
            return check(new_plan, new_plan, ())
        old = stored_plan(db)
        if old is None:
            raise UsageError(f"--db {db.path}: no plan runs on this database yet", "run it with fnl run first")
        d = check(old, new_plan, db.states())
        if d.refusals:
            return d
        db.save_all([(lead, state, next_due(state)) for lead, state, _ in d.leads if isinstance(state, LeadState)])
        db.move_suppressions(old.sender.from_, new_plan.sender.from_)  # a new From keeps the old list
        crash_point("mid-deploy")  # tests: a process killed here leaves the old plan running
        _keep(db, new_plan)
        n = int(db.meta("deployments") or 0) + 1
        record = dict(to_json(d), clock=iso(int(db.meta("clock") or 0)))
        db.set_meta("deployments", str(n))
        db.set_meta(f"deployed:{n}", json.dumps(record, sort_keys=True, ensure_ascii=False))
    return d


def replaced(db: Database, plan_hash: str) -> Optional[Dict[str, Any]]:
    """The record of the deploy that replaced this plan on the database, the last if it
    was replaced more than once, or None if it never ran there."""
    found = None
    for n in range(1, int(db.meta("deployments") or 0) + 1):
        text = db.meta(f"deployed:{n}")
        record = json.loads(text) if text else {}
        if record.get("from") == plan_hash:
            found = record
    return found


def runs(db: Database, plan: Plan, rollback: bool = False) -> Optional[Deployment]:
    """Make `plan` the plan the database runs: a new database starts with it, one an
    earlier fnl started gets its text kept, and a database running another plan has it
    deployed to its leads in flight (the Deployment, not deployed if it has refusals).
    A plan that ran on the database before and was replaced goes back only with
    `rollback`: a worker started with an older definition must not undo a deploy."""
    running = db.meta("plan")
    if running is None:
        with db.transaction():
            _keep(db, plan)
        return None
    if running != plan.content_hash:
        earlier = None if rollback else replaced(db, plan.content_hash)
        if earlier is not None:
            raise UsageError(
                f"--db {db.path}: this definition's plan {plan.content_hash[:19]} ran here before and was replaced "
                f"by plan {str(earlier.get('to'))[:19]} (clock {earlier.get('clock')}); it is not deployed back "
                f"unasked",
                "start this worker with the current definition; to go back to this plan on purpose, run it "
                "once with --rollback (fnl plan --db shows what that does to the leads in flight)")
        return deploy(db, plan)
    if db.meta(PLAN_JSON) is None:
        with db.transaction():
            _keep(db, plan)
    return None


# -- in words ---------------------------------------------------------------------------------

def _leads(n: int) -> str:
    return f"{n:,} lead{'' if n == 1 else 's'}"


def _verb(n: int, plural: str, singular: str) -> str:
    """`plural` for any number of leads but one."""
    return singular if n == 1 else plural


def _step_line(s: StepCount) -> str:
    where = f"{s.sequence}/{s.step}"
    n = s.leads
    if s.outcome == "stays":
        return f"{where}: {_leads(n)} {_verb(n, 'stay', 'stays')}"
    if s.outcome == "resumes":
        return f"{where} (removed): {_leads(n)} {_verb(n, 'resume', 'resumes')} at {s.target} when it was due"
    if s.outcome == "finishes":
        return f"{where} (removed): {_leads(n)} {_verb(n, 'finish', 'finishes')} {s.sequence}, no later step remains"
    return f"{where}: {_leads(n)} {_verb(n, 'leave', 'leaves')} {s.sequence} (the sequence is removed)"


def _counts(d: Deployment) -> str:
    o = d.outcomes()
    staged = sum(s.leads for s in d.stages)
    return (f"{_leads(d.in_flight)}; in sequences {o['stays']:,} {_verb(o['stays'], 'stay', 'stays')}, "
            f"{o['resumes']:,} {_verb(o['resumes'], 'resume', 'resumes')} at a later step, "
            f"{o['finishes']:,} {_verb(o['finishes'], 'finish', 'finishes')}, "
            f"{o['exits']:,} {_verb(o['exits'], 'exit', 'exits')}; "
            f"{staged:,} {_verb(staged, 'change', 'changes')} stage")


def render_text(d: Deployment, path: str) -> str:
    """`fnl plan --db`: the leads of each step and stage, where they go, and what refuses
    the plan (escaped for a terminal)."""
    lines = [f"Leads in flight in {path} ({d.old_hash[:19]} → {d.new_hash[:19]}): {_counts(d)}"]
    lines += [f"  {_step_line(s)}" for s in d.steps]
    lines += [f"  stage {s.stage} (removed): {_leads(s.leads)} {_verb(s.leads, 'move', 'moves')} to {s.to}"
              for s in d.stages]
    lines += [f"  note: {w.text()}" for w in d.warnings]
    if d.refusals:
        lines += ["", f"Refused: this plan cannot be deployed to {path} ({len(d.refusals)} "
                      f"reason{'' if len(d.refusals) == 1 else 's'}; nothing is changed until each is fixed):"]
        for r in d.refusals:
            lines += [f"  - {r.text()}", f"    fix: {r.fix}"]
    return escape_lines("\n".join(lines)) + "\n"


def render_markdown(d: Deployment, path: str) -> str:
    text = render_text(d, path)
    return "**Leads in flight**\n\n```\n" + text.replace("```", "'''") + "```\n"


def summary(d: Deployment) -> str:
    """What a deploy did, for standard error (escaped for a terminal)."""
    lines = [f"fnl: deployed {d.new_hash[:19]} over {d.old_hash[:19]} ({d.funnel}): {_counts(d)}"]
    lines += [f"  {_step_line(s)}" for s in d.steps if s.outcome != "stays"]
    lines += [f"  stage {s.stage} (removed): {_leads(s.leads)} {_verb(s.leads, 'move', 'moves')} to {s.to}"
              for s in d.stages]
    lines += [f"  note: {w.text()}" for w in d.warnings]
    return escape_lines("\n".join(lines)) + "\n"


def to_json(d: Deployment) -> Dict[str, Any]:
    """The counts (not the states): `fnl plan --db --format json`, and the record of a deploy."""
    def counted(c: Counted) -> Dict[str, Any]:
        return {"key": c.key, "reason": c.reason, "fix": c.fix, "leads": c.leads, "first": c.first}

    return {"funnel": d.funnel, "old_funnel": d.old_funnel, "from": d.old_hash, "to": d.new_hash,
            "leads": d.in_flight, "outcomes": d.outcomes(), "deployable": d.deployable,
            "steps": [{"sequence": s.sequence, "step": s.step, "outcome": s.outcome, "target": s.target,
                       "leads": s.leads} for s in d.steps],
            "stages": [{"stage": s.stage, "to": s.to, "leads": s.leads} for s in d.stages],
            "refusals": [counted(r) for r in d.refusals], "warnings": [counted(w) for w in d.warnings]}
