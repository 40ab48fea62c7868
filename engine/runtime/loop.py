"""The runtime's loop: the stored events and the clock through the engine, durably.

`advance` applies every event in the inbox up to a minute, and the clock between them,
in the one order `engine.drive` states (minute, then lead, then second; the clock before
a lead's events of the minute), starting from the states in the database
(`Driver.restore`). Each batch of engine steps commits in one transaction: the leads'
new states, the shared state, the events marked applied, the clock's minute, and every
action the steps decided, in the outbox under its idempotency key. A process that dies
mid-batch leaves the database as it was before the batch, and the next run takes the
same events through the same states to the same actions under the same keys.

`deliver` then hands undelivered actions to an adapter (`jsonl`: a line each) and marks
them delivered only after the adapter took them: at least once, and a repeat carries the
key of the first.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..drive import Applied, Driver, next_due, young_collections
from ..errors import UsageError
from ..plan import Plan
from ..state import CLOCK, LeadState, Prospect, iso
from .commits import Journal, available
from .db import Committer, Database, Writes, action_key


class Suppressed(Exception):
    """An action consent no longer allows (an adapter raises it: `smtp.Suppressed`)."""


class HeldBack(Exception):
    """An action a sending limit holds back for now (`limits.Limited` raises it): left
    pending in the outbox, for a later delivery."""

BATCH = 500  # events per transaction (the clock's steps between them go with them)
FOLD_EVERY = 2000  # journal rows (commits of one event) folded into the tables at once
MAX_STEPS_HELD = 5000  # engine steps a transaction takes at most when only the clock runs
CRASH_ENV = "FNL_CRASH_AT"  # tests: die (SIGKILL) at a named point of the loop, once


def crash_point(name: str) -> None:
    """Die at once, as a power cut would, when FNL_CRASH_AT names this point: `after-commit`
    (a batch of steps committed, nothing delivered) or `after-send` (an adapter took an
    action, not yet marked delivered). Inert unless the variable is set; the crash tests
    use it to reach the points a random kill rarely hits."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Advanced:
    events: int  # events applied
    steps: int  # engine steps (events and the clock)
    actions: int  # actions recorded in the outbox
    note: str = ""  # what deploying a new plan to the leads in flight did, if it did


SUPPRESSING = {"email.unsubscribed": "unsubscribed", "email.complained": "complained"}


def suppressing(event: Any) -> Optional[str]:
    """Why an event puts its address on the sender's suppression list (an unsubscribe, a
    complaint, a hard bounce), or None."""
    reason = SUPPRESSING.get(event.type)
    if reason is None and event.type == "email.bounced" and (event.bounce or "hard") == "hard":
        reason = "hard bounce"
    return reason


def touched(done: Sequence[Tuple[Any, ...]]) -> Dict[str, Any]:
    """Each lead's last state among engine steps (Applied first in each item)."""
    states: Dict[str, Any] = {}
    for item in done:
        applied = item[0]
        if isinstance(applied.result.state, (LeadState, Prospect)):
            states[applied.event.lead] = applied.result.state
    return states


def commit(db: Union[Database, Writes], plan: Plan, steps: Sequence[Tuple[Applied, str]]) -> int:
    """Record engine steps' actions in the outbox under their keys, and put on the
    sender's suppression list every address that opted out, complained or hard-bounced
    (by the event itself, so an address fnl has never seen is suppressed too, and by the
    lead's state, which also counts soft bounces): how many actions. Inside the caller's
    transaction, with the states it saves (or gathered with them: `Writes`)."""
    records = []
    for item, step in steps:
        for i, action in enumerate(item.result.actions):
            records.append((action_key(plan.content_hash, step, i, action), step, action))
        event = item.event
        reason = suppressing(event)
        if reason is not None and event.lead:
            db.suppress(event.lead, reason, event.at)
    for lead, state in touched(steps).items():
        if isinstance(state, LeadState) and (state.unsubscribed or state.bounced):
            db.suppress(lead, "unsubscribed" if state.unsubscribed else "suppressed",
                        state.unsubscribed_at if state.unsubscribed_at is not None else state.last_at)
    db.record_all(records)
    return len(records)


def advance(db: Database, plan: Plan, until: int, batch: int = BATCH, rollback: bool = False) -> Advanced:
    """Apply the inbox's events up to minute `until`, and the clock to its end: in one
    loop on SQLite, by as many workers as run at once on PostgreSQL (`workers`).

    On SQLite each `batch` events commit together. A batch smaller than BATCH (1: a
    commit per event) commits as one row of the journal (`Database.log`), folded into
    the tables every FOLD_EVERY rows and at the end: each commit durable on its own, without
    writing a page of every table and index it touches. Either way the commits are made
    in order beside the engine, which goes on meanwhile: a batch's by a thread
    (`Database.committer`), single events' by a writer process on Linux
    (`commits.Journal`); every one is made before this returns, and so before any action
    is delivered."""
    if db.funnel != plan.funnel:
        db.scope(plan.funnel, plan.sender.from_)
    # The database keeps the plan it runs (its hash and text); a new plan is deployed to
    # the leads in flight first, in one transaction, or refused with why and what to change.
    from . import deploy as deploying

    deployed = deploying.runs(db, plan, rollback)
    if deployed is not None and not deployed.deployable:
        raise UsageError(*deploying.refusal(deployed, db.path))
    note = deploying.summary(deployed) if deployed is not None else ""
    driver = Driver(plan)
    if db.postgres:
        from .workers import work

        worked = work(db, plan, until)
        db.advance_clock(until)
        return Advanced(worked.events, worked.steps, worked.actions, note)
    driver.restore(db.states(until), db.shared())  # only the leads with work up to `until`
    steps = events = actions = 0
    done: List[Tuple[Applied, str, Optional[int]]] = []
    shared_saved = [driver.shared]
    in_batch = [0]
    journal = batch < BATCH
    commits: Union[Journal, Committer]
    if journal and available():  # a commit per event: by a process of its own
        commits = Journal(db, FOLD_EVERY, after=lambda: crash_point("after-commit"))
    else:
        commits = db.committer(journal, depth=BATCH if journal else 2, fold_every=FOLD_EVERY,
                               after=lambda: crash_point("after-commit"))

    def flush() -> None:
        nonlocal actions
        if not done:
            return
        writes = db.writes()
        actions += commit(writes, plan, [(item, step) for item, step, _ in done])
        writes.save_all([(lead, state, next_due(state)) for lead, state in touched(done).items()])
        if driver.shared != shared_saved[0]:
            writes.save_shared(driver.shared)
            shared_saved[0] = driver.shared
        writes.applied([seq for _, _, seq in done if seq is not None])
        commits.put(writes)  # committed beside the loop, which then calls crash_point
        done.clear()
        in_batch[0] = 0

    def steps_of() -> Iterator[Tuple[Applied, str, Optional[int]]]:
        for seq, id_, event in db.in_order(until):  # a page at a time
            for item in driver.clock_until((event.at, event.lead + "\x00")):
                yield item, f"clock:{item.event.at}:{item.event.lead}", None
            yield driver.apply(event), f"event:{id_}", seq
        for item in driver.clock_until((until + 1, "")):
            yield item, f"clock:{item.event.at}:{item.event.lead}", None

    try:
        with young_collections():
            for item, step, seq in steps_of():
                steps += 1
                done.append((item, step, seq))
                if seq is not None:
                    events += 1
                    in_batch[0] += 1
                    if in_batch[0] >= batch:
                        flush()
                elif len(done) >= MAX_STEPS_HELD:  # the clock alone (after downtime, say): bounded memory
                    flush()
            flush()
    finally:
        commits.close()  # every commit made, the journal folded
    db.advance_clock(until)  # never back
    return Advanced(events, steps, actions, note)


class Jsonl:
    """Every action as a JSON line (the idempotency key added), to a file or a pipe."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def takes(self, action: Dict[str, Any]) -> bool:
        return True

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        self.write(json.dumps({**action, "idempotency_key": key}, sort_keys=True, ensure_ascii=False))


def deliver(db: Database, adapters: Sequence[Any], now: Optional[Callable[[], int]] = None,
            refused: Optional[Callable[[str], None]] = None, untaken: Optional[Counter] = None) -> int:
    """Hand every undelivered action, in outbox order, to each adapter that takes it,
    marking each delivered after every adapter returned; how many. An action an adapter
    refuses for what is in it (ValueError: a line break in a header, an address that is
    not one) is parked as failed with the reason, said to `refused`, and the rest go on;
    an adapter that cannot deliver at all (a server down) stops the delivery, and what
    is left waits for the next run. An action held back by a sending limit (HeldBack)
    stays pending, and this delivery goes on past it. An action no adapter takes is
    marked delivered (it is kept in the outbox), counted by type in `untaken`."""
    clock = now or (lambda: int(time.time() // 60))
    total = 0
    held: set[int] = set()  # outbox seqs held back by a sending limit in this delivery
    while True:
        # Each action is marked in its own transaction as soon as it is delivered, so only
        # the one in flight can go again after a crash. On PostgreSQL the row stays locked
        # (SKIP LOCKED) until then, and workers delivering at once never take the same one.
        with db.transaction():
            rows = [row for row in db.undelivered(len(held) + (1 if db.postgres else 1000)) if row[0] not in held]
            if not rows:
                return total
            if db.postgres:
                total += _deliver_one(db, adapters, clock, refused, *rows[0], held=held, untaken=untaken)
                continue
        idle: List[int] = []  # actions no adapter takes: marked together
        for row in rows:
            if any(adapter.takes(json.loads(row[2])) for adapter in adapters):
                if idle:
                    db.delivered(idle, clock())
                    total, idle = total + len(idle), []
                total += _deliver_one(db, adapters, clock, refused, *row, held=held)
            else:
                idle.append(row[0])
                if untaken is not None:
                    untaken[json.loads(row[2]).get("type")] += 1
        if idle:
            db.delivered(idle, clock())
            total += len(idle)


def _deliver_one(db: Database, adapters: Sequence[Any], clock: Callable[[], int],
                 refused: Optional[Callable[[str], None]], seq: int, key: str, text: str,
                 held: Optional[set[int]] = None, untaken: Optional[Counter] = None) -> int:
    """One action to every adapter that takes it, then marked: 1 if delivered."""
    action = json.loads(text)
    taken = False
    try:
        for adapter in adapters:
            if adapter.takes(action):
                taken = True
                try:
                    adapter(action, key)
                except (Suppressed, HeldBack, ValueError):
                    raise
                except OSError as exc:  # the adapter cannot deliver at all: say which one
                    raise OSError(f"{_where(adapter)}: {exc.strerror or exc}") from None
                crash_point("after-send")
    except Suppressed as exc:  # consent first: not sent, and never will be
        db.failed(seq, str(exc), "suppressed")
        if refused is not None:
            refused(f"action {key} ({action.get('type')} for {action.get('lead')}) not sent: {exc}")
        return 0
    except ValueError as exc:
        db.failed(seq, str(exc))
        if refused is not None:
            refused(f"action {key} ({action.get('type')} for {action.get('lead')}) refused: {exc}")
        return 0
    except HeldBack:  # a sending limit's: pending still, for a later delivery
        if held is not None:
            held.add(seq)
        return 0
    if not taken and untaken is not None:
        untaken[action.get("type")] += 1
    db.delivered([seq], clock())
    return 1


def _where(adapter: Any) -> str:
    """An adapter's destination, for a message about it."""
    inner = getattr(adapter, "inner", adapter)  # a sending limit wraps its adapter
    if hasattr(inner, "host") and hasattr(inner, "port"):
        return f"smtp://{inner.host}:{inner.port}"
    return str(getattr(inner, "url", None) or type(inner).__name__.lower())

POLL = 5.0  # seconds: how often the wall clock looks for new events in the inbox (fnl serve's)


class _Wake(Exception):
    """SIGTERM while the wall clock sleeps: stop sleeping now."""


def run_wall(db: Database, plan: Plan, adapters: Sequence[Any], until: Optional[int] = None,
             say: Callable[[str], None] = print, poll: float = POLL, now: Callable[[], float] = time.time,
             sleep: Callable[[float], None] = time.sleep,
             after: Optional[Callable[[], List[str]]] = None, batch: int = BATCH, rollback: bool = False) -> int:
    """Run on the real time: apply what is due and deliver, then sleep until the next
    step falls due or `poll` seconds pass (new events may have come into the inbox),
    until SIGTERM or Ctrl-C, or the minute `until`; how many rounds ran. `after` runs
    after each round's delivery and says what it did. A SIGTERM
    during a round lets the round finish (its transactions are whole either way); one
    during the sleep ends it at once."""
    stop: List[str] = []
    sleeping = [False]

    def on_term(*_: Any) -> None:
        stop.append("SIGTERM")
        if sleeping[0]:
            raise _Wake()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_term)
    rounds = 0
    said = ""
    try:
        while not stop:
            minute = int(now() // 60)
            target = minute if until is None else min(minute, until)
            done = advance(db, plan, target, batch=batch, rollback=rollback)
            if done.note:
                say(done.note.rstrip("\n").removeprefix("fnl: "))
            delivered = deliver(db, adapters, now=lambda: target, refused=say)
            rounds += 1
            for note in after() if after is not None else ():  # sending limits held back; retention
                say(note)
            if done.events or done.actions or delivered:
                say(f"{iso(target)}: {done.events:,} events applied, {done.actions:,} actions, "
                    f"{delivered:,} delivered")
            if until is not None and minute >= until:
                break
            due = db.next_due()
            if until is not None:
                due = min(due, until + 1) if due is not None else until + 1
            wait = poll if due is None else min(poll, max(0.5, due * 60 - now()))
            note = f"sleeping until {iso(due)}" if due is not None and due * 60 - now() <= poll else \
                "waiting for events"
            if note != said:
                say(note)
                said = note
            sleeping[0] = True
            try:
                if not stop:
                    sleep(wait)
            except _Wake:
                pass
            finally:
                sleeping[0] = False
    except KeyboardInterrupt:
        stop.append("interrupt")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    say(f"stopped ({stop[0]})" if stop else f"the clock reached {iso(until or 0)}: stopped")
    return rounds

__all__ = ["Advanced", "advance", "deliver", "CLOCK"]
