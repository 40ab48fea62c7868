"""A stage that is not terminal but has no transition out of it.

Leads that reach it stay forever: no further nurture, no handoff. Either add a
transition out, or list the stage in `terminal_stages`.

Fails:
    stages: [subscriber, mql, sql, customer]
    terminal_stages: [customer]
    transitions:
      - {from: subscriber, to: mql, when: "score >= 40"}
      - {from: mql, to: sql, when: "replied"}          # nothing leaves sql

Passes:
      - {from: sql, to: customer, on: crm.deal_won}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL302"
NAME = "dead-end-stage"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for i, stage in enumerate(f.stages):
        if stage in f.terminal_stages or stage not in ctx.reachable_stages:
            continue
        if not any(stage in t.sources and t.to != stage for t in f.transitions):
            yield Finding(("stages", i), f"stage `{stage}` has no way out and is not terminal",
                          f"add a transition `from: {stage}`, or list it in `terminal_stages`")
