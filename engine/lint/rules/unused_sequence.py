"""A sequence no lead can ever start.

A sequence starts for leads in its `stage` (or on its `on` event). It can never start
when every one of its stages is unreachable, or when every one of them suppresses it
(a handoff's `suppress` names its kind or its name).

Fails:
    sequences:
      late-nurture: {kind: nurture, stage: sql, ...}
    handoff:
      sql: {assign: {...}, suppress: [nurture]}

Passes:
    sequences:
      nurture: {kind: nurture, stage: subscriber, ...}
"""
from __future__ import annotations

from typing import Iterator

from ...model import Sequence
from .. import Finding
from ..context import Context

ID = "FNL211"
NAME = "unused-sequence"
SEVERITY = "warning"


def never_starts(ctx: Context, seq: Sequence) -> bool:
    """Whether no lead can ever start `seq`: every stage of it unreachable or suppressing it
    (an event-started sequence, or one with an unknown stage, is not judged here)."""
    f = ctx.funnel
    stages = [s for s in seq.stages if s in f.stages]
    if not stages or len(stages) != len(seq.stages):
        return False
    live = [s for s in stages if s in ctx.reachable_stages]
    return not [s for s in live if not ({seq.kind, seq.name} & ctx.suppressing(s))]


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for seq in f.sequences:
        stages = [s for s in seq.stages if s in f.stages]
        if not stages or len(stages) != len(seq.stages):
            continue  # event-started, or an unknown stage (reported elsewhere)
        live = [s for s in stages if s in ctx.reachable_stages]
        if not live:
            yield Finding(seq.path + ("stage",), f"sequence `{seq.name}` can never start: no lead reaches "
                          f"{', '.join(stages)}", "start it in a stage leads can reach", )
            continue
        open_ = [s for s in live if not ({seq.kind, seq.name} & ctx.suppressing(s))]
        if not open_:
            yield Finding(seq.path + ("stage",), f"sequence `{seq.name}` can never start: handoff suppresses it in "
                          f"{', '.join(live)}", f"start it in an earlier stage, or stop suppressing `{seq.kind}`")
