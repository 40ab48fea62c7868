"""An SLA that counts the hours nobody in sales works.

A handoff's SLA counts every hour by default (`sla_clock: calendar`). Where the definition
says when sales works (`policies.business_hours`), a calendar SLA shorter than the nightly
gap between one working day and the next is missed by every lead handed off late in the
day: the deadline passes before anyone is at work. Count it in business hours, or make
it long enough to span the night. (Quiet hours do not enter into it: they hold back
fnl's email to leads, not a rep's call, and any CRM event answers an SLA.)

Fails:
    policies: {business_hours: {from: "09:00", to: "17:00"}}   # 16 hours from one day's end to the next
    handoff: {sql: {assign: {...}, sla: 4h}}

Passes:
    handoff: {sql: {assign: {...}, sla: 4h, sla_clock: business}}
"""
from __future__ import annotations

from typing import Iterator

from ...model import format_duration
from ...units import format_clock
from .. import Finding
from ..context import Context

ID = "FNL505"
NAME = "sla-through-the-night"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    hours = ctx.funnel.policies.business_hours
    if hours is None or not hours.days:
        return
    night = (hours.start - hours.end) % 1440  # from the end of one working day to the start of the next
    if night == 0:
        return
    for h in ctx.funnel.handoff:
        if h.sla_minutes is not None and h.sla_clock != "business" and h.sla_minutes < night:
            latest = format_clock((hours.end - h.sla_minutes) % 1440)
            yield Finding(h.path + ("sla",),
                          f"SLA {format_duration(h.sla_minutes)} counts every hour, but sales works "
                          f"{format_clock(hours.start)}-{format_clock(hours.end)} (policies.business_hours): a lead "
                          f"handed off after {latest} misses it overnight",
                          f"count it in working hours with `sla_clock: business`, or make it at least "
                          f"{format_duration(night)}")
