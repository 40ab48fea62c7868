"""`fnl status` and `fnl explain`: what the runtime's database holds, in the words of
`fnl trace`."""
from __future__ import annotations

import json
from collections import Counter
from typing import List

from ..plan import Plan
from ..state import Action, LeadState, Prospect, iso, parse_time
from ..trace import _describe_action
from .db import Database


def status(db: Database, plan: Plan) -> str:
    """Leads per stage and per running sequence, the sends due next, deliveries not done,
    and handoffs past their SLA, per owner."""
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
    lines = [f"{plan.funnel} on {db.path}: plan {plan.content_hash[:19]}, clock at {iso(clock)}",
             f"events {counts['events']:,} ({counts['pending events']:,} not applied yet); "
             f"actions {counts['actions']:,}"
             f" ({outbox.get('pending', 0):,} not delivered, {outbox.get('failed', 0):,} failed, "
             f"{outbox.get('suppressed', 0):,} suppressed)", "", "leads per stage"]
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
    return "\n".join(lines) + "\n"


def explain(db: Database, lead: str) -> str:
    """One lead's history, step by step, and where it is now."""
    state = db.state(lead)
    if state is None:
        return ""
    lines: List[str] = []
    last_step = None
    for step, text, status_ in db.history(lead):
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
        note = "" if status_ == "delivered" else f"  [{status_}]"
        lines.append(f"    → {_describe_action(action)}{note}")
    if isinstance(state, LeadState):
        running = ", ".join(f"{r.sequence} (next step {r.step_id} at {iso(r.due)})" for r in state.running) or "none"
        lines += ["", f"now: {state.stage}, score {state.score:.1f}"
                      + (f", owner {state.owner}" if state.owner else "")
                      + (", unsubscribed" if state.unsubscribed else "") + (", suppressed" if state.bounced else ""),
                  f"sequences running: {running}"]
    else:
        lines += ["", f"now: not opted in yet ({len(state.held)} events held)"]
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
