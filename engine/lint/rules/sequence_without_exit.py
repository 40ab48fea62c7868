"""A marketing or sales sequence with no exit criteria, where leads can outgrow it.

Without `exit`, a lead keeps getting every step even after it converts, books a demo
or is handed to sales. Nurture, broadcast and sales sequences need an `exit`, unless
every stage a lead can move on to stops the sequence anyway: a handoff's `suppress:`
names its kind or its name, so no lead gets a wrong email. Post-sale programs end with
their last step.

Fails:
    nurture-saas: {kind: nurture, stage: subscriber, steps: [...]}   # mql leads keep getting it

Passes:
    nurture-saas: {kind: nurture, stage: subscriber, steps: [...], exit: {stage_at_least: sql}}
    # or, with subscriber → sql the only move on:
    handoff: {sql: {assign: {owner: ana@acme.example}, suppress: [nurture]}}
"""
from __future__ import annotations

from typing import Iterator, List

from ...model import Sequence
from .. import Finding
from ..context import Context

ID = "FNL306"
NAME = "sequence-without-exit"
SEVERITY = "error"


def _later_stages(ctx: Context, seq: Sequence) -> List[str]:
    """Stages a lead can move on to from the sequence's own, in stage order."""
    f = ctx.funnel
    seen = set(seq.stages)
    frontier = list(seq.stages)
    while frontier:
        stage = frontier.pop()
        for t in f.transitions:
            if stage in t.sources and t.to in f.stages and t.to not in seen:
                seen.add(t.to)
                frontier.append(t.to)
    return [s for s in f.stages if s in seen and s not in seq.stages]


def _names(stages: List[str]) -> str:
    quoted = [f"`{s}`" for s in stages]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        if seq.kind not in ("nurture", "broadcast", "sales") or seq.exit is not None:
            continue
        message = f"{seq.kind} sequence `{seq.name}` has no exit criteria"
        help = "add `exit:`, such as `exit: {stage_at_least: sql}` or `exit: {on: [email.replied]}`"
        if seq.stages and all(s in ctx.funnel.stages for s in seq.stages):
            later = _later_stages(ctx, seq)
            open_ = [s for s in later if not ({seq.kind, seq.name} & ctx.suppressing(s))]
            if later and not open_:
                continue  # every stage a lead moves on to suppresses it: it stops there
            if open_:
                stopped = [s for s in later if s not in open_]
                message += f": leads that move on to {_names(open_)} keep getting it"
                if stopped:
                    message += f" (a handoff suppresses it only in {_names(stopped)})"
                help = (f"add `exit: {{stage_at_least: {open_[0]}}}`, or `suppress: [{seq.kind}]` to a handoff "
                        f"at `{open_[0]}` (a suppression holds from its stage on)")
        yield Finding(seq.path, message, help, key=True)
