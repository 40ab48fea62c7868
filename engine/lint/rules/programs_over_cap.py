"""Sequences that can run for the same lead at once and together break the cap.

Two capped sequences overlap when a lead can be in both: they share a stage (or one is
started by an event while the lead is in the other's stage) and their segments and
personas do not exclude each other. A sequence that can never start (FNL211) overlaps
nothing. Started together, their combined sends must
still fit the frequency cap.

Fails:
    policies: {frequency_cap: {max: 3, per: 7d}}
    nurture-saas:  {kind: nurture,   stage: subscriber, segment: saas, steps: [a, +2d b]}
    newsletter:    {kind: broadcast, stage: subscriber, steps: [x, +3d y]}        # 4 in 7 days

Passes:
    newsletter:    {kind: broadcast, stage: subscriber, steps: [x, +7d y]}
"""
from __future__ import annotations

from typing import Iterator

from ...model import Sequence
from .. import Finding
from ..cadence import cap_window, capped, exclusive_pairs, first_over, send_times
from ..context import Context
from .unused_sequence import never_starts

ID = "FNL402"
NAME = "programs-over-cap"
SEVERITY = "warning"


def _may_overlap(ctx: Context, a: Sequence, b: Sequence) -> bool:
    if a.segment and b.segment and a.segment != b.segment:
        return False
    if a.persona and b.persona and a.persona != b.persona:
        return False
    stages_a = set(a.stages) or set(ctx.funnel.stages)
    stages_b = set(b.stages) or set(ctx.funnel.stages)
    return bool(stages_a & stages_b)


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    cap = f.policies.frequency_cap
    if cap is None:
        return
    # A sequence that can never start (FNL211) runs with nothing.
    seqs = [s for s in f.sequences if capped(f, s) and not never_starts(ctx, s)]
    for i, a in enumerate(seqs):
        for b in seqs[i + 1:]:
            if not _may_overlap(ctx, a, b):
                continue
            # Alone, each is judged by FNL401; here only the combination matters.
            apart_a, apart_b = exclusive_pairs(f, a), exclusive_pairs(f, b)
            if first_over(send_times(a), cap.per_minutes, cap.max, apart_a) or \
                    first_over(send_times(b), cap.per_minutes, cap.max, apart_b):
                continue
            both = [(t, ("a", i)) for t, i in send_times(a)] + [(t, ("b", i)) for t, i in send_times(b)]
            over = first_over(both, cap.per_minutes, cap.max,
                              exclusive_pairs(f, a, "a") | exclusive_pairs(f, b, "b"))
            if over:
                count = over[0]
                yield Finding(b.path, f"`{a.name}` and `{b.name}` can run together and send {count} emails within "
                              f"{cap_window(f, ctx.doc)}, over the cap of {cap.max}",
                              "separate them by segment or stage, space their steps, or let the cap's priority "
                              "decide and suppress this with a reason", key=True)
