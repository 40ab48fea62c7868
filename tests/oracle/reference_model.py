"""An independent model of the reference funnel's per-lead rules (the oracle).

Written from the benchmark specification (/work/shared/REFERENCE_FUNNEL.md) and the
oracle brief, never from fnl's engine, so that it can disagree with fnl. Pure Python,
standard library only.

Time is whole minutes since 1970-01-01 UTC. A "day" of the spec is a calendar day in
UTC (the sender's timezone): day(t) = t // 1440.

Input: one lead's events, already in processing order, each an `Event`; and a horizon
minute `until`. Output: a `Result` (what happened to the lead).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

DAY = 1440  # minutes in a day

# "Nurture for every subscriber: 6 emails at days 0, 2, 5, 9, 14, 21 after opt-in."
NURTURE = [("nurture/day-0", 0), ("nurture/day-2", 2), ("nurture/day-5", 5),
           ("nurture/day-9", 9), ("nurture/day-14", 14), ("nurture/day-21", 21)]
# "a sales-support sequence of 3 emails at days 0, 3, 7 after hand-off"
SALES = [("sales/day-0", 0), ("sales/day-3", 3), ("sales/day-7", 7)]

# "Score starts at 0: open +5, click +10, reply +25, visit +15, pricing visit +20 (instead of +15)."
EMAIL_POINTS = {"email.opened": 5, "email.clicked": 10, "email.replied": 25}
VISIT_POINTS, PRICING_POINTS = 15, 20
# "At the start of each day the score is multiplied by 0.98."
DECAY = 0.98
# "MQL: a subscriber with fit and score >= 40" (compared at 6 decimals).
MQL_THRESHOLD = 40
# "Fit (ICP) = saas or finance."
FIT_INDUSTRIES = ("saas", "finance")


class Event(NamedTuple):
    type: str                       # optin | email.opened|clicked|replied|unsubscribed | site.visited
    minute: int                     # whole minutes since the epoch (UTC)
    template: Optional[str] = None  # email events
    page: Optional[str] = None      # site.visited
    industry: Optional[str] = None  # optin


@dataclass
class Result:
    sends: List[Tuple[int, str]] = field(default_factory=list)              # (minute, template)
    changes: List[Tuple[int, str, str]] = field(default_factory=list)       # (minute, from, to)
    final_stage: str = "subscriber"
    unsubscribed: bool = False
    unsubscribed_at: Optional[int] = None
    # One per input event, in order: (score rounded to 6 decimals, stage) just after it,
    # and whether the lead was subscriber/mql and not unsubscribed just before it (the
    # opt-in counts as active: the lead enters as a subscriber).
    after_event: List[Tuple[float, str]] = field(default_factory=list)
    active_before: List[bool] = field(default_factory=list)


class _Lead:
    def __init__(self, optin: Event, result: Result) -> None:
        self.r = result
        self.t0 = optin.minute
        # "Opt-in at minute t0: stage subscriber, score 0."
        self.stage = "subscriber"
        self.score = 0.0
        self.score_day = optin.minute // DAY   # the day the score was last brought up to date
        self.fit = optin.industry in FIT_INDUSTRIES
        self.sent: Dict[str, int] = {}          # template -> minute it was sent
        self.scored: Set[Tuple[str, str]] = set()
        self.replied = False
        self.pricing_visits: List[int] = []
        self.mql_at: Optional[int] = None
        self.sql_at: Optional[int] = None
        self.unsub_at: Optional[int] = None
        self.next_nurture = 0                   # index into NURTURE of the next nurture email
        self.next_sales = 0                     # index into SALES

    # -- score -------------------------------------------------------------------------
    def bring_score_to(self, t: int) -> None:
        # "At the start of each day (each UTC midnight crossed since the score was last
        # brought up to date) multiply by 0.98."
        while self.score_day < t // DAY:
            self.score *= DECAY
            self.score_day += 1

    # -- email -------------------------------------------------------------------------
    def _send(self, minute: int, template: str) -> None:
        self.r.sends.append((minute, template))
        self.sent.setdefault(template, minute)

    def send_due(self, t: int) -> None:
        """Send every email due at or before minute t, in due order."""
        while True:
            nurture_due = sales_due = None
            if self.next_nurture < len(NURTURE):
                nurture_due = self.t0 + NURTURE[self.next_nurture][1] * DAY
            if self.sql_at is not None and self.next_sales < len(SALES):
                sales_due = self.sql_at + SALES[self.next_sales][1] * DAY
            due = [d for d in (nurture_due, sales_due) if d is not None and d <= t]
            if not due:
                return
            if nurture_due is not None and nurture_due == min(due):
                template = NURTURE[self.next_nurture][0]
                self.next_nurture += 1
                # "An email is sent at its due minute if the lead is subscriber or mql and
                # has not unsubscribed; once the lead is sql, no more nurture."
                if self.unsub_at is None and self.stage in ("subscriber", "mql"):
                    self._send(nurture_due, template)
            else:
                template = SALES[self.next_sales][0]
                self.next_sales += 1
                # "sales/day-0 at h, sales/day-3 at h+3d, sales/day-7 at h+7d, ... stopped
                # by an unsubscribe (the lead stays sql)."
                if self.unsub_at is None:
                    self._send(sales_due, template)

    # -- stages ------------------------------------------------------------------------
    def _move(self, t: int, to: str) -> None:
        self.r.changes.append((t, self.stage, to))
        self.stage = to

    def check_transitions(self, t: int) -> None:
        # "no stage change ever again" after an unsubscribe.
        if self.unsub_at is not None:
            return
        # "subscriber -> mql (fit and score >= 40)", comparing round(score, 6).
        if self.stage == "subscriber" and self.fit and round(self.score, 6) >= MQL_THRESHOLD:
            self._move(t, "mql")
            self.mql_at = t
        # "then mql -> sql (the lead has replied at any time, or made a pricing visit at a
        # minute strictly later than the minute it entered mql)".
        if self.stage == "mql" and (
                self.replied or any(v > self.mql_at for v in self.pricing_visits)):
            self._move(t, "sql")
            self.sql_at = t
            # "Entering sql starts the sales emails at once (sales/day-0 sent at that minute)."
            self.send_due(t)

    # -- events ------------------------------------------------------------------------
    def handle(self, ev: Event) -> None:
        t = ev.minute
        # "first every email due at or before t is sent (in due order), then the minute's events"
        self.send_due(t)
        self.bring_score_to(t)
        if ev.type == "email.unsubscribed":
            # "Unsubscribe (any template, even one never sent: always honoured)"
            if self.unsub_at is None:
                self.unsub_at = t
        elif ev.type in EMAIL_POINTS:
            # "an open/click/reply whose template was not sent to this lead at or before the
            # event's minute" is ignored (no points, no "replied"); every email due by t has
            # been sent above, so `sent` holds exactly the emails sent at or before t.
            if ev.template in self.sent:
                if ev.type == "email.replied":
                    self.replied = True
                # "Each (template, kind) scores once."
                if (ev.template, ev.type) not in self.scored:
                    self.scored.add((ev.template, ev.type))
                    self.score += EMAIL_POINTS[ev.type]
        elif ev.type == "site.visited":
            # "page "pricing" is a pricing visit, anything else a plain visit"
            if ev.page == "pricing":
                self.score += PRICING_POINTS
                self.pricing_visits.append(t)
            else:
                self.score += VISIT_POINTS
        # "after EACH event the transitions are checked in order"
        self.check_transitions(t)


def run_lead(events: List[Event], until: int) -> Result:
    """Run one lead's events (the first is its opt-in) up to the horizon minute `until`."""
    if not events or events[0].type != "optin":
        raise ValueError("a lead's first event must be its opt-in")
    result = Result()
    lead = _Lead(events[0], result)
    for i, ev in enumerate(events):
        result.active_before.append(lead.unsub_at is None and lead.stage in ("subscriber", "mql"))
        if i == 0:
            lead.send_due(ev.minute)  # nurture/day-0 is due at the opt-in minute itself
        else:
            lead.handle(ev)
        result.after_event.append((round(lead.score, 6), lead.stage))
    # "At the horizon until: emails due at or before until are sent (if still allowed);
    # nothing after."
    lead.send_due(until)
    result.final_stage = lead.stage
    result.unsubscribed = lead.unsub_at is not None
    result.unsubscribed_at = lead.unsub_at
    return result
