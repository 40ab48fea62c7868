"""Per-domain sending limits, enforced at delivery: a rate (at most N emails in each clock
hour or UTC day) and a warm-up schedule (at most N emails a day, by day since the domain's
first send), from the runtime config's `limits:`.

The engine's decisions are not changed: an email over a limit is held back
(`loop.HeldBack`), stays pending in the outbox, and goes in a later delivery, in outbox
order, never dropped. The sends are counted per sending domain (the domain of the From
address, whichever funnel of the database sent) and clock hour in the `sends` table, one
row per domain and hour, on the clock the delivery runs on (the virtual clock of a replay,
the real one otherwise). An email is counted after the SMTP server took it; one sent again
after a crash is counted again, which holds back more, never less.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..state import iso
from . import loop
from .config import Limit
from .db import Database

HOUR, DAY = 60, 1440


def sent(db: Database, domain: str, first_hour: int, end_hour: int) -> int:
    """Emails sent from `domain` in the clock hours [first_hour, end_hour)."""
    row = db.conn.execute("SELECT COALESCE(SUM(sent), 0) FROM sends WHERE domain = ? AND hour >= ? AND hour < ?",
                          (domain, first_hour, end_hour)).fetchone()
    return int(row[0])


def first_send(db: Database, domain: str) -> Optional[int]:
    """The clock hour of the domain's first send, or None before it."""
    row = db.conn.execute("SELECT MIN(hour) FROM sends WHERE domain = ?", (domain,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def count_send(db: Database, domain: str, minute: int) -> None:
    """One more email sent from `domain` in the hour of `minute`."""
    db.conn.execute("INSERT INTO sends (domain, hour, sent) VALUES (?, ?, 1) "
                    "ON CONFLICT (domain, hour) DO UPDATE SET sent = sends.sent + 1", (domain, minute // HOUR))


def sends(db: Database, domain: str) -> Dict[int, int]:
    """{clock hour: emails sent} of a domain."""
    return {int(hour): int(n) for hour, n in db.conn.execute(
        "SELECT hour, sent FROM sends WHERE domain = ? ORDER BY hour", (domain,)).fetchall()}


def holds(db: Database, limit: Limit, minute: int) -> Optional[Tuple[int, str]]:
    """Whether the limits of `limit.domain` hold an email back at `minute`: (the minute they
    let one go again, why), or None."""
    hour, day = minute // HOUR, minute // DAY
    found: List[Tuple[int, str]] = []
    rate = limit.rate
    if rate is not None:
        start = hour if rate.per == HOUR else day * 24
        if sent(db, limit.domain, start, start + rate.per // HOUR) >= rate.count:
            found.append(((start + rate.per // HOUR) * HOUR,
                          f"at most {rate.count:,} an {'hour' if rate.per == HOUR else 'day'}"))
    if limit.warmup:
        first = first_send(db, limit.domain)
        warm_day = 1 if first is None else day - first // 24 + 1
        cap = limit.cap(warm_day)
        if cap is not None and sent(db, limit.domain, day * 24, day * 24 + 24) >= cap:
            found.append(((day + 1) * DAY, f"warm-up day {warm_day}: at most {cap:,} a day"))
    return max(found) if found else None


class Limited:
    """The SMTP adapter under its sending domain's limits. While the limits are known to
    hold (until the minute they let one go again: sends only add up), an email is held back
    at once (`loop.HeldBack`), neither made nor counted, so a backlog of thousands costs no
    rendering each round. Otherwise the message is made first, so an email consent no
    longer allows, or one refused for what is in it, is parked at once as without limits;
    one over the limits is held back and not sent; one sent is counted."""

    def __init__(self, inner: Any, limit: Limit, db: Database, now: Callable[[], int]) -> None:
        self.inner, self.limit, self.db, self.now = inner, limit, db, now
        self.domain = limit.domain
        self.held: Set[str] = set()  # the keys held back
        self.until: Optional[int] = None
        self.why = ""

    def takes(self, action: Dict[str, Any]) -> bool:
        return bool(self.inner.takes(action))

    def __call__(self, action: Dict[str, Any], key: str) -> None:
        minute = self.now()
        if self.until is not None and minute < self.until:  # still held: as it was a moment ago
            self.held.add(key)
            raise loop.HeldBack(f"held back by the limits of {self.domain} until {iso(self.until)} ({self.why})")
        msg = self.inner.message(action, key)  # smtp.Suppressed, ValueError: parked, not held
        hold = holds(self.db, self.limit, minute)
        if hold is not None:
            until, why = hold
            self.held.add(key)
            if self.until is None or until >= self.until:
                self.until, self.why = until, why
            raise loop.HeldBack(f"held back by the limits of {self.domain} until {iso(until)} ({why})")
        self.inner.send(msg)
        count_send(self.db, self.domain, minute)

    def summary(self) -> List[str]:
        """The line that says what was held back, if anything."""
        if not self.held or self.until is None:
            return []
        n = len(self.held)
        return [f"{n:,} email{'s' if n != 1 else ''} held back by the limits of {self.domain} until "
                f"{iso(self.until)} ({self.why}); {'they wait' if n != 1 else 'it waits'} in the outbox for a later "
                "run"]
