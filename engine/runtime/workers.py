"""Any number of `fnl run` workers on one PostgreSQL database, each advancing the leads it
takes, and together giving exactly the steps one `engine.drive` loop gives.

Leads meet in one place only: the state shared between them (round-robin turns), which
the engine reads and changes in (minute, lead) order. Everything else about a lead is
its own, so a worker takes a few leads that have work up to the horizon (`SELECT ... FOR
UPDATE SKIP LOCKED`: no lead is advanced by two workers at once, and no worker waits for
another's leads) and runs each on its own through its clock and its events in the
engine's order (`drive.lead_next`), until the horizon or until a step would change the
shared state. There the lead stops, marked `blocked` at that step's minute, and its
progress commits.

A blocked step may run only once no lead has an earlier step left: then it is at the
front of the order. Every lead's `next_at` (with its ID) is where it stands, never
later than its next step, so the lead first by (next_at, lead) is the front. When that
lead is blocked, a worker takes it and the shared state (`FOR UPDATE`), applies that one
step, and gives the lead back to the workers for the rest. The shared state therefore changes in the
order one loop would change it, and every action, key included, is the one `fnl run` on
one worker, or `fnl trace`, gives for the same events.

Each batch of leads commits in one transaction with their states, the inbox flags and
the outbox, as on SQLite; a worker that dies loses only its open transaction, and its
leads go to the next worker that asks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import core
from ..drive import Applied, event_order, lead_next, next_due
from ..errors import UsageError
from ..plan import Plan
from ..state import Shared
from . import codec
from .db import Database
from .loop import commit, crash_point

TAKE = 20  # leads per transaction
WAIT = 0.02  # seconds between looks when the front lead is another worker's
MAX_CLOCK_STEPS = 100_000  # per lead and pass: a guard, as drive.MAX_TICKS_PER_GAP


@dataclass(frozen=True)
class Worked:
    events: int
    steps: int
    actions: int
    serial: int  # steps that changed the shared state, taken at the front of the order


def _advance_lead(db: Database, plan: Plan, lead: str, until: int, shared: Optional[Shared],
                  front_at: Optional[int] = None) -> Tuple[int, int, int, Optional[Shared], int]:
    """Run one lead (its row locked by the caller) as far as it may go: (events, steps,
    actions, the shared state if this lead changed it, serial steps). With `shared`, the
    caller holds the shared state and the lead is at the front, at minute `front_at`: its
    step that changes the shared state runs if it is at that minute (a later one may have
    other leads' steps before it: the lead then waits there), and the lead stops after it."""
    state = db.state(lead)
    pending = list(db.pending(until, lead))
    ids = {id(e): (seq, id_) for seq, id_, e in pending}
    events = event_order([e for _, _, e in pending])
    done: List[Tuple[Applied, str]] = []
    seqs: List[int] = []
    changed = False
    serial = 0
    blocked_at: Optional[int] = None
    for _ in range(MAX_CLOCK_STEPS + len(events)):
        event = lead_next(state, lead, events, until)
        if event is None:
            break
        probe = shared if shared is not None else Shared()
        result = core.step(plan, state, event, probe)
        if result.shared != probe:  # it takes a turn of the shared state
            if shared is None or changed or event.at != front_at:
                blocked_at = event.at
                break
            shared = result.shared
            changed = True
            serial += 1
        if events and event is events[0]:
            seq, id_ = ids[id(event)]
            seqs.append(seq)
            events.pop(0)
            step = f"event:{id_}"
        else:
            step = f"clock:{event.at}:{lead}"
        done.append((Applied(event, state, result), step))
        if result.state is not None:
            state = result.state
        if changed:  # the rest of the lead's steps go back to the workers, in parallel
            break
    actions = commit(db, plan, done)
    db.applied(seqs)
    if state is not None:
        due = next_due(state)
        later = db.first_pending(lead) if blocked_at is None else None
        if blocked_at is not None:
            next_at: Optional[int] = blocked_at
        else:
            next_at = min([t for t in (due, later) if t is not None], default=None)
        db.conn.execute("INSERT INTO leads (funnel, lead, state, next_due, next_at, blocked) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (funnel, lead) DO UPDATE SET state = excluded.state, next_due = "
                        "excluded.next_due, next_at = excluded.next_at, blocked = excluded.blocked",
                        (db.funnel, lead, codec.encode(state), due, next_at, int(blocked_at is not None)))
    else:  # no state yet (its first step waits for a turn, or only events after the horizon)
        db.conn.execute("UPDATE leads SET next_at = ?, blocked = ? WHERE funnel = ? AND lead = ?",
                        (blocked_at if blocked_at is not None else db.first_pending(lead),
                         int(blocked_at is not None), db.funnel, lead))
    return len(seqs), len(done), actions, shared if changed else None, serial


def _same_plan(db: Database, plan: Plan) -> None:
    """Inside a worker's transaction (the funnel's lock held shared): stop if another
    fnl run deployed a new plan meanwhile, rather than advance leads by the old one."""
    running = db.meta("plan")
    if running != plan.content_hash:
        raise UsageError(f"--db {db.path}: another fnl run deployed plan {str(running)[:19]} meanwhile; this worker "
                         f"runs {plan.content_hash[:19]}", "start it again with the new definition")


def work(db: Database, plan: Plan, until: int, take: int = TAKE) -> Worked:
    """Advance every lead of the database's funnel up to minute `until`, alongside any
    other workers doing the same; returns when no lead has work left up to it."""
    events = steps = actions = serial = 0
    while True:
        with db.transaction():
            db.share_funnel()  # a deploy waits for this transaction, and it for a deploy
            _same_plan(db, plan)
            leads = [lead for (lead,) in db.conn.execute(
                "SELECT lead FROM leads WHERE funnel = ? AND blocked = 0 AND next_at <= ? ORDER BY next_at, lead "
                "LIMIT ? FOR UPDATE SKIP LOCKED", (db.funnel, until, take)).fetchall()]
            for lead in leads:
                e, s, a, _, _ = _advance_lead(db, plan, lead, until, None)
                events, steps, actions = events + e, steps + s, actions + a
        if leads:
            crash_point("after-commit")
            continue
        took = 0
        with db.transaction():
            db.share_funnel()
            _same_plan(db, plan)
            # The shared steps at the front of the order, one lead's at a time, while the
            # front is a lead that waits for one (up to `take` in one transaction).
            while took < take:
                front = db.conn.execute("SELECT lead, blocked, next_at FROM leads WHERE funnel = ? AND next_at <= ? "
                                        "ORDER BY next_at, lead LIMIT 1", (db.funnel, until)).fetchone()
                if front is None or not front[1] or not db.conn.execute(
                        "SELECT lead FROM leads WHERE funnel = ? AND lead = ? AND blocked = 1 FOR UPDATE SKIP LOCKED",
                        (db.funnel, front[0])).fetchone():
                    break
                shared = db.shared(lock=True)
                e, s, a, changed, n = _advance_lead(db, plan, front[0], until, shared, front[2])
                if changed is not None:
                    db.save_shared(changed)
                events, steps, actions, serial = events + e, steps + s, actions + a, serial + n
                took += 1
        if took:
            crash_point("after-commit")
            continue
        if front is None:
            break
        time.sleep(WAIT)  # the front lead is another worker's just now
    return Worked(events, steps, actions, serial)
