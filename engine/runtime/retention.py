"""Retention: what the runtime's database stops keeping once it is old (the runtime
config's `retention:`), applied by `fnl run` after delivery, on the run's clock.

- An applied event older than `events` is reduced to its ID (its minute kept, its lead and
  content gone), as `fnl forget` leaves an event: a replayed log still finds it in the
  inbox and adds nothing. An event an action still in the outbox was decided by keeps its
  content, so `fnl explain` can still say what decided that action.
- A delivered action older than `delivered_actions` (by the minute the engine decided it)
  is deleted. Actions not delivered (pending, failed, suppressed) are never deleted.
- Leads' states, the suppression lists and the sending counts are kept.

One transaction: all of it or none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .config import Retention
from .db import Database


@dataclass(frozen=True)
class Applied:
    events: int  # events reduced to their ID
    actions: int  # delivered actions deleted


def apply(db: Database, retention: Retention, now: Optional[int] = None) -> Optional[Applied]:
    """Apply `retention` to the funnel the database works for, at minute `now` (the
    database's clock when not given); None if the clock has not started."""
    if now is None:
        clock = db.meta("clock")
        if clock is None:
            return None
        now = int(clock)
    events = actions = 0
    with db.transaction():
        if retention.delivered_actions is not None:
            actions = db.conn.execute("DELETE FROM outbox WHERE funnel = ? AND status = 'delivered' AND at < ?",
                                      (db.funnel, now - retention.delivered_actions)).rowcount
        if retention.events is not None:
            events = db.conn.execute(
                "UPDATE inbox SET event = '{}', lead = '' WHERE funnel = ? AND applied = 1 AND at < ? "
                "AND event != '{}' AND id NOT IN (SELECT substr(step, 7) FROM outbox WHERE funnel = ? "
                "AND step LIKE 'event:%')", (db.funnel, now - retention.events, db.funnel)).rowcount
    return Applied(events, actions)
