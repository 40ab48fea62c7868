"""A sequence or lead magnet names a segment that is not defined.

Fails:
    segments: {saas: {when: "industry == 'saas'"}}
    sequences:
      nurture-fin: {kind: nurture, stage: subscriber, segment: fintech, steps: [...]}

Passes:
    segments: {saas: {when: "industry == 'saas'"}}
    sequences:
      nurture-saas: {kind: nurture, stage: subscriber, segment: saas, steps: [...]}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import compared_literals

ID = "FNL202"
NAME = "unknown-segment"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    known = sorted(s.name for s in f.segments)

    def bad(name: str) -> str:
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if guess:
            return f"did you mean `{guess[0]}`?"
        return f"defined segments: {', '.join(known)}" if known else "define it under `segments:`"

    for seq in f.sequences:
        if seq.segment and seq.segment not in known:
            yield Finding(seq.path + ("segment",), f"segment `{seq.segment}` is not defined", bad(seq.segment))
    for m in f.lead_magnets:
        if m.segment and m.segment not in known:
            yield Finding(m.path + ("segment",), f"segment `{m.segment}` is not defined", bad(m.segment))
    for cond in ctx.conditions:
        for lit in compared_literals(cond.tree, "segment"):
            if lit.value not in known:
                yield Finding(cond.path, f"segment `{lit.value}` is not defined", bad(str(lit.value)),
                              location=ctx.location_in_condition(cond, lit.offset))
