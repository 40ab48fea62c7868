"""A step scheduled with `at:` inside the quiet hours.

Quiet hours hold every email until they end, so a step timed for 21:00 under quiet
hours of 20:00–08:00 really goes out at 08:00: the time in the definition is not the
time the lead sees.

Fails:
    policies: {quiet_hours: {from: "20:00", to: "08:00"}}
    steps:
      - {wait: 1d, at: "21:30", send: shared/webinar-reminder}

Passes:
      - {wait: 1d, at: "09:30", send: shared/webinar-reminder}
"""
from __future__ import annotations

from typing import Iterator

from ...units import format_clock
from .. import Finding
from ..context import Context

ID = "FNL405"
NAME = "send-in-quiet-hours"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    quiet = ctx.funnel.policies.quiet_hours
    if quiet is None:
        return
    for seq in ctx.funnel.sequences:
        for step in seq.steps:
            if step.at is not None and step.send and quiet.contains(step.at):
                yield Finding(step.path + ("at",),
                              f"send at {format_clock(step.at)} falls in quiet hours {format_clock(quiet.start)}–{format_clock(quiet.end)}",
                              f"schedule it at or after {format_clock(quiet.end)} and before {format_clock(quiet.start)}")
