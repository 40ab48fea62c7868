"""Leads that fall in no segment, and so get no segment nurture.

The segment conditions are evaluated over every combination of the profile values
they can tell apart; a combination no segment matches is reported with an example. An
attribute that is not `required: true` may be missing, which is a case too.

Fails:
    profile: {industry: {enum: [saas, manufacturing, finance], required: true}}
    segments:
      saas: {when: "industry == 'saas'"}
      finance: {when: "industry == 'finance'"}          # manufacturing leads get nothing

Passes:
      manufacturing: {when: "industry == 'manufacturing'"}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..profiles import describe, matches, profiles

ID = "FNL305"
NAME = "segment-gap"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    segs = ctx.funnel.segments
    if not segs or not any(s.segment for s in ctx.funnel.sequences):
        return  # no segment-specific tracks, so being in no segment costs nothing
    space = profiles(ctx.funnel, segs)
    if space is None:
        return
    _names, cases = space
    for profile in cases:
        if not any(matches(s, profile) for s in segs):
            missing = [k for k, v in profile.items() if v is None]
            help = (f"mark {', '.join(f'`{m}`' for m in missing)} `required: true`, or add a catch-all segment"
                    if missing else "add a segment for these leads, or widen an existing one")
            yield Finding(("segments",), f"a lead with {describe(profile)} is in no segment", help, key=True)
            return
