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

from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import group_mentions, suggest

ID = "FNL202"
NAME = "unknown-segment"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    known = sorted(g.name for g in ctx.funnel.segments)
    for name, path, loc in group_mentions(ctx, "segment"):
        if name not in known:
            yield Finding(path, f"segment `{name}` is not defined", suggest(name, known, "segments", "segments"),
                          location=loc)
