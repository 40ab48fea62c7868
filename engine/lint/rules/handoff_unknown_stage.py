"""A handoff rule for a stage that does not exist.

Fails:
    stages: [subscriber, mql, sql]
    handoff:
      sales-qualified: {assign: {owner: ana@acme.example}}

Passes:
    handoff:
      sql: {assign: {owner: ana@acme.example}}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL503"
NAME = "handoff-unknown-stage"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    stages = ctx.funnel.stages
    for h in ctx.funnel.handoff:
        if h.stage not in stages:
            guess = difflib.get_close_matches(h.stage, stages, n=1, cutoff=0.5)
            yield Finding(h.path, f"handoff for `{h.stage}`, which is not a stage",
                          f"did you mean `{guess[0]}`?" if guess else f"stages are: {', '.join(stages)}", key=True)
