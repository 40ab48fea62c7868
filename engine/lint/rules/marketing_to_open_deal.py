"""A nurture or broadcast sequence that can still mail a lead sales is working.

From the first handoff stage on (until a terminal stage), sales owns the lead; only
sales-triggered sequences may email it. A marketing sequence must either end before
that stage (`exit: {stage_at_least: <handoff stage>}`) or be suppressed there by the
handoff (`suppress: [nurture, broadcast]`).

Fails:
    handoff: {sql: {assign: {owner: ana@acme.example}}}               # suppresses nothing
    nurture: {kind: nurture, stage: [subscriber, mql], steps: [...]}  # no exit

Passes:
    handoff: {sql: {assign: {owner: ana@acme.example}, suppress: [nurture, broadcast]}}
"""
from __future__ import annotations

from typing import Iterator, List

from ...model import Sequence
from .. import Finding
from ..context import Context

ID = "FNL404"
NAME = "marketing-to-open-deal"
SEVERITY = "error"


def _stages_while_running(ctx: Context, seq: Sequence) -> List[str]:
    """Stages a lead can be in while this sequence still runs for it."""
    f = ctx.funnel
    start = [s for s in seq.stages if s in f.stages] or list(f.stages)
    limit = f.stage_index(seq.exit.stage_at_least) if seq.exit and seq.exit.stage_at_least else len(f.stages)
    if limit < 0:
        limit = len(f.stages)
    seen = [s for s in start if f.stage_index(s) < limit]
    frontier = list(seen)
    while frontier:
        stage = frontier.pop()
        for t in f.transitions:
            if stage in t.sources and t.to in f.stages and t.to not in seen and f.stage_index(t.to) < limit:
                seen.append(t.to)
                frontier.append(t.to)
    return seen


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        if not seq.is_marketing:
            continue
        for stage in _stages_while_running(ctx, seq):
            if stage in ctx.sales_stages and not ({seq.kind, seq.name} & ctx.suppressing(stage)):
                yield Finding(seq.path, f"{seq.kind} sequence `{seq.name}` can still email leads in `{stage}`, "
                              "where sales is working them",
                              f"add `exit: {{stage_at_least: {stage}}}`, or `suppress: [{seq.kind}]` to the handoff",
                              key=True)
                break
