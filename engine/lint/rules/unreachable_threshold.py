"""A score threshold no lead can reach.

The most a lead can score is bounded when every positive event is tied to email: each
email can be opened, clicked and replied to once, a lead gets at most every send step
of every sequence (fewer when a decay `window` and the frequency cap limit it), plus
every lead magnet's score and every positive fit rule. When that bound is below a
threshold, no lead ever crosses it. Events a lead can repeat at will (site visits,
webinars, CRM events) make the score unbounded and the rule silent.

Fails:
    scoring:
      events: {email.opened: 1, email.clicked: 2}
      thresholds: {mql: 500}                       # 6 emails x 3 points = 18 at most

Passes:
      events: {email.opened: 1, email.clicked: 2, site.visited.pricing: 20}
"""
from __future__ import annotations

import math
from typing import Dict, Iterator

from .. import Finding
from ..context import Context
from ..refs import EMAIL_EVENTS, split_event

ID = "FNL501"
NAME = "unreachable-threshold"
SEVERITY = "error"


def bound(ctx: Context) -> float:
    """Upper bound of a lead's score; infinity when repeatable events add points."""
    f = ctx.funnel
    per_email: Dict[str, int] = {}
    for event, points in f.scoring.events:
        base, _detail = split_event(event)
        if points <= 0:
            continue
        if base in EMAIL_EVENTS:
            per_email[base] = max(per_email.get(base, 0), points)
        elif base == "magnet.downloaded":
            per_email["magnet"] = max(per_email.get("magnet", 0), points)
        else:
            return math.inf
    emails = sum(1 for seq in f.sequences for step in seq.steps if step.send)
    emails += sum(1 for m in f.lead_magnets if m.delivers)
    cap = f.policies.frequency_cap
    window = f.scoring.decay.window_minutes if f.scoring.decay else None
    if cap and cap.per_minutes > 0 and window:
        emails = min(emails, cap.max * math.ceil(window / cap.per_minutes))
    engagement = sum(v for k, v in per_email.items() if k != "magnet")
    magnets = sum(max(m.score, 0) for m in f.lead_magnets) + per_email.get("magnet", 0) * len(f.lead_magnets)
    fit = sum(max(r.points, 0) for r in f.scoring.fit)
    return emails * engagement + magnets + fit


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    if not f.scoring.thresholds:
        return
    most = bound(ctx)
    for name, value in f.scoring.thresholds:
        if value > most:
            yield Finding(("scoring", "thresholds", name),
                          f"threshold `{name}` is {value}, but a lead can score at most {int(most)}",
                          "lower the threshold or give more points per event")
