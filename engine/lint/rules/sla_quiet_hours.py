"""An SLA shorter than the quiet hours.

A lead handed off as quiet hours begin cannot get a follow-up email until they end, so
an SLA shorter than the quiet period is broken by design for those leads.

Fails:
    policies: {quiet_hours: {from: "20:00", to: "08:00"}}     # 12 hours
    handoff: {sql: {assign: {...}, sla: 4h}}

Passes:
    handoff: {sql: {assign: {...}, sla: 1d}}
"""
from __future__ import annotations

from typing import Iterator

from ...model import format_duration
from .. import Finding
from ..context import Context

ID = "FNL505"
NAME = "sla-under-quiet-hours"
SEVERITY = "warning"


def check(ctx: Context) -> Iterator[Finding]:
    quiet = ctx.funnel.policies.quiet_hours
    if quiet is None:
        return
    for h in ctx.funnel.handoff:
        # An SLA on business hours does not run at night: quiet hours cannot break it.
        if h.sla_minutes is not None and h.sla_clock != "business" and h.sla_minutes < quiet.length_minutes:
            yield Finding(h.path + ("sla",),
                          f"SLA {format_duration(h.sla_minutes)} is shorter than the {format_duration(quiet.length_minutes)} "
                          "of quiet hours, so leads handed off at night miss it",
                          f"make the SLA at least {format_duration(quiet.length_minutes)}, or let reps call instead of email")
