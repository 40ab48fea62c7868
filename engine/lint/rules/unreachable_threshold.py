"""A score threshold no lead reaches: above what a lead can score, or a realistic one.

When nothing repeatable is scored and nothing decays, the most a lead can score is
exact: every email it can be sent opened, clicked and replied to once (the cadence and
the frequency cap bound the emails), every lead magnet and every positive fit rule.
Otherwise the bound is what a realistic, keen lead scores in its first 30 days (longer
when a sequence runs longer): every email engaged with the day it arrives, a site visit
twice a week (each at the best page's points) and each other repeatable event (a webinar,
a CRM event) once a month, with decay
(or its window) applied; `count_repeats: true` counts each email's engagement three
times. The message says how the figure was reached. Thresholds are checked where a
condition asks `score >= thresholds.<name>`, counting only the sequences that can mail a
lead before the move that asks it (a sales sequence after sql does not help reach mql).

Fails:
    scoring:
      events: {email.opened: 5, email.clicked: 10, site.visited: 2}
      decay: {half_life: 14d}
      thresholds: {mql: 400}          # about 100 points in 30 days: nobody gets there

Passes:
      thresholds: {mql: 40}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context
from ..engagement import funnel_decay, reaches, repeatable, too_fast_in

ID = "FNL501"
NAME = "unreachable-threshold"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    fast = too_fast_in(ctx)
    events = repeatable(f)
    for reach in reaches(f, funnel_decay(f)):
        est = reach.estimate
        if est.points >= reach.value:
            continue
        causes = (("FNL509", fast.path),) if fast and any(r.name == reach.name for r, _ in fast.lost) else ()
        path = ("scoring", "thresholds", reach.name)
        if est.exact:
            yield Finding(path, f"threshold `{reach.name}` is {reach.value}, but a lead can score at most "
                          f"{est.shown}: {est.story}", "lower the threshold or give more points per event",
                          causes=causes)
            continue
        rates = []
        if any(e == "site.visited" for e, _p, _every in events):
            rates.append("a site visit twice a week, each at the best page's points")
        if any(e != "site.visited" for e, _p, _every in events):
            rates.append("each other repeatable event once a month")
        assumed = "every email opened, clicked and replied to the day it arrives" + \
            "".join(f", {r}" for r in rates)
        yield Finding(path, f"threshold `{reach.name}` is {reach.value}, but a lead scores at most about {est.shown} "
                      f"in its first {est.days} days: {est.story}",
                      f"lower it to what engaged leads reach, or score more events (the estimate assumes {assumed})",
                      causes=causes)
