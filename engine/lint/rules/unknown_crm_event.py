"""An event names a CRM event the funnel does not declare.

Built-in CRM events are demo_booked, opportunity_opened, deal_won and deal_lost; others
must be listed under `crm.events`.

Fails:
    sequences:
      retention: {kind: retention, on: crm.renewal_due, steps: [...]}   # not declared

Passes:
    crm: {events: [renewal_due]}
    sequences:
      retention: {kind: retention, on: crm.renewal_due, steps: [...]}
"""
from __future__ import annotations

import difflib
from typing import Iterator

from .. import Finding
from ..context import Context
from ..refs import event_mentions

ID = "FNL207"
NAME = "unknown-crm-event"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    known = ctx.funnel.crm_events
    for event, path, is_key in event_mentions(ctx):
        if not event.startswith("crm."):
            continue
        name = event.split(".")[1]
        if name in known:
            continue
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        help = f"did you mean `crm.{guess[0]}`?" if guess else f"declare it: `crm: {{events: [{name}]}}`"
        yield Finding(path, f"CRM event `{name}` is not declared", help, key=is_key)
