"""A sequence or condition names a persona that is not defined.

Fails:
    personas: {executive: {when: "role in ['vp', 'cxo']"}}
    sequences:
      exec-track: {kind: nurture, stage: subscriber, persona: executve, steps: [...]}

Passes:
    sequences:
      exec-track: {kind: nurture, stage: subscriber, persona: executive, steps: [...]}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import compared_literals

ID = "FNL203"
NAME = "unknown-persona"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    known = sorted(p.name for p in f.personas)

    def bad(name: str) -> str:
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if guess:
            return f"did you mean `{guess[0]}`?"
        return f"defined personas: {', '.join(known)}" if known else "define it under `personas:`"

    for seq in f.sequences:
        if seq.persona and seq.persona not in known:
            yield Finding(seq.path + ("persona",), f"persona `{seq.persona}` is not defined", bad(seq.persona))
    for cond in ctx.conditions:
        for lit in compared_literals(cond.tree, "persona"):
            if lit.value not in known:
                yield Finding(cond.path, f"persona `{lit.value}` is not defined", bad(str(lit.value)),
                              location=ctx.location_in_condition(cond, lit.offset))
