"""Drive the core with a stream of events and the clock between them.

Steps fall due between events (a wait of two days runs out whether or not the lead does
anything), and SLA deadlines pass whether or not sales acts. `drive` keeps one queue of
every lead's next due time and applies, in this order:

* time: minute by minute;
* within a minute, lead by lead (by lead ID), so state shared between leads (round-robin
  assignment) advances in (minute, lead) order, whatever order the leads' events arrive
  in and however they are batched or split;
* within a minute and a lead: first the clock (every step due at or before the minute
  runs), then the lead's events of that minute by timestamp (seconds included), ties in
  the order they were given.

With `until`, the clock stops at the end of that minute and events stamped after it are
not applied: the last item is then the clock at `until` with one `left_out` action saying
how many there were and when the first was.

The runtime and the trace use this loop; the simulator drives the same `core.step`.
"""
from __future__ import annotations

import gc
import heapq
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from . import core
from .plan import Plan
from .state import CLOCK, Action, Event, LeadState, Prospect, Shared, iso
from .store import StateStore

MAX_TICKS_PER_GAP = 10_000
YOUNG_EVERY = 5_000  # engine steps between collections of the young generations (`young_collections`)


@contextmanager
def young_collections() -> Iterator[None]:
    """The engine loop keeps every lead's state for as long as it runs, and makes short-lived
    objects by the million: Python's full collections, which walk every long-lived object
    each time, took a fifth to a quarter of the runtime's loop on 20,000 leads and a tenth
    of `drive`'s. Inside this, only the young generations are collected (by `Driver.apply`,
    every YOUNG_EVERY steps); after it, the collector is as it was. The engine makes no
    reference cycles (a test holds a whole quarter of acme to none), so memory is freed
    as it was, by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Applied:
    event: Event
    before: core.State
    result: core.Result


def next_due(state: core.State) -> Optional[int]:
    """The next minute at which the clock alone changes this lead: a due step, the
    minute after an SLA deadline, or the minute an unconfirmed double opt-in expires."""
    if isinstance(state, Prospect):
        return state.pending.expires if state.pending is not None else None
    if not isinstance(state, LeadState):
        return None
    times = [r.due for r in state.running]
    if state.sla_deadline is not None:
        times.append(state.sla_deadline + 1)
    return min(times) if times else None


def event_order(events: Iterable[Event]) -> List[Event]:
    """Events in the order the engine applies them (see the module docstring)."""
    indexed = list(enumerate(events))
    indexed.sort(key=lambda item: (item[1].at, item[1].lead, item[1].second, item[0]))
    return [e for _, e in indexed]


def lead_next(state: core.State, lead: str, events: List[Event], until: int) -> Optional[Event]:
    """One lead's next engine step up to `until`, in `drive`'s order for that lead: its
    clock when a step or an SLA deadline falls due at or before the minute of its next
    event (`events`: the lead's unapplied events in engine order), else that event. A lead
    is advanced this way on its own (the workers on PostgreSQL) and gives the steps `drive`
    gives it among all leads, since leads meet only in the state shared between them."""
    due = next_due(state)
    first = events[0] if events else None
    if due is not None and due <= until and (first is None or due <= first.at):
        return Event(CLOCK, due, lead)
    return first


class Driver:
    """The engine loop's state: every lead's state, the state shared between leads, and
    one queue of due times. `drive` feeds it a stream of events; the simulator feeds it
    the events its synthetic leads make in reply to what the engine did, so both apply
    the clock and events in the one order of the module docstring."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        # lead -> state, like a dict, holding at most store.LIVE_STATES states in memory (the
        # rest in a private temporary file), so a trace of any number of leads fits in memory.
        self.states: StateStore = StateStore()
        self.shared = Shared()
        self._queue: List[Tuple[int, str]] = []  # (due minute, lead); stale entries are skipped
        self._queued: Dict[str, int] = {}  # each lead's next due time, as queued: unchanged ones are not queued again
        self._steps = 0

    def restore(self, states: Iterable[Tuple[str, core.State]], shared: Shared) -> None:
        """Start from stored states (the runtime's database): every lead's state, the state
        shared between leads, and the clock of each lead with a step or SLA pending."""
        self.shared = shared
        for lead, state in states:
            self.states[lead] = state
            due = next_due(state)
            if due is not None:
                self._queued[lead] = due
                heapq.heappush(self._queue, (due, lead))

    def apply(self, event: Event) -> Applied:
        self._steps += 1
        if self._steps % YOUNG_EVERY == 0 and not gc.isenabled():  # inside `young_collections`
            gc.collect(1)
        before = self.states.get(event.lead)
        result = core.step(self.plan, before, event, self.shared)
        self.shared = result.shared
        if result.state is not None:
            self.states[event.lead] = result.state
        due = next_due(before if result.state is None else result.state)  # the lead's state now
        if due is None:
            self._queued.pop(event.lead, None)  # any queued time of the lead is stale now
        elif self._queued.get(event.lead) != due:
            self._queued[event.lead] = due
            heapq.heappush(self._queue, (due, event.lead))
        return Applied(event, before, result)

    def next_clock(self) -> Optional[Tuple[int, str]]:
        """(minute, lead) of the next time the clock alone changes a lead, or None."""
        queue, queued = self._queue, self._queued
        while queue:
            due, lead = queue[0]
            # `_queued` holds every lead's next due time as `apply` last worked it out, so an
            # entry is current exactly when it matches (no need to read the state back).
            if queued.get(lead) == due:
                return due, lead
            heapq.heappop(queue)  # stale: the lead's next due time moved
        return None

    def tick(self) -> Applied:
        """Run the clock for the lead that is due first (`next_clock`)."""
        found = self.next_clock()
        assert found is not None, "tick() needs a due lead"
        due, lead = heapq.heappop(self._queue)
        if self._queued.get(lead) == due:
            del self._queued[lead]
        return self.apply(Event(CLOCK, due, lead))

    def clock_until(self, limit: Tuple[int, str]) -> Iterator[Applied]:
        """Every due time ordered before (minute, lead) = limit."""
        for _ in range(MAX_TICKS_PER_GAP * max(1, len(self.states))):
            found = self.next_clock()
            if found is None or found >= limit:
                return
            yield self.tick()


def drive(plan: Plan, events: Iterable[Event], until: Optional[int] = None, ordered: bool = False) -> Iterator[Applied]:
    """Apply events and the clock in engine order (see the module docstring). With
    `ordered`, the events already come in engine order (`event_order`) and are read
    lazily, so a stream of any length runs in bounded memory: the states of leads not
    seen lately wait in a temporary file (`store.StateStore`)."""
    driver = Driver(plan)
    left_out = 0
    first_left_out: Optional[Event] = None
    with young_collections():
        for event in (events if ordered else event_order(events)):
            if until is not None and event.at > until:
                left_out += 1
                if first_left_out is None or (event.at, event.second) < (first_left_out.at, first_left_out.second):
                    first_left_out = event
                continue
            if event.type == CLOCK and not event.lead:
                yield from driver.clock_until((event.at + 1, ""))
                continue
            yield from driver.clock_until((event.at, event.lead + "\x00"))
            yield driver.apply(event)
        if until is not None:
            yield from driver.clock_until((until + 1, ""))
    if until is not None and first_left_out is not None:
        yield left_out_item(until, left_out, first_left_out, driver.shared)


def left_out_item(until: int, count: int, first: Event, shared: Shared) -> Applied:
    """The clock at `until`, saying how many events after it were not applied."""
    first_at = iso(first.at, first.second)
    events = "event" if count == 1 else "events"
    note = Action("left_out", until, "", (("count", count), ("first_at", first_at), ("until", iso(until)),
                                          ("reason", f"{count} {events} after {iso(until)} left out, not applied "
                                                     f"(the first at {first_at})")))
    return Applied(Event(CLOCK, until, ""), None, core.Result(None, (note,), shared))
