"""Two segments that can both match the same lead.

A lead in two segments gets two nurture tracks at once. The segment conditions are
evaluated over every combination of the profile values they can tell apart (enum
values, numbers at each boundary they compare with, missing values).

Fails:
    segments:
      smb: {when: "employees < 200"}
      mid-market: {when: "employees >= 100 and employees < 1000"}    # 100..199 in both

Passes:
      mid-market: {when: "employees >= 200 and employees < 1000"}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..profiles import describe, matches, profiles

ID = "FNL304"
NAME = "segment-overlap"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    segs = ctx.funnel.segments
    space = profiles(ctx.funnel, segs)
    if space is None or len(segs) < 2:
        return
    _names, cases = space
    reported = set()
    for profile in cases:
        hits = [s for s in segs if matches(s, profile)]
        for i in range(1, len(hits)):
            pair = (hits[0].name, hits[i].name)
            if pair in reported:
                continue
            reported.add(pair)
            yield Finding(hits[i].path + ("when",),
                          f"segments `{pair[0]}` and `{pair[1]}` overlap: a lead with {describe(profile)} is in both",
                          "make the conditions exclusive so each lead gets one nurture track")
