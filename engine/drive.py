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

import heapq
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from . import core
from .plan import Plan
from .state import CLOCK, Action, Event, LeadState, Shared, iso

MAX_TICKS_PER_GAP = 10_000


@dataclass(frozen=True)
class Applied:
    event: Event
    before: core.State
    result: core.Result


def next_due(state: core.State) -> Optional[int]:
    """The next minute at which the clock alone changes this lead: a due step, or the
    minute after an SLA deadline."""
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


def drive(plan: Plan, events: Iterable[Event], until: Optional[int] = None, ordered: bool = False) -> Iterator[Applied]:
    """Apply events and the clock in engine order (see the module docstring). With
    `ordered`, the events already come in engine order (`event_order`) and are read
    lazily, so a stream of any length runs in memory bounded by its leads."""
    states: Dict[str, core.State] = {}
    shared = Shared()
    queue: List[Tuple[int, str]] = []  # (due minute, lead); stale entries are skipped
    queued: Dict[str, int] = {}  # the due time last queued per lead: unchanged ones are not queued again

    def apply(event: Event) -> Applied:
        nonlocal shared
        before = states.get(event.lead)
        result = core.step(plan, before, event, shared)
        shared = result.shared
        if result.state is not None:
            states[event.lead] = result.state
        due = next_due(states.get(event.lead))
        if due is not None and queued.get(event.lead) != due:
            queued[event.lead] = due
            heapq.heappush(queue, (due, event.lead))
        return Applied(event, before, result)

    def clock_until(limit: Tuple[int, str]) -> Iterator[Applied]:
        """Every due time ordered before (minute, lead) = limit."""
        for _ in range(MAX_TICKS_PER_GAP * max(1, len(states))):
            if not queue or queue[0] >= limit:
                return
            due, lead = heapq.heappop(queue)
            if queued.get(lead) == due:
                del queued[lead]
            if next_due(states.get(lead)) != due:
                continue  # stale: the lead's next due time moved
            yield apply(Event(CLOCK, due, lead))

    left_out = 0
    first_left_out: Optional[Event] = None
    for event in (events if ordered else event_order(events)):
        if until is not None and event.at > until:
            left_out += 1
            if first_left_out is None or (event.at, event.second) < (first_left_out.at, first_left_out.second):
                first_left_out = event
            continue
        if event.type == CLOCK and not event.lead:
            yield from clock_until((event.at + 1, ""))
            continue
        yield from clock_until((event.at, event.lead + "\x00"))
        yield apply(event)
    if until is not None:
        yield from clock_until((until + 1, ""))
        if first_left_out is not None:
            yield left_out_item(until, left_out, first_left_out, shared)


def left_out_item(until: int, count: int, first: Event, shared: Shared) -> Applied:
    """The clock at `until`, saying how many events after it were not applied."""
    first_at = iso(first.at, first.second)
    events = "event" if count == 1 else "events"
    note = Action("left_out", until, "", (("count", count), ("first_at", first_at), ("until", iso(until)),
                                          ("reason", f"{count} {events} after {iso(until)} left out, not applied "
                                                     f"(the first at {first_at})")))
    return Applied(Event(CLOCK, until, ""), None, core.Result(None, (note,), shared))
