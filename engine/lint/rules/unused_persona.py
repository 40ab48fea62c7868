"""A persona that no sequence or condition uses.

Fails:
    personas: {executive: {...}, champion: {...}}   # nothing says `persona: champion`

Passes:
    sequences: {champion-track: {kind: nurture, persona: champion, ...}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import group_mentions

ID = "FNL212"
NAME = "unused-persona"
SEVERITY = "info"


def check(ctx: Context) -> Iterator[Finding]:
    used = {name for name, _path, _loc in group_mentions(ctx, "persona")}
    for persona in ctx.funnel.personas:
        if persona.name not in used:
            yield Finding(persona.path, f"persona `{persona.name}` is not used by any sequence or condition",
                          f"use it (`persona: {persona.name}` on a sequence, or `persona == '{persona.name}'`) "
                          "or remove it", key=True)
