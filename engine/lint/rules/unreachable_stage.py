"""A stage no lead can ever reach.

Leads enter at the stages their lead magnets and entries name (the first stage when
there are neither) and move only along `transitions`. A stage outside that graph is dead
configuration, or a missing transition. When the stage is out of reach only because a
transition or entry misspells a stage name, the misspelling (FNL204) is reported instead.

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

from typing import Iterator, Tuple

from .. import Cause, Finding
from ..context import Context
from ..refs import stage_mentions

ID = "FNL301"
NAME = "unreachable-stage"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    # The misspelt names a lead's way in depends on: when one is reported, a stage it
    # cuts off is its consequence, not a second problem.
    misspelt: Tuple[Cause, ...] = tuple(("FNL204", path) for name, path, _loc in stage_mentions(ctx)
                                        if name in ctx.stage_corrections and path[0] in
                                        ("transitions", "lead_magnets", "entries"))
    for i, stage in enumerate(f.stages):
        if stage not in ctx.reachable_stages:
            causes = misspelt if stage in ctx.intended_reachable_stages else ()
            yield Finding(("stages", i), f"no lead can reach stage `{stage}`",
                          f"add a transition `to: {stage}` from a reachable stage, or a lead magnet or entry "
                          f"that `enters: {stage}`", causes=causes)
