"""No lead can enter the funnel.

Leads come in through a lead magnet (an opt-in) or an entry (a CRM event or an import
that creates the lead in a stage, with its basis for email). A funnel with neither
validates, compiles and then turns away every event it is given.

Fails:
    stages: [customer, advocate]
    sequences:
      onboarding: {kind: onboarding, stage: customer, steps: [...]}

Passes:
    entries:
      customers: {on: crm.deal_won, enters: customer, basis: contract}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL311"
NAME = "no-way-in"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    if f.lead_magnets or f.entries:
        return
    yield Finding(("stages",), "no lead can enter this funnel: it has no lead magnets and no entries",
                  f"add a lead magnet under `lead_magnets:` for opt-ins, or an entry for leads from the CRM or an "
                  f"import: `entries: {{customers: {{on: crm.deal_won, enters: {f.stages[0]}, basis: contract}}}}`",
                  key=True)
