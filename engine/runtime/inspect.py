"""`fnl status` and `fnl explain`: what the runtime's database holds, in the words of
`fnl trace`."""
from __future__ import annotations

import json
from collections import Counter
from typing import List

from ..errors import UsageError
from ..plan import Plan
from ..state import Action, LeadState, Prospect, iso, parse_time
from ..trace import _describe_action
from .db import Database


def status(db: Database, plan: Plan, source: str = "") -> str:
    """Leads per stage and per running sequence, the sends due next, deliveries not done,
    and handoffs past their SLA, per owner. UsageError when the database has never run
    the funnel."""
    running_plan = db.meta("plan")
    if running_plan is None:
        raise UsageError(f"--db {db.path} holds no funnel {plan.funnel}: fnl run has not run it on this database",
                         f"give the database fnl run --db keeps for {plan.funnel}, or run it there first")
    clock = int(db.meta("clock") or 0)
    stages: Counter = Counter()
    sequences: Counter = Counter()
    owners: Counter = Counter()
    late: Counter = Counter()
    due: List[int] = []
    prospects = 0
    for _lead, state in db.states():
        if isinstance(state, Prospect):
            prospects += 1
            continue
        assert isinstance(state, LeadState)
        stages[state.stage] += 1
        for run in state.running:
            sequences[run.sequence] += 1
            due.append(run.due)
        if state.owner:
            owners[state.owner] += 1
    for owner in db.breaches():
        late[owner] += 1
    outbox = db.outbox_statuses()
    counts = db.counts()
    width = max([len(n) for n in list(stages) + list(sequences) + list(owners)] +
                [len(s.name) for s in plan.stages] + [len(s.name) for s in plan.sequences] + [18]) + 2
    lines = [f"{plan.funnel} on {db.path}: plan {running_plan[:19]}, clock at {iso(clock)}",
             f"events {counts['events']:,} ({counts['pending events']:,} not applied yet); "
             f"actions {counts['actions']:,}"
             f" ({outbox.get('pending', 0):,} not delivered, {outbox.get('failed', 0):,} failed, "
             f"{outbox.get('suppressed', 0):,} suppressed)" + _rejected_note(db), "", "leads per stage"]
    if running_plan != plan.content_hash:
        given = source or plan.funnel
        lines[1:1] = [f"the database runs plan {running_plan[:19]}; {given} is plan {plan.content_hash[:19]}: "
                      f"fnl run {given} would deploy it (fnl plan --db {db.path} {given} shows what it does)"]
    for stage in plan.stages:
        lines.append(f"  {stage.name:<{width}}{stages.get(stage.name, 0):>8,}")
    if prospects:
        lines.append(f"  {'(not opted in yet)':<{width}}{prospects:>8,}")
    lines += ["", "leads in each sequence"]
    for seq in plan.sequences:
        lines.append(f"  {seq.name:<{width}}{sequences.get(seq.name, 0):>8,}")
    soon = sum(1 for d in due if d <= clock + 1440)
    lines += ["", f"steps due in the next 24 hours: {soon:,}" + (f" (the next at {iso(min(due))})" if due else "")]
    lines += ["", "leads per owner (and handoffs they let pass their SLA)"]
    for owner, n in sorted(owners.items()):
        lines.append(f"  {owner:<{width}}{n:>8,}" + (f"  ({late[owner]:,} past SLA)" if late[owner] else ""))
    if not owners:
        lines.append("  (no handoffs yet)")
    lines += _escalations(db, plan, width)
    return "\n".join(lines) + "\n"


def _escalations(db: Database, plan: Plan, width: int) -> List[str]:
    """The status block of escalations per rep: the leads escalated away from each rep
    (an SLA it let pass) and the leads it took over. Only for a funnel that escalates, or
    a database that holds escalations."""
    away: Counter = Counter()
    taken: Counter = Counter()
    for (text,) in db.conn.execute("SELECT action FROM outbox WHERE funnel = ? AND action LIKE '%\"escalated\"%'",
                                   (db.funnel,)).fetchall():
        doc = json.loads(text)
        if doc.get("type") == "escalated":
            away[str(doc.get("owner") or "")] += 1
            if doc.get("to"):
                taken[str(doc["to"])] += 1
    if not away and not any(h.escalate is not None for h in plan.handoff):
        return []
    lines = ["", "escalations per rep (leads escalated away after an SLA passed; leads taken over)"]
    for rep in sorted(set(away) | set(taken)):
        lines.append(f"  {rep:<{width}}{away[rep]:>8,} escalated{taken[rep]:>8,} taken over")
    if not away:
        lines.append("  (no escalations yet)")
    return lines


def _rejected_note(db: Database) -> str:
    """`; N rejected events` for the status header: events the engine refused (an opt-in
    missing a required attribute, say), each with its reason in `fnl explain`."""
    n = sum(1 for (text,) in db.conn.execute("SELECT action FROM outbox WHERE funnel = ? AND action LIKE "
                                             "'%\"rejected\"%'", (db.funnel,)).fetchall()
            if json.loads(text).get("type") == "rejected")
    return f"; {n:,} rejected event{'' if n == 1 else 's'} (fnl explain LEAD says why)" if n else ""


def explain(db: Database, lead: str) -> str:
    """One lead's history, step by step, and where it is now."""
    state = db.state(lead)
    history = db.history(lead)
    if state is None and not history:
        return ""
    lines: List[str] = []
    last_step = None
    rejected = ""
    for step, text, status_ in history:
        doc = json.loads(text)
        if step != last_step:
            last_step = step
            if step.startswith("event:"):
                event = db.event(step[len("event:"):])
                head = f"{iso(event.at, event.second)}  {event.summary()}" if event else step
            else:
                head = f"{iso(int(step.split(':')[1]))}  clock"
            lines.append(head)
        detail = tuple(sorted((k, v) for k, v in doc.items() if k not in ("type", "at", "lead")))
        action = Action(doc["type"], parse_time(doc["at"]), lead, detail)
        if doc["type"] == "rejected":
            rejected = str(doc.get("reason") or "")
        note = "" if status_ == "delivered" else f"  [{status_}]"
        lines.append(f"    → {_describe_action(action)}{note}")
    if isinstance(state, LeadState):
        running = ", ".join(f"{r.sequence} (next step {r.step_id} at {iso(r.due)})" for r in state.running) or "none"
        lines += ["", f"now: {state.stage}, score {state.score:.1f}"
                      + (f", owner {state.owner}" if state.owner else "")
                      + (", unsubscribed" if state.unsubscribed else "") + (", suppressed" if state.bounced else ""),
                  f"sequences running: {running}"]
    elif state is not None:
        lines += ["", f"now: not opted in yet ({len(state.held)} events held)"]
    else:  # every event of the lead was refused: nothing of it is stored but the history
        lines += ["", "now: not in the funnel" + (": the engine rejected its event (above), so no state is stored"
                                                  if rejected else ": no state is stored")]
    return "\n".join(lines) + "\n"


def explain_all(db: Database, lead: str) -> str:
    """`explain` in every funnel of the database that holds the lead."""
    texts = []
    funnels = db.funnels()
    for funnel in funnels:
        db.scope(funnel)
        text = explain(db, lead)
        if text:
            texts.append(text if len(funnels) == 1 else f"in {funnel}:\n{text}")
    return "\n".join(texts)
