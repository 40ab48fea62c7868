"""A handoff suppresses something that is neither a sequence kind nor a sequence.

`suppress:` lists sequence kinds (nurture, broadcast, sales, onboarding, retention,
expansion) or names of sequences.

Fails:
    handoff:
      sql: {assign: {owner: ana@acme.example}, suppress: [nurture, newsleter]}

Passes:
    handoff:
      sql: {assign: {owner: ana@acme.example}, suppress: [nurture, broadcast]}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL206"
NAME = "unknown-sequence"
SEVERITY = "error"

KINDS = ("nurture", "broadcast", "sales", "onboarding", "retention", "expansion")


def check(ctx: Context) -> Iterator[Finding]:
    names = [s.name for s in ctx.funnel.sequences]
    options = list(KINDS) + names
    for h in ctx.funnel.handoff:
        for i, item in enumerate(h.suppress):
            if item in options:
                continue
            guess = difflib.get_close_matches(item, options, n=1, cutoff=0.6)
            help = f"did you mean `{guess[0]}`?" if guess else f"use a kind ({', '.join(KINDS)}) or a sequence name"
            yield Finding(h.path + ("suppress", i), f"`{item}` is neither a sequence kind nor a sequence", help)
