"""A sequence whose own timing sends more emails than the frequency cap allows.

Counting every send step (conditional ones too: some lead will get them all), no
window of `per` may hold more than `max` emails. Otherwise the engine has to hold
emails back and the sequence does not run as written.

Fails:
    policies: {frequency_cap: {max: 3, per: 7d}}
    steps: [{send: a}, {wait: 2d, send: b}, {wait: 2d, send: c}, {wait: 2d, send: d}]   # 4 in 7 days

Passes:
    steps: [{send: a}, {wait: 2d, send: b}, {wait: 3d, send: c}, {wait: 4d, send: d}]
"""
from __future__ import annotations

from typing import Iterator

from ...model import format_duration
from .. import Finding
from ..cadence import capped, days, first_over, send_times
from ..context import Context

ID = "FNL401"
NAME = "sequence-over-cap"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    cap = ctx.funnel.policies.frequency_cap
    if cap is None:
        return
    for seq in ctx.funnel.sequences:
        if not capped(ctx.funnel, seq):
            continue
        over = first_over(send_times(seq), cap.per_minutes, cap.max)
        if over:
            count, start, step = over
            yield Finding(seq.path + ("steps", step),
                          f"`{seq.name}` sends {count} emails within {format_duration(cap.per_minutes)} from "
                          f"{days(start)}, over the cap of {cap.max}",
                          f"lengthen the waits so no {format_duration(cap.per_minutes)} holds more than {cap.max}")
