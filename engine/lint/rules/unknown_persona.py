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

from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import group_mentions, suggest

ID = "FNL203"
NAME = "unknown-persona"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    known = sorted(g.name for g in ctx.funnel.personas)
    for name, path, loc in group_mentions(ctx, "persona"):
        if name not in known:
            yield Finding(path, f"persona `{name}` is not defined", suggest(name, known, "personas", "personas"),
                          location=loc)
