"""A marketing or sales sequence with no exit criteria.

Without `exit`, a lead keeps getting every step even after it converts, books a demo
or is handed to sales. Nurture, broadcast and sales sequences need an `exit`;
post-sale programs end with their last step.

Fails:
    nurture-saas: {kind: nurture, stage: subscriber, steps: [...]}

Passes:
    nurture-saas: {kind: nurture, stage: subscriber, steps: [...], exit: {stage_at_least: sql}}
"""
from __future__ import annotations

from typing import Iterator

from .. import Finding
from ..context import Context

ID = "FNL306"
NAME = "sequence-without-exit"
SEVERITY = "error"


def check(ctx: Context) -> Iterator[Finding]:
    for seq in ctx.funnel.sequences:
        if seq.kind in ("nurture", "broadcast", "sales") and seq.exit is None:
            yield Finding(seq.path, f"{seq.kind} sequence `{seq.name}` has no exit criteria",
                          "add `exit:`, such as `exit: {stage_at_least: sql}` or `exit: {on: [email.replied]}`",
                          key=True)
