"""Drive the core with a stream of events and the clock between them.

Steps fall due between events (a wait of two days runs out whether or not the lead
does anything), so before each event the clock is advanced to every earlier due time,
and after the last event it runs on until `until`. The runtime and the trace use this
loop; the simulator will drive the same `core.step` with synthetic events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Optional

from . import core
from .plan import Plan
from .state import Event, LeadState, Shared

MAX_TICKS_PER_GAP = 10_000


@dataclass(frozen=True)
class Applied:
    event: Event
    before: Optional[LeadState]
    result: core.Result


def _next_due(state: Optional[LeadState]) -> Optional[int]:
    if state is None or not state.running:
        return None
    return min(r.due for r in state.running)


def drive(plan: Plan, events: Iterable[Event], until: Optional[int] = None) -> Iterator[Applied]:
    """Apply events in order (per lead), ticking the clock at every due step between them."""
    states: Dict[str, Optional[LeadState]] = {}
    shared = Shared()

    def apply(event: Event) -> Applied:
        nonlocal shared
        before = states.get(event.lead)
        result = core.step(plan, before, event, shared)
        shared = result.shared
        if result.state is not None:
            states[event.lead] = result.state
        return Applied(event, before, result)

    def ticks(lead: str, limit: int) -> Iterator[Applied]:
        for _ in range(MAX_TICKS_PER_GAP):
            due = _next_due(states.get(lead))
            if due is None or due > limit:
                return
            yield apply(Event("tick", max(due, states[lead].last_at), lead))  # type: ignore[union-attr]

    for event in events:
        if event.type == "tick" and not event.lead:
            for lead in sorted(states):
                yield from ticks(lead, event.at)
            continue
        if event.lead in states:
            yield from ticks(event.lead, event.at - 1 if event.at > 0 else 0)
        yield apply(event)
    if until is not None:
        for lead in sorted(states):
            yield from ticks(lead, until)
