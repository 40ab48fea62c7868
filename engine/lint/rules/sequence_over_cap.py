"""A sequence whose own timing sends more emails than the frequency cap allows.

Counting every send step (conditional ones too: some lead will get them all, except
that of steps whose conditions exclude each other, such as `when: X` and `unless: X`,
at most one sends), no window of `per` may hold more than `max` emails. Otherwise the engine has to hold
emails back and the sequence does not run as written.

Fails:
    policies: {frequency_cap: {max: 3, per: 7d}}
    steps: [{send: a}, {wait: 2d, send: b}, {wait: 2d, send: c}, {wait: 2d, send: d}]   # 4 in 7 days

Passes:
    steps: [{send: a}, {wait: 2d, send: b}, {wait: 3d, send: c}, {wait: 4d, send: d}]
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..cadence import cap_window, capped, days, exclusive_pairs, first_over, send_times
from ..context import Context

ID = "FNL401"
NAME = "sequence-over-cap"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    cap = ctx.funnel.policies.frequency_cap
    if cap is None:
        return
    window = cap_window(ctx.funnel, ctx.doc)
    for seq in ctx.funnel.sequences:
        if not capped(ctx.funnel, seq):
            continue
        over = first_over(send_times(seq), cap.per_minutes, cap.max, exclusive_pairs(ctx.funnel, seq))
        if over:
            count, start, step = over
            yield Finding(seq.path + ("steps", step),
                          f"`{seq.name}` sends {count} emails within {window} from "
                          f"{days(start)}, over the cap of {cap.max}",
                          f"lengthen the waits so no {window} holds more than {cap.max}")
