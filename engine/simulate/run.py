"""One simulation run: synthetic leads through the engine's own rules.

The synthetic leads act (opt in, open, click, reply, unsubscribe, bounce, visit the
website, and the CRM answers handoffs) as the behaviour model says, in reply to what the
engine does; every one of those events goes through `engine.drive.Driver`, the loop that
`fnl trace` and the runtime use, so the forecast has no rules of its own. What the engine
did is recorded per lead (`LeadRecord`) and per email (`Send`); `figures` turns a run into
the report.

Within a minute, engine order applies (clock first, then events by lead and second). The
events a lead makes in reply to an email carry second 10 (bounce 5), its daily visit
second 50, so with `timing.day: same_minute` a lead's day runs in the reference order:
due emails and their engagement, then the visit; stage changes follow each event.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import core
from .. import state as st
from ..drive import Applied, Driver
from ..plan import Plan
from ..state import Event, LeadState
from .behavior import DAY, Behavior, Reaction
from .cohort import Lead, cohort, lead_timezone, local_minute, local_ordinal, one_by_one
from . import tally
from .draws import Draws, Gaps
from .tally import Tally, headline_stages

if TYPE_CHECKING:
    from .workers import Workers

SECOND_BOUNCE = 5
SECOND_REPLY = 10
SECOND_VISIT = 50


@dataclass(slots=True)
class Send:
    """One email the engine sent, and what the synthetic lead did with it."""

    lead: int
    minute: int
    sequence: str
    step: str
    template: str
    variant: Optional[str]
    kind: str
    opened: bool = False
    clicked: bool = False
    replied: bool = False
    unsubscribed: bool = False
    bounced: bool = False


@dataclass(slots=True)
class LeadRecord:
    """What happened to one lead over the run."""

    index: int
    id: str
    source: str
    arrived: int
    created: bool = False  # the engine took the lead in (its opt-in or entry was not rejected)
    reached: Dict[str, int] = field(default_factory=dict)  # stage -> first minute entered
    stage: Optional[str] = None  # at the horizon
    segment: Optional[str] = None
    persona: Optional[str] = None
    unsubscribed_at: Optional[int] = None
    bounced: bool = False
    emails: int = 0
    owner: Optional[str] = None
    handed_off_at: Optional[int] = None
    sla_breaches: int = 0
    deferred: Dict[str, int] = field(default_factory=dict)  # rule -> sends it held back
    last_click: Optional[int] = None  # the engine's last click of the lead (`email.clicked`)
    sends: List[int] = field(default_factory=list)  # send minutes, for the most emails in a week
    # Each handoff: (minute, round-robin key, reps), for `merge` to give owners in engine order.
    handoffs: List[Tuple[int, str, Tuple[str, ...]]] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """A whole run: its inputs and its tally (`tally`); the per-lead simulator also keeps
    every lead and every email (the vectorised one keeps none: `leads` and `sends` empty)."""

    plan: Plan
    behavior: Behavior
    seed: int
    start: int
    horizon: int  # minutes after start
    tally: Tally
    owners: Mapping[int, str]  # lead number -> the rep that holds it at the horizon
    leads: Tuple[LeadRecord, ...] = ()
    sends: Tuple[Send, ...] = ()
    method: str = "per-lead"  # or "vector"

    @property
    def unsubscribes(self) -> int:
        """Unsubscribe events (an unsubscribe from a sales email counts too)."""
        return self.tally.unsubscribes

    @property
    def rejected(self) -> int:
        """Events the engine refused (should be 0: the behaviour model is checked)."""
        return self.tally.rejected

    @property
    def steps(self) -> int:
        return self.tally.engine_steps


@dataclass(frozen=True)
class Part:
    """What one piece of a run's leads did, simulated on its own (see `simulate`)."""

    leads: Tuple[LeadRecord, ...]
    sends: Tuple[Send, ...]
    rejected: int
    steps: int


def entry_stage(plan: Plan, state: LeadState) -> str:
    """The stage a lead entered the funnel in: its lead magnet's or entry's."""
    magnet = plan.magnet(state.source)
    if magnet is not None:
        return magnet.enters
    entry = next((e for e in plan.entries if e.name == state.source), None)
    return entry.enters if entry is not None else state.stage


def visit_gaps(behavior: Behavior, horizon: int) -> Gaps:
    """A lead's candidate days for a website visit: each day with the higher of the two
    daily rates (`draws.Gaps`), up to the horizon and a day."""
    visits = behavior.visits
    return Gaps(max(visits.daily, visits.after_click_daily, 0.0), horizon // DAY + 2)


class _Loop:
    def __init__(self, plan: Plan, behavior: Behavior, seed: int, start: int, horizon: int,
                 progress: Optional[Callable[[int], None]] = None) -> None:
        self.plan, self.behavior, self.draws = plan, behavior, Draws(seed)
        self.seed, self.start, self.horizon = seed, start, horizon
        self.end = start + horizon  # the last minute simulated is end - 1
        self.driver = Driver(plan)
        self.queue: List[Tuple[int, str, int, int, Any]] = []  # (minute, lead, second, seq, item)
        self.seq = 0
        self.applying: Tuple[int, str, int] = (-1, "", 0)  # (minute, lead, second) of the event being applied
        self.records: Dict[str, LeadRecord] = {}
        self.sends: List[Send] = []
        self.rejected = 0
        self.steps = 0
        self.progress = progress
        self.reactions_on_stage: Dict[str, List[Reaction]] = {}
        self.reactions_on_event: Dict[str, List[Reaction]] = {}
        for reaction in behavior.crm:
            if reaction.after_stage:
                self.reactions_on_stage.setdefault(reaction.after_stage, []).append(reaction)
            if reaction.after_event:
                self.reactions_on_event.setdefault(reaction.after_event, []).append(reaction)
        self.visit_pages = [(page, share) for page, share in behavior.visits.pages]
        self.gaps = visit_gaps(behavior, horizon)

    # -- the queue of what synthetic leads do ----------------------------------------
    def push(self, minute: int, lead: str, second: int, item: Any) -> bool:
        """Queue what a lead does at `minute`; nothing at or after the horizon (False). An
        event's own time is the minute it is queued for. What a lead does in reply to the
        event being applied, in that event's minute, is stamped no earlier than that
        event's second, so the events file lists it in the order it was applied."""
        if minute >= self.end:
            return False
        if (minute, lead) == self.applying[:2]:
            second = max(second, self.applying[2])
        if isinstance(item, Event) and (item.at != minute or item.second != second):
            item = replace(item, at=minute, second=second)
        self.seq += 1
        heapq.heappush(self.queue, (minute, lead, second, self.seq, item))
        return True

    def run(self, leads: Sequence[Tuple[Lead, str]]) -> Part:
        for newcomer, kind in leads:
            self.records[newcomer.id] = LeadRecord(newcomer.index, newcomer.id, newcomer.source, newcomer.arrives)
            self.push(newcomer.arrives, newcomer.id, 0, newcomer.event(self.plan, kind))
            first = self.gaps.gap(self.draws.u("visit-gap", newcomer.index, 0)) - 1 if self.gaps.most > 0 else None
            if first is not None and first <= self.gaps.longest:
                self.push(self._visit_minute(newcomer.arrives, newcomer.id, first, dict(newcomer.profile)),
                          newcomer.id, SECOND_VISIT, ("visit", first, 0))
        driver = self.driver
        while True:
            # The clock of (minute, lead) comes before that lead's events of the minute.
            clock = driver.next_clock()
            head = self.queue[0] if self.queue else None
            if head is not None and (clock is None or clock[0] >= self.end or (head[0], head[1]) < clock):
                minute, lead, second, _, item = heapq.heappop(self.queue)
                if isinstance(item, Event):
                    self.record(driver.apply(item))
                else:
                    self.act(minute, lead, second, item)
            elif clock is not None and clock[0] < self.end:
                self.record(driver.tick())
            else:
                break
        return self.finish()

    # -- what the engine did ---------------------------------------------------------
    def record(self, applied: Applied) -> None:
        self.applying = (applied.event.at, applied.event.lead, applied.event.second)
        self.steps += 1
        if self.progress is not None and self.steps % 5000 == 0:
            self.progress(self.steps)
        event, result = applied.event, applied.result
        rec = self.records.get(event.lead)
        if rec is None:
            return
        if not isinstance(applied.before, LeadState) and isinstance(result.state, LeadState) and not rec.created:
            rec.created = True
            # The stage its opt-in or entry put it in, even when the same step moved it on.
            first = entry_stage(self.plan, result.state)
            rec.reached.setdefault(first, result.state.consent_at)
            self.on_stage(rec, first, result.state.consent_at)
        for action in result.actions:
            kind = action.type
            if kind == "send_email":
                self.on_send(rec, action)
            elif kind == "stage_changed":
                to = action.get("to")
                if to not in rec.reached:
                    rec.reached[to] = action.at
                self.on_stage(rec, to, action.at)
            elif kind == "handoff":
                rule = self.plan.handoff_for(action.get("stage"))
                if rule is not None and isinstance(result.state, LeadState):
                    rec.handoffs.append((action.at, *core.handoff_pool(rule, result.state.profile_dict())))
                if rec.handed_off_at is None:
                    rec.handed_off_at = action.at
            elif kind == "sla_breached":
                rec.sla_breaches += 1
            elif kind == "deferred":
                for rule in action.get("rules") or ():
                    rec.deferred[rule] = rec.deferred.get(rule, 0) + 1
            elif kind == "rejected":
                self.rejected += 1
        if event.type == "email.clicked" and isinstance(result.state, LeadState):
            rec.last_click = dict(result.state.facts).get("email.clicked")  # read once here, not daily
        if event.type.startswith("crm.") and not any(a.type == "rejected" for a in result.actions):
            for reaction in self.reactions_on_event.get(event.type, ()):
                self.react(rec, reaction, event.at, f"after:{event.type}")

    def on_stage(self, rec: LeadRecord, stage: str, minute: int) -> None:
        for reaction in self.reactions_on_stage.get(stage, ()):
            self.react(rec, reaction, minute, f"stage:{stage}")

    def react(self, rec: LeadRecord, reaction: Reaction, minute: int, trigger: str) -> None:
        """At most one of a CRM reaction's outcomes, after its delay."""
        key = ("crm", reaction.name, trigger, minute)
        outcome = self.draws.pick([(o, o.probability) for o in reaction.outcomes], *key, rec.index)
        if outcome is None:
            return
        at = minute + self.draws.delay(outcome.delay, *key, "delay", rec.index)
        self.push(at, rec.id, SECOND_REPLY, ("crm", outcome.event, reaction.after_stage))

    def confirmation(self, rec: LeadRecord, action: st.Action) -> None:
        """A double opt-in's confirmation email: the lead confirms (`optin.confirmed`) with
        its arrival's `confirm.rate`, after its `confirm.delay`, or never."""
        magnet = action.get("magnet")
        confirm = next((a.confirm for a in self.behavior.arrivals if a.source == magnet), None)
        key = ("confirm", magnet)
        if confirm is None or not self.draws.chance(confirm.rate, *key, rec.index):
            return
        at = action.at + self.draws.delay(confirm.delay, *key, "delay", rec.index)
        self.push(at, rec.id, SECOND_REPLY, Event(st.OPTIN_CONFIRMED, at, rec.id, magnet=magnet))

    def on_send(self, rec: LeadRecord, action: st.Action) -> None:
        if action.get("kind") == "confirmation":
            self.confirmation(rec, action)
        lead_state = self.driver.states.get(rec.id)
        profile = lead_state.profile_dict() if isinstance(lead_state, LeadState) else {}
        template = action.get("template")
        variant = action.get("variant")
        send = Send(rec.index, action.at, action.get("sequence"), action.get("step"), template, variant,
                    action.get("kind"))
        self.sends.append(send)
        rec.emails += 1
        rec.sends.append(action.at)
        if action.get("kind") == "confirmation":
            return  # transactional, and the lead is not in the funnel yet: no engagement drawn
        segment, persona = core.groups(self.plan, lead_state, action.at) if isinstance(lead_state, LeadState) \
            else (None, None)
        rates = self.behavior.email.rates_for(template, variant=variant, persona=persona, segment=segment,
                                              profile=profile)
        # Draws are keyed ("email", sequence, step, what, lead): see `draws`.
        key = ("email", send.sequence, send.step)
        lead = rec.index
        timing = self.behavior.timing
        t = action.at
        # Each flag says what the lead did within the run: a reply drawn for after the
        # horizon is not queued, and not counted.
        if self.draws.chance(rates.bounce, *key, "bounce", lead):
            send.bounced = self.push(t + (0 if timing.same_minute else 1), rec.id, SECOND_BOUNCE,
                                     Event("email.bounced", t, rec.id, template=template, bounce="hard"))
            return
        opened_at = t if timing.same_minute else t + self.draws.delay(timing.open_delay, *key, "open-delay", lead)
        if self.draws.chance(rates.unsubscribe, *key, "unsubscribe", lead):
            send.unsubscribed = self.push(opened_at, rec.id, SECOND_REPLY,
                                          Event("email.unsubscribed", opened_at, rec.id, template=template))
            return
        if not self.draws.chance(rates.open, *key, "open", lead):
            return
        send.opened = self.push(opened_at, rec.id, SECOND_REPLY,
                                Event("email.opened", opened_at, rec.id, template=template))
        if not send.opened:
            return
        if self.draws.chance(rates.click, *key, "click", lead):
            at = opened_at if timing.same_minute else opened_at + self.draws.delay(timing.click_delay, *key, "cd", lead)
            send.clicked = self.push(at, rec.id, SECOND_REPLY, Event("email.clicked", at, rec.id, template=template))
        if self.draws.chance(rates.reply, *key, "reply", lead):
            at = opened_at if timing.same_minute else opened_at + self.draws.delay(timing.reply_delay, *key, "rd", lead)
            send.replied = self.push(at, rec.id, SECOND_REPLY, Event("email.replied", at, rec.id, template=template))

    # -- what synthetic leads do on their own ----------------------------------------
    def act(self, minute: int, lead: str, second: int, item: Any) -> None:
        rec = self.records[lead]
        kind = item[0]
        if kind == "visit":
            self.visit(rec, minute, item[1], item[2])
        elif kind == "crm":
            _, event_type, stage = item
            lead_state = self.driver.states.get(lead)
            if stage is not None and (not isinstance(lead_state, LeadState) or lead_state.stage != stage):
                return  # the lead left the stage before the CRM answered
            self.record(self.driver.apply(Event(event_type, minute, lead, second=second)))

    def visit(self, rec: LeadRecord, minute: int, day: int, n: int) -> None:
        """The lead's chance of a website visit on its `day`, its `n`-th candidate day
        (`draws.Gaps`: a visit that day has the probability of that day's rate); then the
        next candidate day."""
        lead_state = self.driver.states.get(rec.id)
        if isinstance(lead_state, st.Prospect) and lead_state.pending is not None:
            # Waiting to confirm a double opt-in: no visit (it would be held), the days go on.
            following = day + self.gaps.gap(self.draws.u("visit-gap", rec.index, n + 1))
            if following <= self.gaps.longest:
                self.push(self._visit_minute(rec.arrived, rec.id, following, dict(lead_state.pending.profile)),
                          rec.id, SECOND_VISIT, ("visit", following, n + 1))
            return
        if not isinstance(lead_state, LeadState):
            return
        if lead_state.unsubscribed:
            return  # gone for good: no more visits
        visits = self.behavior.visits
        if not visits.stages or lead_state.stage in visits.stages:
            clicked = rec.last_click
            # "In the last 7 days" is the click's day and the six after it.
            recent = clicked is not None and \
                self._lead_day(rec.arrived, clicked, lead_state) > day - visits.after_click_minutes // DAY
            rate = visits.after_click_daily if recent else visits.daily
            if self.draws.chance(rate / self.gaps.most, "visit", rec.index, day):
                page = self.draws.pick(self.visit_pages, "page", rec.index, day)
                self.record(self.driver.apply(Event("site.visited", minute, rec.id, page=page,
                                                    second=SECOND_VISIT)))
        following = day + self.gaps.gap(self.draws.u("visit-gap", rec.index, n + 1))
        if following <= self.gaps.longest:
            self.push(self._visit_minute(rec.arrived, rec.id, following, lead_state), rec.id, SECOND_VISIT,
                      ("visit", following, n + 1))

    def _lead_day(self, arrived: int, minute: int, lead_state: LeadState) -> int:
        """The day of `minute` counted from the lead's arrival day (0), in its timezone."""
        if self.behavior.timing.same_minute:
            return (minute - arrived) // DAY
        tz = lead_timezone(self.plan, lead_state.profile_dict())
        return local_ordinal(minute, tz) - local_ordinal(arrived, tz)

    def _visit_minute(self, arrived: int, lead: str, day: int, who: Union[LeadState, Mapping[str, Any]]) -> int:
        """When on its `day` (day 0 is the day it arrived, in its own timezone) a lead may
        visit: with `same_minute`, its arrival's minute of that day; else a time within
        the active hours. A time before the arrival (on day 0) is moved to the arrival."""
        if self.behavior.timing.same_minute:
            return arrived + day * DAY
        hours = self.behavior.timing.hours
        within = hours.start + int(self.draws.u("visit-time", self.records[lead].index, day) * hours.minutes)
        tz = lead_timezone(self.plan, who.profile_dict() if isinstance(who, LeadState) else who)
        return max(arrived, local_minute(arrived, day, within % DAY, tz) + (DAY if within >= DAY else 0))

    def finish(self) -> Part:
        for rec in self.records.values():
            lead_state = self.driver.states.get(rec.id)
            if isinstance(lead_state, LeadState):
                rec.stage = lead_state.stage
                rec.unsubscribed_at = lead_state.unsubscribed_at if lead_state.unsubscribed else None
                rec.bounced = lead_state.bounced
                rec.segment, rec.persona = core.groups(self.plan, lead_state)
        return Part(tuple(self.records.values()), tuple(self.sends), self.rejected, self.steps)


def run_piece(plan: Plan, behavior: Behavior, seed: int, start: int, horizon: int,
              leads: Sequence[Tuple[Lead, str]], progress: Optional[Callable[[int], None]] = None) -> Part:
    """Simulate some of a run's leads on their own: a lead meets no other lead but in the
    round-robin turns of handoffs, which `merge` settles."""
    return _Loop(plan, behavior, seed, start, horizon, progress).run(leads)


def merge(plan: Plan, behavior: Behavior, seed: int, start: int, horizon: int, parts: Sequence[Part]) -> Run:
    """One run from its pieces, the same whatever the pieces were: leads by number, emails
    in engine order (minute, then lead ID), and every handoff's owner taken from the
    engine's round-robin turns (`state.Shared`) in engine order across all pieces, as one
    engine loop over every lead gives them."""
    records = sorted((rec for part in parts for rec in part.leads), key=lambda r: r.index)
    ids = {rec.index: rec.id for rec in records}
    sends = sorted((s for part in parts for s in part.sends), key=lambda s: (s.minute, ids[s.lead]))
    counts = tally.from_records(plan, start, horizon, records, sends, headline_stages(plan),
                                sum(p.rejected for p in parts), sum(p.steps for p in parts))
    owners = tally.settle(counts.handoffs)
    for rec in records:
        rec.owner = owners.get(rec.index)
    return Run(plan, behavior, seed, start, horizon, counts, owners, tuple(records), tuple(sends))


def simulate(plan: Plan, behavior: Behavior, *, seed: int = 1, leads: Optional[int] = None,
             horizon: Optional[int] = None, start: int = 0,
             progress: Optional[Callable[[int], None]] = None, workers: Optional["Workers"] = None,
             engine: Optional[str] = None) -> Run:
    """Run the behaviour model's leads through the plan from minute `start` for `horizon`
    minutes (the model's horizon by default); `leads` scales the arrivals to about that many.

    `engine` (else `workers.engine`) says how: `vector` as NumPy columns (`vector`; a
    UsageError says why a funnel cannot), `per-lead` one lead at a time through
    `engine.drive`, `auto` as columns wherever the funnel allows. Both give the same
    tally. The leads go in pieces (`workers.chunk` leads one at a time,
    `workers.vector_chunk` as columns), one after another or on `workers`' processes or
    Dask cluster: the same run for any piece size and any number of workers."""
    from . import vector
    from .workers import Workers

    span = horizon if horizon is not None else behavior.horizon_minutes
    how = workers if workers is not None else Workers()
    by_lead = vector.lead_by_lead(plan, behavior, start, span, engine or how.engine)
    leads_in = cohort(plan, behavior, Draws(seed), start, leads, span)
    if by_lead is None:
        columns = vector.pieces(plan, behavior, start, span, leads_in)
        tallies = how.run(plan, behavior, seed, start, span, columns, progress, columns=True)
        total = tally.add(tallies) if tallies else tally.new(plan, span)  # type: ignore[arg-type]
        return Run(plan, behavior, seed, start, span, total, tally.settle(total.handoffs), method="vector")
    pieces = [(lead, leads_in.kinds[int(leads_in.source[row])]) for row, lead in enumerate(one_by_one(leads_in))]
    parts = how.run(plan, behavior, seed, start, span, pieces, progress)
    return merge(plan, behavior, seed, start, span, parts)  # type: ignore[arg-type]
