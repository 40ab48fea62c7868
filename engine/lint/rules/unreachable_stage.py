"""A stage no lead can ever reach.

Leads enter at the stages their lead magnets and entries name (the first stage when
there are neither) and move only along `transitions`. A stage outside that graph is dead
configuration, or a missing transition.

Fails:
    stages: [subscriber, mql, sql]
    transitions:
      - {from: subscriber, to: sql, when: "score >= 80"}     # nothing leads to mql

Passes:
    transitions:
      - {from: subscriber, to: mql, when: "score >= 40"}
      - {from: mql, to: sql, when: "replied"}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL301"
NAME = "unreachable-stage"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for i, stage in enumerate(f.stages):
        if stage not in ctx.reachable_stages:
            yield Finding(("stages", i), f"no lead can reach stage `{stage}`",
                          f"add a transition `to: {stage}` from a reachable stage, or a lead magnet or entry "
                          f"that `enters: {stage}`")
