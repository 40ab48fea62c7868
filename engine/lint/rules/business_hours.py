"""An SLA on business hours that the definition cannot count.

`sla_clock: business` counts only `policies.business_hours`, so those must exist and
close after they open (in the sender's timezone; hours across midnight are not
business hours).

Fails:
    handoff: {sql: {assign: {...}, sla: 4h, sla_clock: business}}     # no business_hours

Passes:
    policies: {business_hours: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}}
    handoff: {sql: {assign: {...}, sla: 4h, sla_clock: business}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL508"
NAME = "business-hours"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    hours = f.policies.business_hours
    if hours is not None and hours.end <= hours.start:
        yield Finding(hours.path + ("to",), "business hours close before they open",
                      "give `to` later than `from`, as in from: \"09:00\", to: \"17:00\"")
    for h in f.handoff:
        if h.sla_clock == "business" and hours is None:
            yield Finding(h.path + ("sla_clock",), f"the SLA for {h.stage} counts business hours, but none are set",
                          "add `policies: {business_hours: {from: \"09:00\", to: \"17:00\"}}`, or use "
                          "`sla_clock: calendar`")
        elif h.sla_clock == "business" and h.sla_minutes is None:
            yield Finding(h.path + ("sla_clock",), f"`sla_clock` for {h.stage} has no `sla` to count",
                          "give an `sla` such as 4h, or drop `sla_clock`")
