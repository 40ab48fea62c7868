"""A transition out of a terminal stage, or into the stage it starts from.

Terminal stages are final by definition, and a transition from a stage to itself
does nothing but re-run its entry actions.

Fails:
    terminal_stages: [customer]
    transitions:
      - {from: customer, to: mql, on: crm.deal_lost}

Passes:
    terminal_stages: [customer, churned]
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL308"
NAME = "transition-from-terminal"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    f = ctx.funnel
    for t in f.transitions:
        listed = isinstance(ctx.doc.data["transitions"][t.index]["from"], list)
        for i, stage in enumerate(t.sources):
            if stage in f.terminal_stages:
                # Point at the terminal stage itself, also inside a `from:` list.
                yield Finding(t.path + (("from", i) if listed else ("from",)),
                              f"`{stage}` is terminal, so no transition may leave it",
                              f"remove the transition, or take `{stage}` out of `terminal_stages`")
            elif stage == t.to:
                yield Finding(t.path + ("to",), f"transition from `{stage}` to itself", "remove it")
