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
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..drive import Applied, Driver, event_order, next_due
from ..errors import UsageError
from ..plan import Plan
from ..state import CLOCK, LeadState, Prospect
from .db import Database, action_key


class Suppressed(Exception):
    """An action consent no longer allows (an adapter raises it: `smtp.Suppressed`)."""

BATCH = 500  # events per transaction (the clock's steps between them go with them)
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


def advance(db: Database, plan: Plan, until: int, batch: int = BATCH) -> Advanced:
    """Apply the inbox's events up to minute `until`, and the clock to its end."""
    running = db.meta("plan")
    if running is None:
        db.set_meta("plan", plan.content_hash)
        db.set_meta("funnel", plan.funnel)
    elif running != plan.content_hash:
        raise UsageError(f"--db {db.path} runs another plan of {db.meta('funnel')} ({running[:19]}); this is "
                         f"{plan.content_hash[:19]}",
                         "run the plan the database was started with (deploying a new plan to leads in flight is "
                         "not supported yet), or give a new database")
    driver = Driver(plan)
    driver.restore(db.states(), db.shared())
    pending = list(db.pending(until))
    ids = {id(event): (seq, id_) for seq, id_, event in pending}
    ordered = event_order([event for _, _, event in pending])
    steps = events = actions = 0
    done: List[Tuple[Applied, str, Optional[int]]] = []
    shared_saved = [driver.shared]
    in_batch = [0]

    def flush() -> None:
        nonlocal actions
        if not done:
            return
        touched = {}
        records = []
        for item, step, seq in done:
            for i, action in enumerate(item.result.actions):
                records.append((action_key(plan.content_hash, step, i, action), step, action))
            if isinstance(item.result.state, (LeadState, Prospect)):
                touched[item.event.lead] = item.result.state
        with db.transaction():
            for lead, state in touched.items():  # an opt-out or a suppression covers the address for good
                if isinstance(state, LeadState) and (state.unsubscribed or state.bounced):
                    db.suppress(lead, "unsubscribed" if state.unsubscribed else "suppressed",
                                state.unsubscribed_at if state.unsubscribed_at is not None else state.last_at)
            db.record_all(records)
            db.save_all([(lead, state, next_due(state)) for lead, state in touched.items()])
            if driver.shared != shared_saved[0]:
                db.save_shared(driver.shared)
                shared_saved[0] = driver.shared
            db.applied([seq for _, _, seq in done if seq is not None])
        actions += len(records)
        done.clear()
        in_batch[0] = 0
        crash_point("after-commit")

    def steps_of() -> Iterator[Tuple[Applied, str, Optional[int]]]:
        for event in ordered:
            for item in driver.clock_until((event.at, event.lead + "\x00")):
                yield item, f"clock:{item.event.at}:{item.event.lead}", None
            seq, id_ = ids[id(event)]
            yield driver.apply(event), f"event:{id_}", seq
        for item in driver.clock_until((until + 1, "")):
            yield item, f"clock:{item.event.at}:{item.event.lead}", None

    for item, step, seq in steps_of():
        steps += 1
        done.append((item, step, seq))
        if seq is not None:
            events += 1
            in_batch[0] += 1
            if in_batch[0] >= batch:
                flush()
    flush()
    with db.transaction():
        db.set_meta("clock", str(until))
    return Advanced(events, steps, actions)


class Jsonl:
    """Every action as a JSON line (the idempotency key added), to a file or a pipe."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def takes(self, action: Dict[str, Any]) -> bool:
        return True

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        self.write(json.dumps({**action, "idempotency_key": key}, sort_keys=True, ensure_ascii=False))


def deliver(db: Database, adapters: Sequence[Any], now: Optional[Callable[[], int]] = None,
            refused: Optional[Callable[[str], None]] = None) -> int:
    """Hand every undelivered action, in outbox order, to each adapter that takes it,
    marking each delivered after every adapter returned; how many. An action an adapter
    refuses for what is in it (ValueError: a line break in a header, an address that is
    not one) is parked as failed with the reason, said to `refused`, and the rest go on;
    an adapter that cannot deliver at all (a server down) stops the delivery, and what
    is left waits for the next run."""
    clock = now or (lambda: int(time.time() // 60))
    total = 0
    while True:
        rows = db.undelivered()
        if not rows:
            return total
        done: List[int] = []
        for seq, key, text in rows:
            action = json.loads(text)
            try:
                for adapter in adapters:
                    if adapter.takes(action):
                        adapter(action, key)
                        crash_point("after-send")
            except Suppressed as exc:  # consent first: not sent, and never will be
                if done:
                    db.delivered(done, clock())
                    total += len(done)
                    done = []
                db.failed(seq, str(exc), "suppressed")
                if refused is not None:
                    refused(f"action {key} ({action.get('type')} for {action.get('lead')}) not sent: {exc}")
                continue
            except ValueError as exc:
                if done:
                    db.delivered(done, clock())
                    total += len(done)
                    done = []
                db.failed(seq, str(exc))
                if refused is not None:
                    refused(f"action {key} ({action.get('type')} for {action.get('lead')}) refused: {exc}")
                continue
            done.append(seq)
        db.delivered(done, clock())
        total += len(done)


__all__ = ["Advanced", "advance", "deliver", "CLOCK"]
