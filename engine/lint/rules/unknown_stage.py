"""A transition, sequence, lead magnet or condition names a stage not in `stages`.

Fails:
    stages: [subscriber, mql, sql]
    transitions:
      - {from: subscriber, to: marketing-qualified, when: "score >= 40"}

Passes:
    transitions:
      - {from: subscriber, to: mql, when: "score >= 40"}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import stage_mentions

ID = "FNL204"
NAME = "unknown-stage"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    stages = ctx.funnel.stages
    for name, path, loc in stage_mentions(ctx):
        if name in stages:
            continue
        guess = difflib.get_close_matches(name, stages, n=1, cutoff=0.5)
        help = f"did you mean `{guess[0]}`?" if guess else f"stages are: {', '.join(stages)}"
        yield Finding(path, f"stage `{name}` is not one of the funnel's stages", help, location=loc)
