"""A segment that no sequence, lead magnet or condition uses.

A segment exists to give its leads their own track; one that nothing refers to is
usually a track that was forgotten.

Fails:
    segments: {saas: {...}, healthcare: {...}}   # no sequence has `segment: healthcare`

Passes:
    sequences: {nurture-healthcare: {kind: nurture, segment: healthcare, ...}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import group_mentions

ID = "FNL210"
NAME = "unused-segment"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    used = {name for name, _path, _loc in group_mentions(ctx, "segment")}
    for seg in ctx.funnel.segments:
        if seg.name not in used:
            yield Finding(seg.path, f"segment `{seg.name}` is not used by any sequence",
                          f"give it a track (`segment: {seg.name}` on a sequence) or remove it", key=True)
